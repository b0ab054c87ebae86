"""Thin data through the CLI: a real-looking purchase export (no views or carts), with the bare
contract catalogue, a few dozen users, months between purchases, and CSV files whose timestamps
are dates, ISO strings with offsets or spreadsheet dates (`--timestamp-format`), whose ids look
numeric with leading zeros, whose order lines carry an `event_id` (one of them exported twice:
`--dedupe`) and where one customer bought the same item twice in one minute (two rows alike but
for their ids). Ingest and the propensity task work; the conversion task says it needs views."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from persona.cli import app
from persona.core.settings import Settings
from persona.data.offline import current_manifest
from training.model_store import load_model

pytestmark = pytest.mark.integration

N_USERS = 30
START = pd.Timestamp("2025-04-01", tz="UTC")
END = pd.Timestamp("2026-06-30", tz="UTC")
SPREADSHEET = "%m/%d/%Y %H:%M"


def thin_shop(out: Path, seed: int = 0) -> dict[str, pd.DataFrame]:
    """users.csv (signup as dates, one user's as an ISO string with an offset), items.csv (the
    contract's columns only; created as ISO strings with offsets), events.csv (purchases only,
    spreadsheet dates to the minute, order-line ids, no quantity or price). Each user buys every
    15-150 days; the first purchase is bought again the same minute (a separate line) and the
    last line is exported twice."""
    rng = np.random.default_rng(seed)
    user_ids = [f"{n:05d}" for n in rng.choice(99_999, N_USERS, replace=False)]
    item_ids = [f"{n:04d}" for n in range(1, 9)]
    signup = [(START - pd.Timedelta(days=int(d))).strftime("%Y-%m-%d")
              for d in rng.integers(1, 400, N_USERS)]
    signup[0] = "2025-03-30T23:30:00-02:00"  # 2025-03-31 01:30 UTC: a mixed column
    users = pd.DataFrame({"user_id": user_ids, "signup_timestamp": signup})
    items = pd.DataFrame({
        "item_id": item_ids, "category": ["grocery", "books"] * 4,
        "brand": [f"b{k % 3}" for k in range(8)],
        "list_price": np.round(rng.uniform(3, 40, 8), 2),
        "created_timestamp": ["2024-12-01T09:00:00+05:30"] * 8,
    })
    rows = []
    for user in user_ids:
        gap = rng.uniform(15, 150)
        t = START + pd.Timedelta(days=float(rng.uniform(0, 60)))
        while t < END:
            rows.append((user, item_ids[rng.integers(8)], "purchase", t.strftime(SPREADSHEET)))
            t += pd.Timedelta(days=float(rng.exponential(gap)) + 1)
    rows.insert(1, rows[0])
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "event_type", "event_timestamp"])
    events["event_id"] = [f"L{n:06d}" for n in range(len(events))]
    events = pd.concat([events, events.iloc[[-1]]], ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in (("users", users), ("items", items), ("events", events)):
        frame.to_csv(out / f"{name}.csv", index=False)
    return {"users": users, "items": items, "events": events}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A home, reports dir and BentoML store of the module's own."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    root = tmp_path_factory.mktemp("thin")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(root / "bentoml"))
        with BentoMLContainer.model_store.patch(ModelStore(root / "bentoml" / "models")):
            yield {"PERSONA_HOME": str(root / "home"),
                   "PERSONA_REPORTS_DIR": str(root / "reports"), "ROOT": str(root)}


def persona(env: dict[str, str], *args: str):
    return CliRunner().invoke(app, list(args), env={k: v for k, v in env.items() if k != "ROOT"})


@pytest.fixture(scope="module")
def shop(env: dict[str, str]) -> dict[str, pd.DataFrame]:
    return thin_shop(Path(env["ROOT"]) / "raw")


@pytest.fixture(scope="module")
def ingested(env: dict[str, str], shop: dict[str, pd.DataFrame]) -> Settings:
    raw = str(Path(env["ROOT"]) / "raw")
    refused = persona(env, "ingest", raw)
    assert refused.exit_code == 1 and "--timestamp-format" in refused.output
    repeated = persona(env, "ingest", raw, "--timestamp-format", SPREADSHEET)
    assert repeated.exit_code == 1 and "column=event_id" in repeated.output
    result = persona(env, "ingest", raw, "--timestamp-format", SPREADSHEET, "--dedupe")
    assert result.exit_code == 0, result.output
    assert "dropped 1 event(s) repeating an earlier event_id" in result.output
    return Settings(home=Path(env["PERSONA_HOME"]), reports_dir=Path(env["PERSONA_REPORTS_DIR"]))


@pytest.fixture(scope="module")
def trained(env: dict[str, str], ingested: Settings) -> dict:
    result = persona(env, "train", "--task", "propensity")
    assert result.exit_code == 0, result.output
    return load_model(None, task="propensity")[1]


def _offline(settings: Settings, view: str) -> pd.DataFrame:
    return pq.read_table(settings.offline_current / view).to_pandas()


def test_purchase_only_ingest_has_zero_view_and_cart_features(ingested: Settings,
                                                              shop: dict) -> None:
    activity = _offline(ingested, "user_activity")
    for kind in ("views", "carts"):
        for w in (1, 7, 30, 90):
            assert (activity[f"{kind}_{w}d"] == 0).all()
    assert (activity["view_to_purchase_rate_90d"] == 0).all()
    assert activity["purchases_90d"].gt(0).any()
    assert activity["days_since_last_purchase"].equals(activity["days_since_last_event"])
    # the two lines alike but for their ids are two purchases; the line exported twice is one
    first = shop["events"].iloc[0]
    bought = activity.loc[activity["user_id"] == first["user_id"], "purchases_1d"].max()
    assert bought == 2  # purchases are a day or more apart but for these two
    popularity = _offline(ingested, "item_popularity")
    assert (popularity["views_30d"] == 0).all() and popularity["purchases_30d"].gt(0).any()


def test_ids_keep_their_leading_zeros(ingested: Settings, shop: dict) -> None:
    assert set(_offline(ingested, "user_activity")["user_id"]) <= set(shop["users"]["user_id"])
    assert set(_offline(ingested, "user_profile")["user_id"]) == set(shop["users"]["user_id"])
    assert set(_offline(ingested, "item_catalog")["item_id"]) == {f"{n:04d}" for n in range(1, 9)}
    assert any(u.startswith("0") for u in shop["users"]["user_id"])


def _times(events: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(events["event_timestamp"], format=SPREADSHEET, utc=True)


def test_dates_offsets_and_spreadsheet_dates_are_read_as_utc(ingested: Settings,
                                                              shop: dict) -> None:
    manifest = current_manifest(ingested.offline_root)
    times = _times(shop["events"])
    assert pd.Timestamp(manifest["events_from"]) == times.min()
    assert pd.Timestamp(manifest["events_until"]) == times.max()
    assert manifest["read_options"] == {"timestamp_format": SPREADSHEET, "dedupe": True}
    assert manifest["duplicate_event_ids_dropped"] == 1
    profile = _offline(ingested, "user_profile").set_index("user_id")["event_timestamp"]
    users = shop["users"].set_index("user_id")["signup_timestamp"]
    assert profile[users.index[0]] == pd.Timestamp("2025-03-31 01:30", tz="UTC")
    assert profile[users.index[1]] == pd.Timestamp(users.iloc[1], tz="UTC")  # a date: midnight
    created = _offline(ingested, "item_catalog")["event_timestamp"]
    assert (created == pd.Timestamp("2024-12-01 03:30", tz="UTC")).all()


def test_propensity_trains_and_evaluates(trained: dict) -> None:
    metrics = trained["metrics"]
    assert {"model", "rfm", "recency"} <= set(metrics)
    assert {"log_loss", "ece"} <= set(metrics["model"])
    assert metrics["validation_rows"] > 0 and trained["n_train"] > 0
    assert set(trained["reference_quantiles"]) == set(trained["features"])


def test_score_as_of_a_past_date(env: dict[str, str], trained: dict, shop: dict) -> None:
    out = Path(env["ROOT"]) / "scores.parquet"
    result = persona(env, "score", "--task", "propensity", "--as-of", "2026-01-15",
                     "--out", str(out))
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    as_of = pd.Timestamp("2026-01-16", tz="UTC")
    events = shop["events"]
    seen = events.loc[_times(events) <= as_of, "user_id"]
    assert sorted(scores["user_id"]) == sorted(seen.unique())  # zeros kept, as strings
    assert (scores["as_of"] == as_of).all() and scores["score"].between(0, 1).all()
    assert all(len(r) == 3 for r in scores["reasons"])


def test_conversion_needs_views_and_says_so_in_one_line(env: dict[str, str],
                                                        ingested: Settings) -> None:
    result = persona(env, "train")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a handled error, not a crash
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if "error" in line]
    assert line == "error: conversion needs view events; the log has none (try --task propensity)"


def test_materialize_to_a_closed_redis_port_fails_in_one_line(env: dict[str, str],
                                                              ingested: Settings) -> None:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = persona(env, "materialize", "--online", f"redis://127.0.0.1:{port}")
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if "error" in line]
    assert line.startswith(f"error: the Redis online store at 127.0.0.1:{port} does not answer")


def test_materialize_reports_one_json_object_on_stdout(env: dict[str, str],
                                                       ingested: Settings) -> None:
    result = persona(env, "materialize", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["rows"]
    assert rows["user_activity"] > 0 and set(rows) >= {"user_profile", "item_catalog"}
