"""JSON request bodies only, as one ASGI middleware in front of the API routes.

BentoML also parses form and multipart bodies, and answers some malformed ones with 500 (a
multipart body without a boundary; a form field holding a 5,000-digit number or deep nesting,
found by tests/e2e/test_fuzz_api.py). Persona's API takes JSON only, so a POST whose Content-Type
names another type is refused with 415 and a JSON message before BentoML reads it; a body
without a Content-Type is read as JSON, as BentoML does. Another method on an API route gets a
JSON 405 naming the one allowed (BentoML's own 405 is plain text).
"""

from __future__ import annotations

import json

from serving.auth import is_open


def is_json(content_type: bytes) -> bool:
    """application/json or a +json type, parameters (charset) aside."""
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/")
                                            and media.endswith(b"+json"))


class JsonOnlyMiddleware:
    """ASGI middleware: POST bodies of a type other than JSON get 415; on the API `routes`, a
    method other than POST gets 405."""

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
            await self.app(scope, receive, send)
            return
        await _answer(send, 415, "request bodies must be JSON: send 'Content-Type: "
                                 "application/json'")


async def _answer(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *(headers or [])]})
    await send({"type": "http.response.body", "body": body})
