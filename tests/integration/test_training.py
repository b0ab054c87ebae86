"""Training end to end on generated shops ingested into temporary homes: what is saved, what is
reported, that the model beats a popularity ranking, and that the training data cannot see the
future."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from homes import ingested_home

from expectations.gate import DataQualityError
from persona.core.settings import Settings
from persona.data.offline import current_manifest
from persona.featurestore.config import feature_store
from persona.synthetic_shop import Shop, generate_shop
from training.labels import conversion_labels
from training.model_store import REQUIRED_METADATA, WINDOW_KEYS, load_model
from training.pipeline import TrainingError, TrainResult, train
from training.report import LATEST, PLOTS, REPORT
from training.retrieval import training_frame

pytestmark = pytest.mark.integration

# Big enough that validation (about 3,700 rows, 260 positives) separates the model from the
# popularity baseline by several standard errors; seeds 0-4 of this size all do.
SHOP = {"n_users": 2000, "n_items": 600, "days": 50, "seed": 0}
HORIZON = pd.Timedelta(days=7)


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(**SHOP)


@pytest.fixture(scope="module")
def cutoff(shop: Shop) -> pd.Timestamp:
    """Mid-afternoon, so the last daily snapshot of the cut log covers a partial day."""
    return shop.events["event_timestamp"].max() - pd.Timedelta(days=10, hours=9)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, shop: Shop) -> Settings:
    return ingested_home(tmp_path_factory.mktemp("full"), shop)


@pytest.fixture(scope="module")
def cut(tmp_path_factory: pytest.TempPathFactory, shop: Shop, cutoff: pd.Timestamp) -> Settings:
    """The same shop observed only up to the cut-off."""
    events = shop.events[shop.events["event_timestamp"] <= cutoff].reset_index(drop=True)
    return ingested_home(tmp_path_factory.mktemp("cut"), Shop(events, shop.users, shop.items))


@pytest.fixture(scope="module")
def trained(full: Settings, model_store: Path) -> TrainResult:
    steps: list[str] = []
    result = train(full, on_step=steps.append)
    assert steps and steps[-1] == "saving the model"
    return result


def test_model_is_saved_with_the_metadata_serving_needs(trained: TrainResult, full: Settings,
                                                        model_store: Path) -> None:
    booster, meta = load_model(trained.tag)
    assert set(REQUIRED_METADATA) <= set(meta)
    assert meta["task"] == "conversion" and meta["feature_service"] == "conversion_v1"
    assert meta["features"] == booster.feature_names
    assert all("__" in f for f in meta["features"])
    assert "user_activity__views_7d" in meta["features"]
    assert set(meta["training_window"]) == set(WINDOW_KEYS)
    window = {k: pd.Timestamp(v) for k, v in meta["training_window"].items()}
    assert (window["train_from"] < window["train_until"] < window["valid_from"]
            < window["valid_until"])
    assert window["valid_from"] - window["train_until"] >= HORIZON - pd.Timedelta(days=1)
    assert meta["data_hash"] == current_manifest(full.offline_root)["data_hash"]
    assert meta["snapshot_interval_seconds"] == 86400
    assert {"raw.events", "features.user_activity"} <= set(meta["validation"]["ingest"])
    assert meta["validation"]["training_frame"]["success"] is True
    assert set(meta["metrics"]["model"]) >= {"roc_auc", "pr_auc", "log_loss", "ece", "ndcg@10"}
    assert load_model(None)[1]["data_hash"] == meta["data_hash"]  # latest is this one
    assert trained.n_train > 0 and trained.n_valid > 0


def test_report_and_plots_are_written(trained: TrainResult, full: Settings) -> None:
    directory = trained.report_path.parent
    assert trained.report_path.name == REPORT and directory.parent == full.reports_dir
    for name in PLOTS.values():
        assert (directory / name).stat().st_size > 1000
    text = trained.report_path.read_text()
    assert trained.tag in text and "item_popularity" in text and "user_activity" in text
    assert (full.reports_dir / LATEST).resolve() == directory.resolve()


def test_model_beats_item_popularity(trained: TrainResult) -> None:
    metrics = trained.metrics
    assert metrics["model"]["roc_auc"] > metrics["item_popularity"]["roc_auc"]
    assert metrics["model"]["roc_auc"] > metrics["user_activity"]["roc_auc"]
    assert metrics["model"]["log_loss"] < metrics["item_popularity"]["log_loss"]


@pytest.fixture(scope="module")
def trained_v2(full: Settings, model_store: Path) -> TrainResult:
    return train(full, features="conversion_v2")


def test_v2_model_keeps_its_categories_and_beats_the_baselines(trained_v2: TrainResult,
                                                               model_store: Path) -> None:
    booster, meta = load_model(trained_v2.tag)
    assert meta["feature_service"] == "conversion_v2" and meta["features"] == booster.feature_names
    categorical = {f for f, t in zip(booster.feature_names, booster.feature_types) if t == "c"}
    assert categorical == set(meta["categories"]) >= {"user_profile__region",
                                                       "item_catalog__brand"}
    assert all(values == sorted(values) and values for values in meta["categories"].values())
    assert {"user_item_history__pair_views_lifetime", "user_recency__days_since_latest_event",
            "item_lifetime__item_conversion_prior"} <= set(meta["features"])
    assert not any(f.endswith("_at") for f in meta["features"])  # instants only as "days since"
    metrics = trained_v2.metrics
    assert meta["calibration"]["method"] in {"isotonic", "platt", "none"}
    baselines = ("item_popularity", "user_activity", "priors_logistic", "priors_xgboost")
    for baseline in baselines:
        assert metrics["model"]["roc_auc"] > metrics[baseline]["roc_auc"], (baseline, metrics)
        assert metrics["model"]["log_loss"] < metrics[baseline]["log_loss"], (baseline, metrics)
    # calibrated at least as well as the best-calibrated baseline
    assert metrics["model"]["ece"] <= min(metrics[b]["ece"] for b in baselines), metrics


def test_a_v2_row_counts_the_pairs_events_strictly_before_it(shop: Shop, full: Settings) -> None:
    """Exact to the event: every row's user x item counts and recency equal what the raw log
    holds strictly before the row's time, the same day's earlier events included."""
    labels = conversion_labels(shop.events, shop.items)
    frame = training_frame(feature_store(full), labels, "conversion_v2").frame
    events = shop.events
    rows = frame.sample(n=250, random_state=1)
    same_day = 0
    for row in rows.itertuples(index=False):
        pair = events[(events["user_id"] == row.user_id) & (events["item_id"] == row.item_id)
                      & (events["event_timestamp"] < row.event_timestamp)]
        views = pair[pair["event_type"] == "view"]
        if pair.empty:  # a pair's first event: no row before it, so no history at all
            assert pd.isna(row.user_item_history__pair_views_lifetime)
            continue
        assert row.user_item_history__pair_views_lifetime == len(views)
        assert row.user_item_history__pair_purchases_lifetime == (
            pair["event_type"] == "purchase").sum()
        if len(views):
            latest = (row.event_timestamp - views["event_timestamp"].max()) / pd.Timedelta(days=1)
            assert row.user_item_recency__days_since_pair_view == pytest.approx(latest, abs=1e-6)
            same_day += bool((views["event_timestamp"].dt.floor("D")
                              == row.event_timestamp.floor("D")).any())
    assert same_day > 0  # earlier views on the row's own day were counted


@pytest.mark.parametrize("service", ["conversion_v1", "conversion_v2"])
def test_future_events_change_no_earlier_training_row(shop: Shop, cut: Settings, full: Settings,
                                                      cutoff: pd.Timestamp, service: str) -> None:
    """Rows whose label window closes before the cut-off are identical, features and labels,
    whether or not the events after the cut-off were ingested."""
    before = cutoff - HORIZON
    cut_events = shop.events[shop.events["event_timestamp"] <= cutoff]
    cut_labels = conversion_labels(cut_events, shop.items, until=cutoff)
    full_labels = conversion_labels(shop.events, shop.items)
    cut_labels = cut_labels[cut_labels["event_timestamp"] < before]
    full_labels = full_labels[full_labels["event_timestamp"] < before]
    seen = training_frame(feature_store(cut), cut_labels, service)
    later = training_frame(feature_store(full), full_labels, service)
    assert seen.features == later.features
    assert len(seen.frame) > 5000 and seen.frame["label"].sum() > 100
    pd.testing.assert_frame_equal(seen.frame, later.frame)


def test_entity_without_earlier_feature_rows_is_kept_with_nan(shop: Shop, full: Settings) -> None:
    events = shop.events
    first = events.groupby("user_id")["event_timestamp"].min()
    user = first.index[len(first) // 2]
    item = events["item_id"].iloc[0]
    category = shop.items.set_index("item_id").loc[item, "category"]
    when = first[user] - pd.Timedelta(days=3)
    entity = pd.DataFrame({
        "user_id": [user, "U-nobody", events["user_id"].iloc[-1]],
        "item_id": [item] * 3,
        "category": [category] * 3,
        "event_timestamp": [when, when, events["event_timestamp"].max()],
        "label": [0, 1, 0],
    })
    frame = training_frame(feature_store(full), entity).frame
    assert len(frame) == 3
    early = frame[frame["user_id"].isin([user, "U-nobody"])]
    assert early["user_activity__views_7d"].isna().all()
    assert early["user_activity__purchases_30d"].isna().all()
    assert frame.loc[frame["user_id"] == events["user_id"].iloc[-1],
                     "user_activity__views_90d"].notna().all()


def test_training_frame_gate_rejects_bad_labels(shop: Shop, full: Settings) -> None:
    labels = conversion_labels(shop.events, shop.items).head(50).assign(label=2)
    with pytest.raises(DataQualityError, match="label"):
        training_frame(feature_store(full), labels)


def test_train_without_ingest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="persona ingest"):
        train(Settings(home=tmp_path / "home", reports_dir=tmp_path / "reports"))
