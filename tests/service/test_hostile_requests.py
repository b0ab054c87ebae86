"""Explicit hostile requests to the prediction endpoints of the Persona service in process (its
ASGI app, on Redis, with a propensity model: a 503 is a failure here too): what a schema cannot
spell, beside the fuzzing of tests/e2e/test_fuzz_api.py: malformed JSON, NaN and infinities, huge
bodies, Unicode and control characters in ids, duplicates, batch and length limits, content types
(JSON only: serving/json_only.py), other methods. Every answer follows the contract of
tests/api_answers.py.
"""

from __future__ import annotations

import httpx
import pytest
from api_answers import ROUTES, check_answer

from serving.schemas import MAX_ID_CHARS, MAX_PREDICT_PAIRS, MAX_PROPENSITY_USERS, MAX_RANK_ITEMS

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture(scope="module")
def http(redis_service: httpx.Client) -> httpx.Client:
    return redis_service


def request_with(route: str, user: str = "u-1", item: str = "i-1") -> dict:
    """A valid request for `route` naming `user` and `item`."""
    return {"/rank": {"user_id": user, "item_ids": [item]},
            "/predict": {"pairs": [{"user_id": user, "item_id": item}]},
            "/propensity": {"user_ids": [user]},
            "/profile": {"user_id": user},
            "/recommend": {"user_id": user, "exclude_item_ids": [item]}}[route]


def answered_ids(route: str, answer: dict) -> list[str]:
    """The ids an answer echoes, in order."""
    if route == "/rank":
        return [answer["user_id"], *(i["item_id"] for i in answer["items"])]
    if route == "/predict":
        return [i for p in answer["predictions"] for i in (p["user_id"], p["item_id"])]
    if route == "/propensity":
        return [u["user_id"] for u in answer["users"]]
    return [answer["user_id"]]  # /profile, /recommend (its items are the shop's)


# Request bodies with ID where an id goes, to put any JSON text there.
TEMPLATES = {"/rank": '{"user_id": ID, "item_ids": ["i-1"]}',
             "/predict": '{"pairs": [{"user_id": ID, "item_id": "i-1"}]}',
             "/propensity": '{"user_ids": [ID]}',
             "/profile": '{"user_id": ID}',
             "/recommend": '{"user_id": ID, "k": 3}'}
NOT_AN_ID = {
    "NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity", "1e999": "1e999",
    "huge integer": "9" * 5000, "integer": "7", "float": "0.5", "true": "true", "null": "null",
    "object": '{"id": "u-1"}', "list": '["u-1"]', "empty string": '""',
    "lone surrogate": '"\\ud800"', "deep nesting": "[" * 100_000 + "]" * 100_000,
}
NOT_JSON = {
    "truncated": b'{"user_id": "u-1"', "trailing garbage": b'{"user_id": "u-1"} x',
    "single quotes": b"{'user_id': 'u-1'}", "comment": b'{"user_id": "u-1" /* c */}',
    "invalid UTF-8": b'{"user_id": "\xff\xfe"}', "bare word": b"user_id",
    "array": b"[]", "null": b"null", "number": b"42", "string": b'"u-1"', "empty object": b"{}",
    "empty body": b"",
}


def refused(reply: httpx.Response, route: str, status: int = 400) -> None:
    assert reply.status_code == status, (route, reply.status_code, reply.text[:500])
    check_answer(route, reply.status_code, reply.content)


@pytest.mark.parametrize("value", list(NOT_AN_ID.values()), ids=list(NOT_AN_ID))
@pytest.mark.parametrize("route", ROUTES)
def test_what_is_not_an_id_is_refused(http: httpx.Client, route: str, value: str) -> None:
    """The requests take no number: NaN and infinities are refused like any other non-string."""
    body = TEMPLATES[route].replace("ID", value)
    refused(http.post(route, content=body, headers={"content-type": "application/json"}), route)


@pytest.mark.parametrize("body", list(NOT_JSON.values()), ids=list(NOT_JSON))
@pytest.mark.parametrize("route", ROUTES)
def test_malformed_json_is_refused(http: httpx.Client, route: str, body: bytes) -> None:
    refused(http.post(route, content=body, headers={"content-type": "application/json"}), route)


@pytest.mark.parametrize("route", ROUTES)
def test_missing_extra_and_mistyped_fields_are_refused(http: httpx.Client, route: str) -> None:
    valid = request_with(route)
    field = next(iter(valid))
    for body in ({**valid, "extra": 1}, {k: v for k, v in valid.items() if k != field},
                 {**valid, field: 7}, {**valid, field: {"id": "u-1"}}, {**valid, field: None}):
        refused(http.post(route, json=body), route)


@pytest.mark.parametrize(("route", "field", "answers", "limit"), [
    ("/rank", "item_ids", "items", MAX_RANK_ITEMS),
    ("/predict", "pairs", "predictions", MAX_PREDICT_PAIRS),
    ("/propensity", "user_ids", "users", MAX_PROPENSITY_USERS),
])
def test_batch_limits_are_enforced(http: httpx.Client, route: str, field: str, answers: str,
                                   limit: int) -> None:
    def batch(size: int) -> dict:
        ids = [f"x-{n}" for n in range(size)]
        if field == "pairs":
            return {"pairs": [{"user_id": i, "item_id": i} for i in ids]}
        return {**request_with(route), field: ids}

    reply = http.post(route, json=batch(limit))
    assert reply.status_code == 200, reply.text[:500]
    assert len(reply.json()[answers]) == limit
    for size in (limit + 1, 100_000):
        reply = http.post(route, json=batch(size))
        refused(reply, route)
        assert f"at most {limit} items" in reply.text


@pytest.mark.parametrize("route", ROUTES)
def test_id_length_limits_are_enforced(http: httpx.Client, route: str) -> None:
    longest = "u" * MAX_ID_CHARS
    reply = http.post(route, json=request_with(route, longest, longest))
    assert reply.status_code == 200, reply.text[:500]
    assert set(answered_ids(route, reply.json())) == {longest}
    for size in (MAX_ID_CHARS + 1, 1_000_000):
        reply = http.post(route, json=request_with(route, "u" * size))
        refused(reply, route)
        assert f"at most {MAX_ID_CHARS} characters" in reply.text


UNICODE_IDS = ["é-ü-ß", "用户-7", "😀", "\u202eRTL override", "zero\u200bwidth", "\ufeffBOM", " ",
               "a" * (MAX_ID_CHARS - 1) + "😀"]
CONTROL_IDS = ["\x00", "u\x00-1", "\t", "line\nbreak", "\r", "\x1b[31mred", "\x7f", "\x85", "\x9f"]


@pytest.mark.parametrize("route", ROUTES)
def test_unicode_ids_are_answered_as_unknown_and_echoed(http: httpx.Client, route: str) -> None:
    for value in UNICODE_IDS:
        reply = http.post(route, json=request_with(route, value, value))
        assert reply.status_code == 200, (value, reply.text[:500])
        check_answer(route, 200, reply.content)
        assert set(answered_ids(route, reply.json())) == {value}


@pytest.mark.parametrize("route", ROUTES)
def test_control_characters_in_ids_are_refused(http: httpx.Client, route: str) -> None:
    for value in CONTROL_IDS:
        reply = http.post(route, json=request_with(route, value, value))
        refused(reply, route)
        assert "contains a control character" in reply.text, (value, reply.text[:500])


def test_duplicates(http: httpx.Client) -> None:
    """/rank answers each item once; /predict and /propensity answer every entry, in order."""
    ranked = http.post("/rank", json={"user_id": "u-1", "item_ids": ["a", "b", "a", "a"]})
    assert sorted(answered_ids("/rank", ranked.json())[1:]) == ["a", "b"]
    pairs = [("u", "a"), ("v", "b"), ("u", "a")]
    predicted = http.post("/predict", json={"pairs": [{"user_id": u, "item_id": i}
                                                      for u, i in pairs]})
    assert answered_ids("/predict", predicted.json()) == [x for pair in pairs for x in pair]
    users = ["u", "v", "u", "u"]
    assert answered_ids("/propensity",
                        http.post("/propensity", json={"user_ids": users}).json()) == users


PROFILE = b'{"user_id": "u-1"}'
MULTIPART = (b'--b0\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nu-1\r\n--b0--\r\n')


@pytest.mark.parametrize(("content_type", "body", "status"), [
    pytest.param(None, PROFILE, 200, id="no content type read as JSON"),
    pytest.param("application/json; charset=utf-8", PROFILE, 200, id="json with charset"),
    pytest.param("application/merge-patch+json", PROFILE, 200, id="a +json type"),
    pytest.param("text/plain", PROFILE, 415, id="text"),
    pytest.param("application/xml", b"<user_id>u-1</user_id>", 415, id="xml"),
    pytest.param("application/vnd.bentoml+pickle", PROFILE, 415, id="pickle"),
    pytest.param("application/x-www-form-urlencoded", b"user_id=u-1", 415, id="form"),
    pytest.param("multipart/form-data; boundary=b0", MULTIPART, 415, id="multipart"),
    # BentoML itself answered these three with 500 (serving/json_only.py refuses them first)
    pytest.param("multipart/form-data", PROFILE, 415, id="multipart without boundary"),
    pytest.param("application/x-www-form-urlencoded", b"user_id=" + b"9" * 5000, 415,
                 id="form, huge integer"),
    pytest.param("application/x-www-form-urlencoded", b"user_id=" + b"[" * 100_000, 415,
                 id="form, deep nesting"),
])
def test_content_types(http: httpx.Client, content_type: str | None, body: bytes,
                       status: int) -> None:
    """Bodies are JSON: without a content type they are read as JSON, any other type is 415."""
    headers = {"content-type": content_type} if content_type else {}
    reply = http.post("/profile", content=body, headers=headers)
    assert reply.status_code == status, reply.text[:500]
    check_answer("/profile", reply.status_code, reply.content)


@pytest.mark.parametrize("route", ROUTES)
def test_other_methods_are_refused(http: httpx.Client, route: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        reply = http.request(method, route)
        refused(reply, route, 405)
        assert reply.headers["allow"] == "POST"
        assert reply.json() == {"error": f"{route} takes POST with a JSON body"}
