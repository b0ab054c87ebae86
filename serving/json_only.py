"""JSON in and JSON errors out, as one ASGI middleware in front of the API routes.

BentoML also parses form and multipart bodies, and answers some malformed ones with 500 (a
multipart body without a boundary; a form field holding a 5,000-digit number or deep nesting,
found by tests/e2e/test_fuzz_api.py). Persona's API takes JSON only, so a POST whose Content-Type
names another type is refused with 415 and a JSON message before BentoML reads it; a body
without a Content-Type is read as JSON, as BentoML does. Another method on an API route gets a
JSON 405 naming the one allowed (BentoML's own 405 is plain text).

BentoML answers a request its input model refuses with 400 and a body of its own that names
its internal classes and links to Pydantic's site (`{"error": "2 validation error for
RankRequestIODescriptor", "detail": [{"type", "loc", "msg", "url"}, ...]}`), and has no hook to
change it (`api_endpoint_wrapper` in `_bentoml_impl/server/app.py` builds it). So a 4xx answer on
an API route is rewritten here, its status kept, to `{"error": "<field>: <what is wrong>"}`: one
line naming each field (the first SHOWN_ERRORS of them) and what is wrong with it. Answers below
400 pass through untouched: the only cost on them is one check of the status.
"""

from __future__ import annotations

import json
import re

from serving.auth import is_open

SHOWN_ERRORS = 3  # fields named in one error message; the rest are counted
SHOWN_NAME_CHARS = 64  # of a field name taken from the request (an unknown field)
MAX_MESSAGE_CHARS = 500  # of any other 4xx message
OBJECT = "must be a JSON object"
# What is wrong, by Pydantic error type, where its own message is unclear or names a class.
PROBLEMS = {"missing": "required field is missing", "extra_forbidden": "unknown field",
            "model_type": OBJECT, "model_attributes_type": OBJECT, "dict_type": OBJECT,
            "string_type": "must be a string", "list_type": "must be an array"}
CONTROL_CHARACTERS = ("contains a control character (U+0000-U+001F or U+007F-U+009F), which "
                      "ids may not")
INTERNAL_NAME = re.compile(r"\b\w*IODescriptor\b")


def is_json(content_type: bytes) -> bool:
    """application/json or a +json type, parameters (charset) aside."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


class JsonOnlyMiddleware:
    """ASGI middleware: POST bodies of a type other than JSON get 415; on the API `routes`, a
    method other than POST gets 405, and a 4xx answer a one-line JSON message."""

    def __init__(self, app, routes: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope.get("method") != "POST":
            if scope["path"] in self.routes:
                await _answer(send, 405, f"{scope['path']} takes POST with a JSON body",
                              [(b"allow", b"POST")])
                return
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type")
        if content_type is None or is_json(content_type):
            if scope["path"] in self.routes:
                send = ClearErrors(send)
            await self.app(scope, receive, send)
            return
        await _answer(send, 415, "request bodies must be JSON: send 'Content-Type: "
                                 "application/json'")


class ClearErrors:
    """An ASGI `send` that holds a 4xx answer's body and sends `error_body` of it instead,
    with the status and the other headers it had; any other answer is sent as it comes."""

    __slots__ = ("send", "start", "chunks")

    def __init__(self, send) -> None:
        self.send = send
        self.start: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message) -> None:
        if self.start is None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                self.start = message
                return
            await self.send(message)
            return
        if message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = error_body(b"".join(self.chunks))
        headers = [(name, value) for name, value in self.start.get("headers", [])
                   if name.lower() not in (b"content-length", b"content-type")]
        await self.send({**self.start, "headers": [
            *headers, (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode())]})
        await self.send({"type": "http.response.body", "body": body})


def error_body(raw: bytes) -> bytes:
    """`{"error": <one line>}` for a 4xx body: BentoML's validation answer, its other errors
    (`[{"error": ...}]`), a JSON message or plain text."""
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return json.dumps({"error": error_message(parsed)}).encode()


def error_message(parsed) -> str:
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]  # BentoML sends its 4xx other than validation as a one-item list
    if isinstance(parsed, dict):
        detail = parsed.get("detail")
        if isinstance(detail, list) and detail and all(isinstance(e, dict) for e in detail):
            return validation_message(detail)
        parsed = parsed.get("error")
    lines = str(parsed or "").strip().splitlines()
    line = INTERNAL_NAME.sub("request", lines[0]) if lines else "the request was refused"
    return line[:MAX_MESSAGE_CHARS]


def validation_message(errors: list[dict]) -> str:
    """'<field>: <what is wrong>' for the first SHOWN_ERRORS errors, then how many more."""
    parts = [f"{field_path(e.get('loc') or [])}: {problem(e)}" for e in errors[:SHOWN_ERRORS]]
    more = len(errors) - SHOWN_ERRORS
    if more > 0:
        parts.append(f"and {more} more error{'s' if more > 1 else ''}")
    return "; ".join(parts)


def field_path(loc: list) -> str:
    """`pairs[0].item_id` for Pydantic's ("pairs", 0, "item_id"); the body itself for ()."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + printable(str(part))
    return path or "request body"


def printable(name: str) -> str:
    """A field name as the request spelt it (an unknown field is the client's text): at most
    SHOWN_NAME_CHARS, characters that do not print escaped, so the message stays one line."""
    shown = "".join(c if c.isprintable() else f"\\u{ord(c):04x}"
                    for c in name[:SHOWN_NAME_CHARS])
    return (shown + "...") if len(name) > SHOWN_NAME_CHARS else (shown or '""')


def problem(error: dict) -> str:
    kind, message = str(error.get("type", "")), str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        return f"not valid JSON ({message.removeprefix('Invalid JSON: ')})"
    if kind == "string_pattern_mismatch" and "\\x00-\\x1f" in message:
        return CONTROL_CHARACTERS
    if kind in PROBLEMS:
        return PROBLEMS[kind]
    message = INTERNAL_NAME.sub("request", message.replace(" after validation", ""))
    return message[:1].lower() + message[1:]


async def _answer(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
