import pandas as pd
import pytest

from persona.core.dates import parse_as_of


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-09-01", "2026-09-02T00:00:00Z"),
    ("2026-09-01T12:30:00", "2026-09-01T12:30:00Z"),
    ("2026-09-01T12:30:00+02:00", "2026-09-01T10:30:00Z"),
    ("2026-09-01T12:30:00Z", "2026-09-01T12:30:00Z"),
])
def test_dates_and_timestamps(text: str, expected: str) -> None:
    assert parse_as_of(text) == pd.Timestamp(expected)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", ""])
def test_bad_dates_are_rejected_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="not a date"):
        parse_as_of(text)
