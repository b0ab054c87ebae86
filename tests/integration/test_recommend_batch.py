"""`persona recommend --as-of DATE`: top-k lists per user from the whole catalogue (the
user_candidates view as of DATE), ordered by the stored ranker on point-in-time features, with
the business rules applied; the same lists from a home that never saw an event after DATE, and
a ranker that learnt from events after DATE refused."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from homes import ingested_home
from typer.testing import CliRunner

from persona.cli import app
from persona.core.settings import Settings
from persona.jobs.recommend import recommend
from persona.recommend.rules import RuleBook
from persona.synthetic_shop import Shop
from training.candidate_training import train_retrieval
from training.candidates import GENERATORS
from training.recommend_training import train_recommend

pytestmark = pytest.mark.integration
K = 5
RULES = RuleBook(exclude_bought=True, repeat_categories=frozenset({"grocery"}),
                 max_per_category=2, max_per_brand=3)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_shop: Shop, model_store: Path,
         as_of: pd.Timestamp) -> tuple[Settings, str]:
    settings = ingested_home(tmp_path_factory.mktemp("recommend"), small_shop)
    train_retrieval(settings, as_of)
    return settings, train_recommend(settings, as_of).tag


@pytest.fixture(scope="module")
def as_of(small_shop: Shop) -> pd.Timestamp:
    return small_shop.events["event_timestamp"].max().normalize()  # the ranker needs 5 weeks


@pytest.fixture(scope="module")
def listed(home, as_of: pd.Timestamp, tmp_path_factory: pytest.TempPathFactory):
    """The lists of every active user, with RULES, from the full home."""
    settings, _ = home
    return recommend(settings, as_of, K, tmp_path_factory.mktemp("lists") / "recs.parquet",
                     rules=RULES)


def test_lists_follow_the_rules(home, listed, as_of: pd.Timestamp, small_shop: Shop) -> None:
    settings, tag = home
    result = listed
    lists = pd.read_parquet(result.path)
    assert result.model_tag == tag and set(lists["model_tag"]) == {tag}
    active = small_shop.events.loc[small_shop.events["event_timestamp"] <= as_of, "user_id"]
    assert set(lists["user_id"]) == set(active) and result.users == active.nunique()
    assert (lists.groupby("user_id")["rank"].agg(list)
            .map(lambda r: r == list(range(1, len(r) + 1)))).all()
    assert lists.groupby("user_id").size().max() == K
    assert (lists.groupby("user_id")["relevance"].diff().dropna() <= 0).all()
    assert set(lists["source"]) <= set(GENERATORS) and (lists["as_of"] == as_of).all()
    items = small_shop.items.set_index("item_id")
    lists = lists.join(items[["category", "brand"]], on="item_id")
    assert lists.groupby(["user_id", "category"]).size().max() <= 2
    assert lists.groupby(["user_id", "brand"]).size().max() <= 3
    events = small_shop.events
    bought = events[(events["event_type"] == "purchase") & (events["event_timestamp"] <= as_of)]
    again = lists.merge(bought[["user_id", "item_id"]].drop_duplicates())
    assert (again["category"] == "grocery").all()  # bought items come back only if they repeat


def test_no_event_after_the_date_changes_a_list(home, listed, as_of: pd.Timestamp,
                                               small_shop: Shop, tmp_path: Path) -> None:
    """A home ingested from the log cut at DATE, its retrieval fitted at DATE too, gives the
    same lists with the same ranker: no later event reaches a candidate or a feature."""
    _, tag = home
    past = Shop(small_shop.events[small_shop.events["event_timestamp"] <= as_of],
                small_shop.users, small_shop.items)
    cut_home = ingested_home(tmp_path / "cut", past)
    train_retrieval(cut_home, as_of)
    full = pd.read_parquet(listed.path)
    cut = pd.read_parquet(recommend(cut_home, as_of, K, tmp_path / "b.parquet", rules=RULES,
                                    model_tag=tag).path)
    pd.testing.assert_frame_equal(full.drop(columns="score"), cut.drop(columns="score"))
    pd.testing.assert_series_equal(full["score"], cut["score"], rtol=1e-9)


def test_cli_writes_the_lists_and_says_so(home, tmp_path: Path, small_shop: Shop,
                                          as_of: pd.Timestamp) -> None:
    settings, _ = home
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": sorted(small_shop.events["user_id"].unique())[:7]}).to_csv(
        users, index=False)
    done = CliRunner().invoke(app, ["recommend", "--home", str(settings.home), "--as-of",
                                    str(as_of.date()), "--k", "3", "--users", str(users), "--out",
                                    str(tmp_path / "r.parquet"), "--json"])
    assert done.exit_code == 0, done.output
    said = json.loads(done.output.strip().splitlines()[-1])
    assert said["users"] == 7 and said["rows"] == len(pd.read_parquet(tmp_path / "r.parquet"))
    bad = CliRunner().invoke(app, ["recommend", "--home", str(settings.home), "--as-of", "x",
                                   "--out", str(tmp_path / "x.parquet")])
    assert bad.exit_code == 1 and "not a date" in bad.output


def test_a_ranker_that_learnt_after_the_date_is_refused(home, as_of: pd.Timestamp,
                                                       tmp_path: Path) -> None:
    settings, _ = home
    with pytest.raises(ValueError, match="after --as-of"):
        recommend(settings, as_of - pd.Timedelta(days=1), K, tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()
