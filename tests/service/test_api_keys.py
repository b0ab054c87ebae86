"""API keys of the Persona service in process (its ASGI app with PERSONA_API_KEYS set): every
prediction endpoint refuses a request without a configured key, whichever way it is presented,
and answers one with it; probes, metrics and the OpenAPI document stay open; keys never reach the
logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from worlds import Propensity, World, in_process_service

from serving.auth import UNAUTHORIZED

pytestmark = pytest.mark.integration

KEYS = ["k-alpha-0123456789", "k-beta-9876543210"]


@pytest.fixture(scope="module")
def keyed(world: World, propensity: Propensity) -> Iterator[httpx.Client]:
    """The service on SQLite with the propensity model and API keys on."""
    with in_process_service(world.settings, keys=KEYS) as client:
        yield client


def test_api_keys_guard_every_prediction_endpoint(keyed: httpx.Client, world: World,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    http = keyed
    for route, body in world.prediction_requests():
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
                        {"Authorization": KEYS[0]}, {"X-API-Key": KEYS[0][:-1]},
                        {"Authorization": f"Basic {KEYS[0]}"}):
            reply = http.post(route, json=body, headers=headers)
            assert reply.status_code == 401, (route, headers, reply.text)
            assert reply.json() == UNAUTHORIZED
        for headers in ({"Authorization": f"Bearer {KEYS[0]}"},
                        {"authorization": f"bearer {KEYS[1]}"}, {"X-API-Key": KEYS[1]}):
            reply = http.post(route, json=body, headers=headers)
            assert reply.status_code == 200, (route, headers, reply.text)
    for probe in ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/", "/docs.js",
                  "/static_content/swagger-ui.css", "/static_content/swagger-ui-bundle.js"):
        assert http.get(probe).status_code == 200, probe
    assert caplog.records, "the requests were logged"
    assert not any(key in caplog.text for key in KEYS)
