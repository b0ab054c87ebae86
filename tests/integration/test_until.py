"""`--until DATE` trains on what was known at DATE: a log and the same log with later events,
ingested into two homes, give the same training frames, windows and metrics for both tasks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from homes import ingested_home
from typer.testing import CliRunner

from persona.cli import app
from persona.core.dates import parse_as_of
from persona.core.settings import Settings
from persona.synthetic_shop import Shop, generate_shop
from training.model_store import load_model
from training.pipeline import Labelled, TrainResult, labelled_frame, train_labelled

pytestmark = pytest.mark.integration

SHOP = {"n_users": 600, "n_items": 150, "days": 80, "seed": 3}  # ends 2026-10-01 00:00 UTC
UNTIL_TEXT = "2026-09-18"
UNTIL = parse_as_of(UNTIL_TEXT)  # the end of that day: 2026-09-19 00:00 UTC
CUT = pd.Timestamp("2026-09-23 15:00", tz="UTC")  # where the shorter log ends
# Propensity over 14 days, so that an 80-day log still leaves several training snapshots.
HORIZONS = {"conversion": 7, "propensity": 14}


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(**SHOP)


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory, shop: Shop) -> tuple[Settings, Settings]:
    """The log up to CUT (after UNTIL), and the whole log: the same events plus later ones."""
    events = shop.events[shop.events["event_timestamp"] <= CUT].reset_index(drop=True)
    assert (events["event_timestamp"] > UNTIL).any()
    assert len(shop.events) > len(events)
    short = ingested_home(tmp_path_factory.mktemp("short"), Shop(events, shop.users, shop.items))
    return short, ingested_home(tmp_path_factory.mktemp("long"), shop)


@pytest.fixture(scope="module")
def frames(homes: tuple[Settings, Settings]) -> dict[str, tuple[Labelled, Labelled]]:
    """Each task's training frame with --until, in the short home and in the long one."""
    return {task: tuple(labelled_frame(home, task, horizon_days=h, until=UNTIL)
                        for home in homes) for task, h in HORIZONS.items()}


@pytest.fixture(scope="module")
def trained(homes: tuple[Settings, Settings], frames: dict,
            model_store: Path) -> dict[str, tuple[TrainResult, TrainResult]]:
    return {task: tuple(train_labelled(home, data) for home, data in zip(homes, pair))
            for task, pair in frames.items()}


@pytest.mark.parametrize("task", sorted(HORIZONS))
def test_later_events_change_nothing_in_the_training_frame(frames: dict, task: str) -> None:
    short, long = frames[task]
    frame = short.frame.frame
    assert short.frame.features == long.frame.features
    assert len(frame) > 1000 and 0 < frame["label"].mean() < 1
    assert (frame["event_timestamp"] <= UNTIL).all()
    assert (frame["event_timestamp"] + pd.Timedelta(days=HORIZONS[task]) <= UNTIL).all()
    pd.testing.assert_frame_equal(frame, long.frame.frame)


@pytest.mark.parametrize("task", sorted(HORIZONS))
def test_without_until_the_later_events_are_used(homes: tuple[Settings, Settings],
                                                 frames: dict, task: str) -> None:
    """The comparison above is not vacuous: the whole log labels later rows."""
    h = HORIZONS[task]
    whole = labelled_frame(homes[1], task, horizon_days=h).frame.frame
    known = frames[task][1].frame.frame
    assert whole["event_timestamp"].max() > known["event_timestamp"].max()
    assert whole["event_timestamp"].max() + pd.Timedelta(days=h) > UNTIL


@pytest.mark.parametrize("task", sorted(HORIZONS))
def test_same_windows_and_metrics_in_both_homes(
        trained: dict[str, tuple[TrainResult, TrainResult]], task: str) -> None:
    (_, short), (_, long) = (load_model(r.tag, task=task) for r in trained[task])
    assert short["training_window"] == long["training_window"]
    assert pd.Timestamp(short["training_window"]["valid_until"]) <= UNTIL
    assert short["until"] == long["until"] == UNTIL.isoformat()
    assert short["data_hash"] != long["data_hash"]  # different offline data, same frame
    assert short["metrics"]["model"]["roc_auc"] == pytest.approx(
        long["metrics"]["model"]["roc_auc"], abs=1e-9)
    for baseline in trained[task][0].metrics:
        assert short["metrics"][baseline] == long["metrics"][baseline]


def test_cli_reads_until_as_the_end_of_that_day(homes: tuple[Settings, Settings],
                                                model_store: Path) -> None:
    short = homes[0]
    env = {"PERSONA_HOME": str(short.home), "PERSONA_REPORTS_DIR": str(short.reports_dir)}
    result = CliRunner().invoke(app, ["train", "--task", "propensity", "--horizon", "14d",
                                      "--until", UNTIL_TEXT], env=env)
    assert result.exit_code == 0, result.output
    _, meta = load_model(None, task="propensity")
    assert meta["until"] == "2026-09-19T00:00:00+00:00" and meta["horizon_days"] == 14
    bad = CliRunner().invoke(app, ["train", "--until", "yesterday-ish"], env=env)
    assert bad.exit_code == 1 and "not a date" in bad.output
