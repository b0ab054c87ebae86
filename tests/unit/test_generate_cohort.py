"""The cohort profile of the generator: a purchase-only, date-stamped customer file of one
acquisition quarter over 18 months, reproducible, and accepted by the raw gates."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from persona.cli import app
from persona.data.quality import check_raw
from persona.data.raw import RawTables, read_raw
from persona.synthetic_cohort import ACQUISITION_DAYS, COHORT_DAYS, generate_cohort
from persona.synthetic_shop import Shop


@pytest.fixture(scope="module")
def cohort() -> Shop:
    return generate_cohort(1500, 200, seed=3)


def test_purchase_only_and_stamped_by_date(cohort: Shop) -> None:
    events = cohort.events
    assert set(events["event_type"]) == {"purchase"}
    assert (events["event_timestamp"] == events["event_timestamp"].dt.floor("D")).all()
    several = events.groupby(["user_id", "event_timestamp"]).size()
    assert (several > 1).any()  # several purchases on one day happen


def test_one_acquisition_quarter_over_eighteen_months(cohort: Shop) -> None:
    signups = cohort.users["signup_timestamp"]
    assert signups.max() - signups.min() < pd.Timedelta(days=ACQUISITION_DAYS)
    span = cohort.events["event_timestamp"].max() - signups.min()
    assert pd.Timedelta(days=COHORT_DAYS - 30) < span <= pd.Timedelta(days=COHORT_DAYS)
    first = cohort.events.groupby("user_id")["event_timestamp"].min()
    signup = cohort.users.set_index("user_id")["signup_timestamp"]
    assert (first == signup.loc[first.index]).all()  # everyone buys on their sign-up day


def test_customers_buy_a_few_times_a_year_and_many_stop(cohort: Shop) -> None:
    days = cohort.events.groupby("user_id")["event_timestamp"].nunique()
    assert 2 <= days.mean() <= 12
    last = cohort.events.groupby("user_id")["event_timestamp"].max()
    quiet = (cohort.events["event_timestamp"].max() - last) > pd.Timedelta(days=180)
    assert 0.2 < quiet.mean() < 0.9  # a large part has lapsed: what churn scores are for


def test_same_seed_same_tables_and_the_gates_accept_it(cohort: Shop, tmp_path: Path) -> None:
    again = generate_cohort(1500, 200, seed=3)
    for name in ("events", "users", "items"):
        pd.testing.assert_frame_equal(getattr(cohort, name), getattr(again, name))
    raw = RawTables(cohort.events, cohort.users, cohort.items,
                    {n: tmp_path / n for n in ("events", "users", "items")})
    results = check_raw(raw, pd.Timestamp.now(tz="UTC"), tmp_path / "docs")
    assert all(r["success"] for r in results.values())


def test_the_cli_writes_the_cohort_profile(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "--profile", "cohort", "--users", "300",
                                      "--items", "50", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert set(read_raw(tmp_path).events["event_type"]) == {"purchase"}
    wrong = CliRunner().invoke(app, ["generate", "--profile", "nope", "--out", str(tmp_path)])
    assert wrong.exit_code == 1 and "unknown profile" in wrong.output
