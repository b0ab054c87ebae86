"""The 4xx rewriting of serving/json_only.py on ASGI messages alone: other answers pass through as
they are, a 4xx body becomes `{"error": <one line>}` whatever shape BentoML gave it."""

from __future__ import annotations

import asyncio
import json

import pytest

from serving.json_only import ClearErrors, error_message


def _through(*messages: dict) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def run() -> None:
        clear = ClearErrors(send)
        for message in messages:
            await clear(message)

    asyncio.run(run())
    return sent


def _start(status: int, *headers: tuple[bytes, bytes]) -> dict:
    return {"type": "http.response.start", "status": status, "headers": list(headers)}


def test_answers_below_400_pass_untouched() -> None:
    for status in (200, 307, 503):
        messages = [_start(status, (b"content-length", b"2")),
                    {"type": "http.response.body", "body": b"{}"}]
        sent = _through(*messages)
        assert sent == messages and all(a is b for a, b in zip(sent, messages, strict=True))


def test_a_4xx_body_in_chunks_is_rewritten_with_its_status_and_headers() -> None:
    bentoml = {"error": "1 validation error for RankRequestIODescriptor", "detail": [
        {"type": "missing", "loc": ["user_id"], "msg": "Field required", "url": "https://x"}]}
    raw = json.dumps(bentoml).encode()
    sent = _through(_start(400, (b"content-length", str(len(raw)).encode()),
                           (b"x-request-id", b"7"), (b"content-type", b"application/json")),
                    {"type": "http.response.body", "body": raw[:10], "more_body": True},
                    {"type": "http.response.body", "body": raw[10:]})
    assert len(sent) == 2 and sent[0]["status"] == 400
    body = sent[1]["body"]
    assert json.loads(body) == {"error": "user_id: required field is missing"}
    assert sorted(sent[0]["headers"]) == sorted([
        (b"x-request-id", b"7"), (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode())])


@pytest.mark.parametrize(("body", "message"), [
    ([{"error": "Bad input for FooIODescriptor\nsecond line"}], "Bad input for request"),
    ({"error": "already clear"}, "already clear"),
    ("Not Found", "Not Found"),
    ("", "the request was refused"),
    ({"detail": [{"type": "too_long", "loc": ["item_ids"],
                  "msg": "List should have at most 500 items after validation, not 501"}]},
     "item_ids: list should have at most 500 items, not 501"),
    ({"detail": [{"type": "string_pattern_mismatch", "loc": ["pairs", 3, "item_id"],
                  "msg": "String should match pattern '^[a-z]+$'"}]},
     "pairs[3].item_id: string should match pattern '^[a-z]+$'"),
    ({"detail": [{"type": "extra_forbidden", "loc": [""], "msg": "Extra inputs"}]},
     '"": unknown field'),
])
def test_error_messages(body, message: str) -> None:
    assert error_message(body) == message
