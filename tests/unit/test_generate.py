"""The synthetic shop: follows the data contract, is reproducible, and has learnable structure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from persona.core.contract import EVENT_TYPES, TABLES
from persona.synthetic_shop import DEFAULT_END, Shop, generate_shop, write_shop

N_USERS, N_ITEMS, DAYS = 300, 100, 30


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(N_USERS, N_ITEMS, DAYS, seed=7)


@pytest.fixture(scope="module")
def big_shop() -> Shop:
    """Large enough for behavioural statistics to be stable, still well under a second."""
    return generate_shop(1500, 300, 42, seed=11)


def _tables(shop: Shop) -> dict[str, pd.DataFrame]:
    return {"events": shop.events, "users": shop.users, "items": shop.items}


def _label_rate(events: pd.DataFrame) -> float:
    """Share of views followed by a purchase of the same item by the same user within 7 days."""
    views = events.loc[events.event_type == "view", ["user_id", "item_id", "event_timestamp"]]
    buys = events.loc[events.event_type == "purchase", ["user_id", "item_id", "event_timestamp"]]
    buys = buys.rename(columns={"event_timestamp": "bought"}).assign(at=lambda d: d.bought)
    nxt = pd.merge_asof(views, buys.sort_values("bought"), left_on="event_timestamp",
                        right_on="bought", by=["user_id", "item_id"], direction="forward",
                        allow_exact_matches=False)
    return float(((nxt["at"] - nxt.event_timestamp) <= pd.Timedelta(days=7)).mean())


# --- contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events", "users", "items"])
def test_columns_and_dtypes_follow_contract(shop: Shop, name: str) -> None:
    spec, frame = TABLES[name], _tables(shop)[name]
    assert list(frame.columns) == list(spec.required + spec.optional)
    for col in spec.timestamps:
        assert frame[col].dtype == "datetime64[ns, UTC]"
    for col in spec.strings:
        assert frame[col].dropna().map(type).eq(str).all(), col


def test_numeric_columns(shop: Shop) -> None:
    assert shop.events.quantity.dtype == "int64"
    assert shop.events.price.dtype == "float64"
    assert shop.items.list_price.dtype == "float64"
    assert (shop.events.quantity >= 1).all()
    assert (shop.events.price >= 0).all()
    assert (shop.items.list_price > 0).all()


def test_ids_are_zero_padded_unique_strings(shop: Shop) -> None:
    assert shop.users.user_id.str.fullmatch(r"U\d{7}").all()
    assert shop.items.item_id.str.fullmatch(r"I\d{6}").all()
    assert shop.users.user_id.is_unique and shop.items.item_id.is_unique
    assert set(shop.events.user_id) <= set(shop.users.user_id)
    assert set(shop.events.item_id) <= set(shop.items.item_id)


def test_event_types_allowed_and_all_present(shop: Shop) -> None:
    assert set(shop.events.event_type) == set(EVENT_TYPES)


def test_catalogue_has_categories_and_brands(shop: Shop) -> None:
    assert 10 <= shop.items.category.nunique() <= 20
    assert shop.items.groupby("category").brand.nunique().max() > 1


def test_timestamps_in_window_and_after_signup_and_creation(shop: Shop) -> None:
    end = pd.Timestamp(DEFAULT_END)
    ev = shop.events
    assert (ev.event_timestamp > end - pd.Timedelta(days=DAYS)).all()
    assert (ev.event_timestamp <= end).all()
    assert (shop.users.signup_timestamp <= end).all()
    assert (shop.items.created_timestamp <= end).all()
    joined = ev.merge(shop.users, on="user_id").merge(shop.items, on="item_id")
    assert len(joined) == len(ev)
    assert (joined.event_timestamp >= joined.signup_timestamp).all()
    assert (joined.event_timestamp >= joined.created_timestamp).all()


def test_signups_before_and_within_window(shop: Shop) -> None:
    start = pd.Timestamp(DEFAULT_END) - pd.Timedelta(days=DAYS)
    within = (shop.users.signup_timestamp > start).mean()
    assert 0.05 < within < 0.6


def test_custom_end_bounds_the_log() -> None:
    end = datetime(2024, 3, 15, 12, tzinfo=UTC)
    ev = generate_shop(100, 50, 10, seed=1, end=end).events
    assert ev.event_timestamp.max() <= pd.Timestamp(end)
    assert ev.event_timestamp.min() > pd.Timestamp(end - timedelta(days=10))


def test_events_sorted_by_time_then_user_without_duplicate_keys(shop: Shop) -> None:
    ev = shop.events
    resorted = ev.sort_values(["event_timestamp", "user_id"], kind="stable")
    assert resorted.index.equals(ev.index)
    # a second-precision log: one event per user, item, kind and second (and no event ids)
    assert not ev.duplicated(["user_id", "item_id", "event_type", "event_timestamp"]).any()
    assert ev["event_id"].isna().all()


@pytest.mark.parametrize("n_items", [1, 3])
def test_catalogue_smaller_than_category_list(n_items: int) -> None:
    s = generate_shop(50, n_items, 10, seed=2)
    assert len(s.items) == n_items
    assert set(s.events.item_id) <= set(s.items.item_id)


@pytest.mark.parametrize(
    "kwargs", [{"n_users": 0}, {"n_items": 0}, {"days": 0}, {"end": datetime(2026, 1, 1)}]
)
def test_rejects_bad_arguments(kwargs: dict) -> None:
    args = {"n_users": 10, "n_items": 10, "days": 5} | kwargs
    with pytest.raises(ValueError):
        generate_shop(**args)


# --- files and determinism ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_seed_gives_same_bytes(tmp_path: Path, fmt: str) -> None:
    first = write_shop(generate_shop(N_USERS, N_ITEMS, DAYS, seed=3), tmp_path / "a", fmt)
    second = write_shop(generate_shop(N_USERS, N_ITEMS, DAYS, seed=3), tmp_path / "b", fmt)
    other = write_shop(generate_shop(N_USERS, N_ITEMS, DAYS, seed=4), tmp_path / "c", fmt)
    assert set(first) == {"events", "users", "items"}
    for name, path in first.items():
        assert path.name == f"{name}.{fmt}"
        assert path.read_bytes() == second[name].read_bytes()
        assert path.read_bytes() != other[name].read_bytes()


def test_parquet_round_trip_keeps_contract(shop: Shop, tmp_path: Path) -> None:
    paths = write_shop(shop, tmp_path)
    for name, frame in _tables(shop).items():
        pd.testing.assert_frame_equal(pd.read_parquet(paths[name]), frame)


def test_csv_timestamps_are_iso_utc(shop: Shop, tmp_path: Path) -> None:
    paths = write_shop(shop, tmp_path, fmt="csv")
    raw = pd.read_csv(paths["events"], dtype=str)
    assert raw.event_timestamp.str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    parsed = pd.to_datetime(raw.event_timestamp, utc=True)
    assert (parsed.to_numpy() == shop.events.event_timestamp.to_numpy()).all()
    users = pd.read_csv(paths["users"], dtype=str)
    assert users.signup_timestamp.str.endswith("Z").all()


def test_write_rejects_unknown_format(shop: Shop, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_shop(shop, tmp_path, fmt="json")


# --- behaviour ------------------------------------------------------------------------------


def test_funnel_narrows(shop: Shop) -> None:
    counts = shop.events.event_type.value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0


def test_purchases_mostly_follow_a_view_of_the_item(big_shop: Shop) -> None:
    ev = big_shop.events
    views = ev.loc[ev.event_type == "view", ["user_id", "item_id", "event_timestamp"]]
    buys = ev.loc[ev.event_type == "purchase", ["user_id", "item_id", "event_timestamp"]]
    prev = pd.merge_asof(buys, views.rename(columns={"event_timestamp": "seen"}).sort_values(
        "seen"), left_on="event_timestamp", right_on="seen", by=["user_id", "item_id"])
    assert ((prev.event_timestamp - prev.seen) <= pd.Timedelta(days=7)).mean() > 0.9


@pytest.mark.parametrize("fixture", ["shop", "big_shop"])
def test_view_to_purchase_label_rate_is_sane(fixture: str, request) -> None:
    rate = _label_rate(request.getfixturevalue(fixture).events)
    assert 0.005 < rate < 0.30


def test_some_users_rebuy_items(big_shop: Shop) -> None:
    buys = big_shop.events[big_shop.events.event_type == "purchase"]
    assert buys.groupby(["user_id", "item_id"]).size().max() >= 2


def test_quantity_mostly_one(big_shop: Shop) -> None:
    qty = big_shop.events.loc[big_shop.events.event_type == "purchase", "quantity"]
    assert 0.6 < (qty == 1).mean() < 1.0
    assert qty.max() <= 3


def test_activity_is_heavy_tailed(shop: Shop) -> None:
    per_user = shop.events.user_id.value_counts()
    top = per_user.iloc[: max(1, N_USERS // 10)].sum()
    assert top / per_user.sum() > 0.3


def test_weekends_are_busier(big_shop: Shop) -> None:
    per_day = big_shop.events.groupby(big_shop.events.event_timestamp.dt.floor("D")).size()
    weekend = per_day.index.dayofweek >= 5
    assert per_day[weekend].mean() > 1.1 * per_day[~weekend].mean()


def test_some_active_users_churn(big_shop: Shop) -> None:
    ev, end = big_shop.events, pd.Timestamp(DEFAULT_END)
    first = ev[ev.event_timestamp <= end - pd.Timedelta(days=28)].user_id.value_counts()
    last = set(ev[ev.event_timestamp > end - pd.Timedelta(days=14)].user_id)
    regulars = first[first >= 10].index
    churned = [u for u in regulars if u not in last]
    assert len(churned) >= 0.05 * len(regulars) > 0


def test_cli_generate_says_what_it_wrote_as_json_and_ends_today_by_default(
        tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from persona.cli import app

    args = ["generate", "--users", "60", "--items", "20", "--days", "5", "--json"]
    pinned = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--end", "2026-10-01"])
    assert pinned.exit_code == 0, pinned.output
    report = json.loads(pinned.stdout)  # one JSON object on stdout, nothing else
    assert report["rows"]["events"] == len(pd.read_parquet(report["files"]["events"]))
    assert report["rows"]["users"] == 60 and report["rows"]["items"] == 20
    assert pd.Timestamp("2026-09-26", tz="UTC") <= pd.Timestamp(report["events_from"])
    assert pd.Timestamp(report["events_until"]) < pd.Timestamp("2026-10-01", tz="UTC")
    today = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    until = pd.Timestamp(json.loads(today.stdout)["events_until"])
    assert pd.Timestamp.now(tz="UTC") - until < pd.Timedelta(days=2)
