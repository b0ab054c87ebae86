"""JSON request bodies only, as one ASGI middleware in front of the API routes.

BentoML also parses form and multipart bodies, and answers some malformed ones with 500 (a
multipart body without a boundary; a form field holding a 5,000-digit number or deep nesting,
found by tests/e2e/test_fuzz_api.py). Persona's API takes JSON only, so a POST whose Content-Type
names another type is refused with 415 and a JSON message before BentoML reads it; a body
without a Content-Type is read as JSON, as BentoML does.
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
    """ASGI middleware: POST bodies of a type other than JSON get 415."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type")
        if content_type is None or is_json(content_type):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": "request bodies must be JSON: send 'Content-Type: "
                                    "application/json'"}).encode()
        await send({"type": "http.response.start", "status": 415, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
