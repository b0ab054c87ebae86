"""`persona train --task retrieval` on an ingested home: the recall table of every generator
and of the kept union, the generators saved as numpy arrays in the model store and read back
the same, the report under the home's reports, and only events up to --until read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from homes import ingested_home
from typer.testing import CliRunner

from persona.cli import app
from persona.core.settings import Settings
from training.candidate_training import CANDIDATES, RECALL_AT, load, train_retrieval
from training.candidates import GENERATORS, fit

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, small_shop) -> Settings:
    return ingested_home(tmp_path_factory.mktemp("retrieval"), small_shop)


def test_cli_trains_saves_and_reports(home: Settings, model_store: Path, small_shop) -> None:
    done = CliRunner().invoke(app, ["train", "--task", "retrieval", "--home", str(home.home),
                                    "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output.strip().splitlines()[-1])
    assert set(result["recall"]) == {*GENERATORS, "union"}
    for values in result["recall"].values():
        assert [float(values[str(k)]) for k in RECALL_AT] == sorted(
            float(values[str(k)]) for k in RECALL_AT)  # recall grows with k
    assert result["kept"] and set(result["kept"]) <= set(GENERATORS)
    assert Path(result["report"]).is_relative_to(home.home / "reports")
    assert "recall@200" in Path(result["report"]).read_text()

    generators, metadata = load(result["model"])
    assert metadata["candidates"] == CANDIDATES and metadata["kept"] == result["kept"]
    until = pd.Timestamp(metadata["until"])
    refit = fit(small_shop.events, small_shop.items["item_id"], until)
    np.testing.assert_array_equal(generators.item_factors, refit.item_factors)
    np.testing.assert_array_equal(generators.popularity, refit.popularity)


def test_until_reads_nothing_later(home: Settings, model_store: Path, small_shop) -> None:
    until = small_shop.events["event_timestamp"].max() - pd.Timedelta(days=10)
    result = train_retrieval(home, until)
    generators, metadata = load(result.tag)
    assert pd.Timestamp(metadata["until"]) == until
    later = small_shop.events[small_shop.events["event_timestamp"] > until]
    first_seen_later = set(later["user_id"]) - set(
        small_shop.events.loc[small_shop.events["event_timestamp"] <= until, "user_id"])
    assert first_seen_later and not first_seen_later & set(generators.users)
