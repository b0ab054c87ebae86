"""The OpenAPI document and the docs page of the Persona service, as one ASGI middleware.

BentoML 1.4 builds the document's `info` itself (`_bentoml_sdk/service/openapi.py`) and offers
no hook for it: the version is a built Bento's tag ("None" when served from source), the
description the Bento's README or, from source, BentoML's default README (badges and links to
BentoML's sites), the contact BentoML's team; `@bentoml.service(description=...)` reaches only a
built Bento's README. Its page at `/` (`_bentoml_impl/server/main-openapi.html`) loads Google
Tag Manager, links to GitHub, and leaves Swagger UI's validator badge on (an image fetched from
validator.swagger.io with the document's address).

So this middleware answers three GET paths before BentoML does:
- /docs.json: BentoML's document with Persona's version (the installed distribution's) and a
  description of the service (the service class's docstring and how requests are answered),
  built at the first request and cached.
- /: a page that shows that document with the Swagger UI files BentoML ships (its
  /static_content/ mount, from the installed package) and nothing else: no tag manager, no links
  out, the validator off, under a Content-Security-Policy that lets the browser load nothing from
  another origin (Swagger UI's bundle holds URLs of other hosts as inert strings).
- /docs.js: the page's Swagger UI set-up, a file so that the policy allows no inline script.
"""

from __future__ import annotations

import inspect
import json
from importlib.metadata import PackageNotFoundError, version

from serving.schemas import ID_RULES

DOCUMENT_PATH = "/docs.json"
PAGE_PATH = "/"
SCRIPT_PATH = "/docs.js"

ANSWERS = (
    "Every endpoint takes POST with a JSON body (Content-Type: application/json, or none) and "
    "answers JSON; another content type gets 415. Unknown shoppers and items are not errors: "
    "they are scored with their features missing and flagged `cold_user` / `cold_item`. Ids "
    f"are {ID_RULES}.\n\n"
    "Each score carries the tag of the model that produced it and its reasons: the 3 model "
    "inputs that moved it most, with their signed contributions in log-odds.\n\n"
    'An invalid request gets 400 with `{"error": "<field>: <what is wrong>"}`. An unreachable '
    "online store gets 503 with Retry-After; /propensity answers 503 when no propensity model "
    "was trained. When the server has API keys (PERSONA_API_KEYS), every endpoint but the "
    "probes, the metrics and this documentation needs `Authorization: Bearer <key>` or "
    "`X-API-Key: <key>`."
)

# Swagger UI files of BentoML's own /static_content/ mount; paths relative to the page.
PAGE = b"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Persona API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css">
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="utf-8"></script>
    <script src="./docs.js" charset="utf-8"></script>
  </body>
</html>
"""
SCRIPT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null, // else a badge image from validator.swagger.io
  });
});
"""
# Same origin only; inline styles and data: images are Swagger UI's own.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


def persona_version() -> str:
    """The installed distribution's version; "unknown" where Persona runs from its source
    alone (a built Bento carries the source, not the distribution)."""
    try:
        return version("persona")
    except PackageNotFoundError:
        return "unknown"


def description(service) -> str:
    """What the service answers: its class docstring, then how requests are answered."""
    summary = inspect.cleandoc(service.inner.__doc__ or "")
    return f"{summary}\n\n{ANSWERS}" if summary else ANSWERS


def document(service) -> dict:
    """BentoML's OpenAPI document of `service` with Persona's `info`: title, version and
    description (and no contact: BentoML's team is not who answers for this service)."""
    spec = service.openapi_spec.asdict()
    spec["info"] = {"title": spec["info"]["title"], "version": persona_version(),
                    "description": description(service)}
    return spec


class DocsMiddleware:
    """ASGI middleware: GET (or HEAD) /docs.json, / and /docs.js answered here (see the module's
    docstring); everything else passes through."""

    def __init__(self, app, service) -> None:
        self.app = app
        self.service = service
        self._document: bytes | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == DOCUMENT_PATH:
            answer = (self._cached_document(), b"application/json", [])
        elif path == PAGE_PATH:
            answer = (PAGE, b"text/html; charset=utf-8", PAGE_HEADERS)
        elif path == SCRIPT_PATH:
            answer = (SCRIPT, b"text/javascript; charset=utf-8",
                      [(b"x-content-type-options", b"nosniff")])
        else:
            await self.app(scope, receive, send)
            return
        body, content_type, headers = answer
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-cache"), *headers]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})

    def _cached_document(self) -> bytes:
        """Built once per process: the service's APIs do not change while it runs."""
        if self._document is None:
            self._document = json.dumps(document(self.service)).encode()
        return self._document
