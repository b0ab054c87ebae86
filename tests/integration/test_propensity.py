"""The user-level purchase-propensity task: snapshot times and labels from hand-built logs, the
RFM and recency baselines, reference quantiles, and training end to end on a generated shop
(saved metadata, report, and a model that beats the RFM baseline)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from homes import ingested_home

from persona.core.settings import Settings
from persona.data.offline import current_manifest
from persona.synthetic_shop import Shop, generate_shop
from training.evaluate import recency_score, rfm_score, top_decile_lift
from training.labels import PROPENSITY_COLUMNS, LabelError, propensity_labels, snapshot_times
from training.model_store import (
    REQUIRED_METADATA,
    ModelMetadataError,
    ModelNotFoundError,
    get_model,
    load_model,
)
from training.pipeline import TrainResult, labelled_frame, train
from training.reference import QUANTILES, reference_quantiles
from training.report import PLOTS, REPORT, latest_name
from training.tasks import parse_horizon

DAY = pd.Timedelta(days=1)
T0 = pd.Timestamp("2026-09-01", tz="UTC")  # a snapshot time: midnight UTC, end of Aug 31
H = timedelta(days=30)


def log(*rows: tuple[str, str, pd.Timestamp]) -> pd.DataFrame:
    """Events from (user, type, time) rows, plus a late event by another user so that the log
    is observed 86 days after T0 (T0 is then a weekly snapshot) unless a test says otherwise."""
    rows = (*rows, ("zz", "view", T0 + 86 * DAY))
    frame = pd.DataFrame(rows, columns=["user_id", "event_type", "event_timestamp"])
    return frame.assign(item_id="i1")


def labels_at(events: pd.DataFrame, when: pd.Timestamp = T0, **kwargs) -> dict[str, int]:
    labels = propensity_labels(events, H, **kwargs)
    at = labels[labels["event_timestamp"] == when]
    return dict(zip(at["user_id"], at["label"]))


# --- snapshot times -------------------------------------------------------------------------

def test_snapshot_times_are_weekly_day_ends_whose_horizon_is_observed() -> None:
    until = pd.Timestamp("2026-10-20 15:30", tz="UTC")
    times = snapshot_times(pd.Timestamp("2026-07-02 08:00", tz="UTC"), until, H, DAY,
                           timedelta(days=7))
    assert times[-1] == pd.Timestamp("2026-09-20", tz="UTC")  # 09-20 + 30d = 10-20 00:00
    assert times[-1] + H <= until < times[-1] + H + DAY
    assert (times == times.normalize()).all()  # midnight UTC: the end of a day
    assert (np.diff(times.asi8) == 7 * 86_400 * 10**9).all()
    assert times[0] >= pd.Timestamp("2026-07-02 08:00", tz="UTC") > times[0] - timedelta(days=7)


def test_snapshot_times_with_hourly_interval_stay_on_day_ends() -> None:
    until = pd.Timestamp("2026-10-20 15:30", tz="UTC")
    hourly = snapshot_times(T0, until, H, timedelta(hours=1), timedelta(days=7))
    daily = snapshot_times(T0, until, H, DAY, timedelta(days=7))
    assert list(hourly) == list(daily)


def test_snapshot_times_of_a_log_shorter_than_the_horizon_are_empty() -> None:
    assert snapshot_times(T0, T0 + 20 * DAY, H, DAY, timedelta(days=7)).empty


# --- labels ---------------------------------------------------------------------------------

@pytest.mark.parametrize("delay, expected", [
    (pd.Timedelta(seconds=1), 1),
    (29 * DAY, 1),
    (30 * DAY, 1),  # the end of the horizon is inside it
    (30 * DAY + pd.Timedelta(seconds=1), 0),
    (pd.Timedelta(0), 0),  # a purchase at T itself is known at T: not in the future
    (-DAY, 0),
])
def test_any_purchase_within_the_horizon_after_the_snapshot(delay: pd.Timedelta,
                                                            expected: int) -> None:
    events = log(("u1", "view", T0 - 3 * DAY), ("u1", "purchase", T0 + delay))
    assert labels_at(events)["u1"] == expected


def test_views_and_carts_are_not_purchases_and_other_users_do_not_count() -> None:
    events = log(("u1", "view", T0 - DAY), ("u1", "view", T0 + DAY), ("u1", "cart", T0 + DAY),
                 ("u2", "view", T0 - DAY), ("u2", "purchase", T0 + DAY))
    assert labels_at(events) == {"u1": 0, "u2": 1}


def test_only_users_with_activity_at_or_before_the_snapshot() -> None:
    events = log(("old", "purchase", T0 - 60 * DAY), ("edge", "view", T0),
                 ("new", "view", T0 + pd.Timedelta(seconds=1)),
                 ("new", "purchase", T0 + DAY))
    assert labels_at(events) == {"old": 0, "edge": 0}  # "new" appears at the next snapshot
    assert labels_at(events, T0 + 7 * DAY)["new"] == 0  # its purchase was before that one


def test_purchase_only_log_labels_users() -> None:
    events = log(("u1", "purchase", T0 - 10 * DAY), ("u1", "purchase", T0 + 12 * DAY),
                 ("u2", "purchase", T0 - 40 * DAY))
    assert labels_at(events) == {"u1": 1, "u2": 0}


def test_columns_order_and_types() -> None:
    events = log(("u2", "view", T0 - DAY), ("u1", "view", T0 - 2 * DAY))
    labels = propensity_labels(events, H)
    assert list(labels.columns) == PROPENSITY_COLUMNS
    assert labels["label"].dtype == "int64"
    assert str(labels["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert labels.equals(labels.sort_values(["event_timestamp", "user_id"]).reset_index(drop=True))
    assert labels["event_timestamp"].max() + H <= events["event_timestamp"].max()


def test_events_after_until_change_nothing() -> None:
    until = T0 + 40 * DAY
    base = log(("u1", "view", T0 - DAY), ("u2", "purchase", T0 + 5 * DAY))
    later = pd.concat([base, log(("u1", "purchase", until + pd.Timedelta(seconds=1)),
                                 ("u3", "view", until + DAY))], ignore_index=True)
    expected = propensity_labels(base, H, until=until)
    pd.testing.assert_frame_equal(propensity_labels(later, H, until=until), expected)
    assert expected["event_timestamp"].max() + H <= until
    assert "u3" not in set(expected["user_id"])


def test_too_short_or_empty_log_is_a_clear_error() -> None:
    events = log(("u1", "view", T0))
    with pytest.raises(LabelError, match="fully observed"):
        propensity_labels(events, timedelta(days=200))
    with pytest.raises(LabelError, match="empty"):
        propensity_labels(events.iloc[:0], H)


def test_parse_horizon() -> None:
    assert parse_horizon("30d") == 30 and parse_horizon(" 14d ") == 14
    for bad in ("30", "2w", "0d", "-3d", "d"):
        with pytest.raises(ValueError, match="horizon"):
            parse_horizon(bad)


# --- baselines, lift, reference quantiles -------------------------------------------------

def _features(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    defaults = {"user_activity__days_since_last_event": [1.0] * n,
                "user_activity__days_since_last_purchase": [np.nan] * n,
                "user_activity__purchases_90d": [0.0] * n, "user_activity__spend_90d": [0.0] * n}
    return pd.DataFrame({"event_timestamp": T0, **defaults,
                         **{f"user_activity__{k}": v for k, v in columns.items()}})


def test_rfm_ranks_recent_frequent_big_buyers_first_and_never_buyers_last() -> None:
    frame = _features(days_since_last_purchase=[2.0, 20.0, np.nan, np.nan, 2.0],
                      days_since_last_event=[2.0, 1.0, 0.5, 30.0, 2.0],
                      purchases_90d=[3.0, 1.0, 0.0, 0.0, 3.0],
                      spend_90d=[300.0, 10.0, 0.0, 0.0, 90.0])
    score = rfm_score(frame)
    assert score[0] > score[4] > score[1] > score[2] > score[3]
    assert (recency_score(frame)[[2, 1, 0, 3]] == [-0.5, -1.0, -2.0, -30.0]).all()


def test_rfm_ranks_within_each_snapshot() -> None:
    one = _features(purchases_90d=[1.0, 2.0], spend_90d=[1.0, 2.0],
                    days_since_last_purchase=[5.0, 5.0])
    two = one.assign(event_timestamp=T0 + 7 * DAY, user_activity__purchases_90d=[10.0, 20.0],
                     user_activity__spend_90d=[10.0, 20.0])
    score = rfm_score(pd.concat([one, two], ignore_index=True))
    np.testing.assert_allclose(score[:2], score[2:])


def test_missing_features_rank_last() -> None:
    frame = _features(days_since_last_event=[np.nan, 50.0])
    assert recency_score(frame)[0] < recency_score(frame)[1]
    assert rfm_score(frame)[0] < rfm_score(frame)[1]


def test_top_decile_lift() -> None:
    y = np.array([1] + [0] * 9 + [1] * 2 + [0] * 8)  # 20 rows, 3 positives
    scores = -np.arange(20.0)  # the first two rows are the top decile: one positive
    assert top_decile_lift(y, scores) == pytest.approx((1 / 2) / (3 / 20))
    assert np.isnan(top_decile_lift(np.zeros(5, int), np.arange(5.0)))


def test_reference_quantiles_use_the_snapshot_rows_only() -> None:
    frame = pd.DataFrame({"event_timestamp": [T0] * 101 + [T0 - 7 * DAY],
                          "f": [*range(101), 1000.0], "g": [np.nan] * 100 + [5.0, 7.0]})
    q = reference_quantiles(frame, ["f", "g"], T0)
    assert q["f"] == {str(level): pytest.approx(level * 100) for level in QUANTILES}
    assert q["g"]["0.5"] == 5.0  # missing values are left out
    with pytest.raises(ValueError, match="no rows"):
        reference_quantiles(frame, ["f"], T0 + DAY)


# --- end to end -----------------------------------------------------------------------------

# 1,500 users over 90 days: validation is one snapshot of about 1,000 users. On seeds 0-4 of
# this size the model's validation ROC AUC beat the RFM baseline by 0.012-0.054 (0.73-0.79 vs
# 0.70-0.75); seed 0 is used as is.
SHOP = {"n_users": 1500, "n_items": 300, "days": 90, "seed": 0}


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(**SHOP)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, shop: Shop) -> Settings:
    root = tmp_path_factory.mktemp("propensity")
    return ingested_home(root, shop)


@pytest.fixture(scope="module")
def trained(settings: Settings, model_store: Path) -> TrainResult:
    return train(settings, task="propensity")


@pytest.mark.integration
def test_saved_with_the_conversion_metadata_keys_plus_horizon_and_quantiles(
        trained: TrainResult, settings: Settings) -> None:
    booster, meta = load_model(trained.tag, task="propensity")
    assert trained.tag.startswith("persona-propensity:")
    assert set(REQUIRED_METADATA) <= set(meta) and meta["horizon_days"] == 30
    assert meta["task"] == "propensity" and meta["feature_service"] == "propensity_v1"
    assert meta["features"] == booster.feature_names
    assert all(f.startswith("user_activity__") for f in meta["features"])
    assert meta["data_hash"] == current_manifest(settings.offline_root)["data_hash"]
    assert meta["validation"]["training_frame"]["success"] is True
    window = {k: pd.Timestamp(v) for k, v in meta["training_window"].items()}
    assert window["valid_from"] == window["valid_until"]  # one snapshot
    assert window["valid_until"] == window["valid_until"].normalize()
    assert window["train_until"] + 30 * DAY <= window["valid_from"]
    last_event = pd.Timestamp(current_manifest(settings.offline_root)["events_until"])
    assert window["valid_until"] + 30 * DAY <= last_event
    quantiles = meta["reference_quantiles"]
    assert set(quantiles) == set(meta["features"])
    for feature, levels in quantiles.items():
        values = [levels[str(q)] for q in QUANTILES]
        assert values == sorted(values), feature
    views = quantiles["user_activity__views_90d"]
    assert views["0.95"] > views["0.5"]
    assert get_model(None, "propensity").tag == trained.tag


@pytest.mark.integration
def test_beats_the_rfm_baseline(trained: TrainResult) -> None:
    m = trained.metrics
    assert {"model", "rfm", "recency"} <= set(m)
    assert "ndcg@10" not in m["model"]  # one row per user: no per-user ranking
    assert m["model"]["roc_auc"] > m["rfm"]["roc_auc"]
    assert m["model"]["pr_auc"] > m["rfm"]["pr_auc"]
    assert m["model"]["top_decile_lift"] > 1.5
    assert 0.1 < m["validation_positive_rate"] < 0.5


@pytest.mark.integration
def test_report_names_both_baselines(trained: TrainResult, settings: Settings) -> None:
    text = trained.report_path.read_text()
    assert trained.report_path.name == REPORT
    assert "Purchase-propensity model" in text and trained.tag in text
    assert "| top_decile_lift |" in text and "rfm" in text and "recency" in text
    assert "1 - propensity" in text
    for name in PLOTS.values():
        assert (trained.report_path.parent / name).stat().st_size > 1000
    latest = settings.reports_dir / latest_name("propensity")
    assert latest.resolve() == trained.report_path.parent.resolve()


@pytest.mark.integration
def test_recent_buyers_score_higher(trained: TrainResult, settings: Settings) -> None:
    """Behaviour: among users of the validation snapshot, those who bought in the last 30 days
    get a higher mean propensity than those who did not."""
    from training.model import predict

    booster, meta = load_model(trained.tag, task="propensity")
    frame = labelled_frame(settings, "propensity").frame.frame
    frame = frame[frame["event_timestamp"] == pd.Timestamp(meta["training_window"]["valid_until"])]
    p = predict(booster, frame, meta["features"])
    bought = frame["user_activity__purchases_30d"].fillna(0).to_numpy() > 0
    assert p[bought].mean() > p[~bought].mean() + 0.1


@pytest.mark.integration
def test_a_model_of_one_task_is_not_loaded_for_the_other(trained: TrainResult) -> None:
    with pytest.raises(ModelMetadataError, match="propensity"):
        load_model(trained.tag, task="conversion")
    with pytest.raises(ModelNotFoundError, match="persona train --task conversion"):
        load_model(None, task="conversion")


@pytest.mark.integration
def test_report_shows_segments_of_the_validation_users(trained: TrainResult) -> None:
    page = Path(trained.report_path).read_text()
    assert "## Segments (validation users)" in page and "| champions |" in page
    for plot in ("segment_sizes.png", "propensity_by_segment.png"):
        assert (Path(trained.report_path).parent / plot).stat().st_size > 0


@pytest.mark.integration
def test_segments_as_of_a_date_with_the_trained_model(trained: TrainResult, settings: Settings,
                                                      shop: Shop) -> None:
    from persona.jobs.segments import segment_users
    from persona.profiling.segments import segment_sizes
    from persona.profiling.tags import TagBook

    as_of = pd.Timestamp("2026-09-15", tz="UTC")
    segmented = segment_users(settings, as_of)
    active = shop.events.loc[shop.events["event_timestamp"] <= as_of, "user_id"].unique()
    assert sorted(segmented["user_id"]) == sorted(active)
    assert segmented["propensity"].between(0, 1).all()
    np.testing.assert_allclose(segmented["churn_risk"], 1 - segmented["propensity"])
    assert set(segmented["segment"]) <= {s.name for s in TagBook.load().segments}
    assert segment_sizes(segmented)["users"].sum() == len(segmented)
    champions = segmented[segmented["segment"] == "champions"]
    assert len(champions) and champions["propensity"].mean() > segmented["propensity"].mean()
