"""Optional API-key authentication, as one ASGI middleware in front of every route.

Off unless the settings name API keys (PERSONA_API_KEYS, comma-separated) in the server's
environment. When they do, every request needs `Authorization: Bearer <key>` or `X-API-Key:
<key>` naming one of the keys, else it gets 401 with a JSON message; only the probes, the
metrics and the OpenAPI document and UI stay open. Deny by default: a route added later is
protected without being listed here.

A presented key is compared with every configured key with `hmac.compare_digest`, all of them
every time, so the answer's timing does not tell which key, or how much of one, matched. Keys
are never logged or echoed.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence

from persona.core.settings import Settings

# The docs page (/ and its set-up, /docs.js: serving/docs_page.py), the OpenAPI document, probes.
OPEN_PATHS = frozenset({"/", "/docs.js", "/docs.json", "/livez", "/readyz", "/healthz",
                        "/metrics"})
OPEN_PREFIXES = ("/static_content/",)  # the docs page's Swagger UI files, from BentoML
UNAUTHORIZED = {"error": "missing or invalid API key: send 'Authorization: Bearer <key>' or "
                         "'X-API-Key: <key>'"}


def presented_key(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The key a request presents: the Bearer token, else the X-API-Key header."""
    authorization = headers.get(b"authorization", b"")
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() == b"bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key") or None


def key_matches(candidate: bytes | None, keys: Sequence[bytes]) -> bool:
    """Constant-time membership: every key is compared, whatever matched before."""
    if candidate is None:
        return False
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key)
    return matched


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class ApiKeyMiddleware:
    """ASGI middleware: HTTP requests to protected paths need a configured key (when any is)."""

    def __init__(self, app, keys: Sequence[str] | None = None) -> None:
        self.app = app
        keys = Settings.from_env().api_keys if keys is None else keys
        self.keys = [k.encode() for k in keys]

    async def __call__(self, scope, receive, send) -> None:
        if (not self.keys or scope["type"] != "http" or is_open(scope.get("path", ""))
                or key_matches(presented_key(dict(scope["headers"])), self.keys)):
            await self.app(scope, receive, send)
            return
        body = json.dumps(UNAUTHORIZED).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="persona"')]})
        await send({"type": "http.response.body", "body": body})
