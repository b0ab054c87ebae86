"""The OpenAPI document, the docs page and the error bodies of the Persona service in process (its
ASGI app, on SQLite, with a propensity model): the document carries Persona's version and a
description (serving/docs_page.py); the page at / and everything it loads come from the server
itself; a malformed request gets a 4xx `{"error": "<field>: <what is wrong>"}` that names no
internal class (serving/json_only.py).
"""

from __future__ import annotations

import inspect
import json
import re
from html.parser import HTMLParser
from importlib.metadata import version
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from pydantic import BaseModel

from serving import schemas
from serving.schemas import MAX_PREDICT_PAIRS, MAX_PROPENSITY_USERS, MAX_RANK_ITEMS

pytestmark = pytest.mark.integration

EXTERNAL_URL = re.compile(rb"https?://", re.IGNORECASE)
# Where a stylesheet loads from: url(...) and @import.
CSS_LOADS = re.compile(rb"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.IGNORECASE)


@pytest.fixture(scope="module")
def http(sqlite_service: httpx.Client) -> httpx.Client:
    return sqlite_service


def test_document_has_persona_version_and_description(http: httpx.Client) -> None:
    reply = http.get("/docs.json")
    assert reply.status_code == 200
    info = reply.json()["info"]
    assert info["version"] == version("persona")
    assert info["title"] == "persona"
    assert "shopper" in info["description"] and "/propensity" in info["description"]
    assert "://" not in info["description"] and "](" not in info["description"], "no links"
    assert "BentoML" not in json.dumps(info), "BentoML's readme and contact are gone"
    spec = reply.json()
    assert {"/rank", "/predict", "/propensity", "/profile"} <= set(spec["paths"])
    assert http.get("/docs.json").content == reply.content  # the cached document


class _Loads(HTMLParser):
    """Every URL an HTML page makes the browser fetch or link to."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.stylesheets: list[str] = []
        self.others: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(found["src"])
        elif tag == "link" and "stylesheet" in (found.get("rel") or ""):
            self.stylesheets.append(found["href"])
        else:
            self.others += [v for k, v in attrs if k in ("src", "href", "data", "action") and v]


def _local(http: httpx.Client, page: str, reference: str) -> tuple[str, httpx.Response]:
    """The path of a same-host `reference` of `page`, and its answer."""
    url = urljoin(str(http.base_url).rstrip("/") + page, reference)
    assert urlsplit(url).netloc == http.base_url.netloc.decode(), f"{reference} is on another host"
    reply = http.get(urlsplit(url).path)
    assert reply.status_code == 200, (reference, reply.status_code)
    return urlsplit(url).path, reply


def test_docs_page_loads_nothing_from_another_host(http: httpx.Client) -> None:
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert not EXTERNAL_URL.search(page.content), "no URL of another host in the page"
    assert b"googletagmanager" not in page.content.lower()
    loads = _Loads()
    loads.feed(page.text)
    assert loads.scripts and loads.stylesheets
    for reference in loads.stylesheets + loads.others:
        path, reply = _local(http, "/", reference)
        if reference in loads.stylesheets:
            for match in CSS_LOADS.finditer(reply.content):
                target = (match.group(1) or match.group(2)).decode()
                assert target.startswith(("data:", "#")) or not EXTERNAL_URL.match(
                    target.encode()), (path, target)
    set_up = b""
    for reference in loads.scripts:
        path, reply = _local(http, "/", reference)
        if not path.startswith("/static_content/"):  # ours, not BentoML's Swagger UI bundle
            assert not EXTERNAL_URL.search(reply.content), path
            set_up += reply.content
    assert b'url: "./docs.json"' in set_up, "the page shows the service's document"
    assert b"validatorUrl: null" in set_up, "no validator badge from validator.swagger.io"
    # Swagger UI's bundle holds other hosts' URLs as inert strings (an SVG namespace, links in
    # error messages, the validator the set-up turns off): the browser is told to load nothing
    # from any origin but this one.
    policy = dict(part.strip().split(" ", 1)
                  for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        sources = policy[directive].split()
        assert "'self'" in sources and not [s for s in sources if s not in (
            "'self'", "'unsafe-inline'", "data:")], (directive, sources)
    assert policy["frame-ancestors"] == "'none'" and policy["object-src"] == "'none'"


def test_head_of_the_docs_page_and_other_methods(http: httpx.Client) -> None:
    head = http.head("/")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(http.get("/").content)
    assert http.post("/docs.json").status_code == 405  # BentoML's own answer


def _valid(route: str) -> dict:
    return {"/rank": {"user_id": "u-1", "item_ids": ["i-1"]},
            "/predict": {"pairs": [{"user_id": "u-1", "item_id": "i-1"}]},
            "/propensity": {"user_ids": ["u-1"]},
            "/profile": {"user_id": "u-1"}}[route]


CLASS_NAMES = sorted(name for name, value in vars(schemas).items()
                     if inspect.isclass(value) and issubclass(value, BaseModel))
UNKNOWN_NAME = "bad\x1b[31m\nname" + "x" * 500

# (route, body: JSON text or a dict, what the message must say)
MALFORMED = {
    "invalid JSON": ("/rank", '{"user_id": ', "request body: not valid JSON (EOF while parsing"),
    "trailing garbage": ("/profile", '{"user_id": "u"} x', "request body: not valid JSON"),
    "invalid UTF-8": ("/profile", b'{"user_id": "\xff"}', "request body: not valid JSON"),
    "deep nesting": ("/propensity", "[" * 10_000 + "]" * 10_000, "request body: not valid JSON"),
    "not an object": ("/predict", "[]", "request body: must be a JSON object"),
    "null": ("/profile", "null", "request body: must be a JSON object"),
    "empty body": ("/profile", "", "user_id: required field is missing"),
    "wrong type": ("/rank", {"user_id": 7, "item_ids": ["i"]}, "user_id: must be a string"),
    "NaN": ("/rank", '{"user_id": NaN, "item_ids": ["i"]}', "user_id: must be a string"),
    "string for a list": ("/propensity", {"user_ids": "u"}, "user_ids: must be an array"),
    "wrong item type": ("/rank", {"user_id": "u", "item_ids": ["i", 7]},
                        "item_ids[1]: must be a string"),
    "number for a pair": ("/predict", {"pairs": [7]}, "pairs[0]: must be a JSON object"),
    "missing field": ("/rank", {"user_id": "u"}, "item_ids: required field is missing"),
    "missing nested field": ("/predict", {"pairs": [{"user_id": "u"}]},
                             "pairs[0].item_id: required field is missing"),
    "missing fields": ("/rank", {}, "user_id: required field is missing; item_ids: required"),
    "unknown field": ("/profile", {"user_id": "u", "userId": "u"}, "userId: unknown field"),
    "unknown field, hostile name": (
        "/propensity", {"user_ids": ["u"], UNKNOWN_NAME: 1},
        "bad\\u001b[31m\\u000aname" + "x" * 51 + "...: unknown field"),
    "empty id": ("/profile", {"user_id": ""}, "user_id: string should have at least 1 character"),
    "control character": ("/profile", {"user_id": "u\x00"},
                          "user_id: contains a control character (U+0000-U+001F or "
                          "U+007F-U+009F)"),
    "control characters": ("/propensity", {"user_ids": [f"u\n{n}" for n in range(10)]},
                           "user_ids[2]: contains a control character (U+0000-U+001F or "
                           "U+007F-U+009F), which ids may not; and 7 more errors"),
    "too many items": ("/rank", {"user_id": "u", "item_ids": ["i"] * (MAX_RANK_ITEMS + 1)},
                       f"item_ids: list should have at most {MAX_RANK_ITEMS} items, not "
                       f"{MAX_RANK_ITEMS + 1}"),
    "too many pairs": ("/predict", {"pairs": [{"user_id": "u", "item_id": "i"}]
                                    * (MAX_PREDICT_PAIRS + 1)},
                       f"pairs: list should have at most {MAX_PREDICT_PAIRS} items"),
    "too many users": ("/propensity", {"user_ids": ["u"] * (MAX_PROPENSITY_USERS + 1)},
                       f"user_ids: list should have at most {MAX_PROPENSITY_USERS} items"),
    "no items": ("/rank", {"user_id": "u", "item_ids": []},
                 "item_ids: list should have at least 1 item, not 0"),
}


@pytest.mark.parametrize(("route", "body", "says"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_requests_get_one_clear_line(http: httpx.Client, route: str,
                                               body: str | bytes | dict, says: str) -> None:
    content = json.dumps(body) if isinstance(body, dict) else body
    reply = http.post(route, content=content, headers={"content-type": "application/json"})
    assert reply.status_code == 400, (reply.status_code, reply.text[:500])
    assert reply.headers["content-type"] == "application/json"
    assert int(reply.headers["content-length"]) == len(reply.content)
    answer = reply.json()
    assert list(answer) == ["error"], answer
    message = answer["error"]
    assert says in message, message
    assert message.isprintable() and len(message) < 600, message
    for internal in ("IODescriptor", "pydantic", "validation error", "://", *CLASS_NAMES):
        assert internal not in message, (internal, message)


def test_valid_requests_are_answered_as_before(http: httpx.Client) -> None:
    for route in ("/rank", "/predict", "/propensity", "/profile"):
        reply = http.post(route, json=_valid(route))
        assert reply.status_code == 200, (route, reply.text[:500])
        assert "error" not in reply.json()
    assert http.post("/echo", json=_valid("/rank")).json() == {"user_id": "u-1", "item_ids": 1}
