"""API keys without a server: parsing PERSONA_API_KEYS, reading the presented key, matching."""

from __future__ import annotations

import pytest

from persona.core.settings import parse_api_keys
from serving.auth import key_matches, presented_key


def test_api_key_parsing_and_matching() -> None:
    assert parse_api_keys("") == ()
    assert parse_api_keys(" a , b,") == ("a", "b")
    with pytest.raises(ValueError, match="names no key"):
        parse_api_keys(" , ")
    assert presented_key({b"authorization": b"Bearer  k "}) == b"k"
    assert presented_key({b"x-api-key": b"k"}) == b"k"
    assert presented_key({b"authorization": b"Bearer "}) is None
    assert key_matches(b"b", [b"a", b"b"]) and not key_matches(b"c", [b"a", b"b"])
    assert not key_matches(None, [b"a"])
