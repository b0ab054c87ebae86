"""`persona score`: batch scores with reasons, as of a date or as of each candidate row's own
time (a backtest that must reproduce the training frame's predictions), in chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from homes import ingested_home
from typer.testing import CliRunner

from persona.cli import app
from persona.core.dates import parse_as_of
from persona.core.settings import Settings
from persona.synthetic_shop import Shop, generate_shop
from training.model import predict
from training.model_store import ModelMetadataError, load_model
from training.pipeline import TrainResult, labelled_frame, train
from training.score import ScoreError, active_users, output_schema, raw_events, score

pytestmark = pytest.mark.integration

SHOP = {"n_users": 500, "n_items": 150, "days": 70, "seed": 7}  # ends 2026-10-01 00:00 UTC
HORIZON = 14  # propensity; a 70-day log leaves several training snapshots
AS_OF = parse_as_of("2026-09-10")


@pytest.fixture(scope="module")
def shop() -> Shop:
    return generate_shop(**SHOP)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, shop: Shop) -> Settings:
    root = tmp_path_factory.mktemp("score")
    return ingested_home(root, shop)


@pytest.fixture(scope="module")
def models(settings: Settings, model_store: Path) -> dict[str, TrainResult]:
    return {"propensity": train(settings, task="propensity", horizon_days=HORIZON),
            "conversion": train(settings, task="conversion")}


@pytest.fixture(scope="module")
def by_date(settings: Settings, models: dict, tmp_path_factory: pytest.TempPathFactory
            ) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("out") / "propensity.parquet"
    result = score(settings, "propensity", out, as_of=AS_OF)
    assert result.path == out and result.chunks == 1 and result.time_column == "as_of"
    return pq.read_table(out)


def test_every_user_active_by_the_date_is_scored(by_date, settings: Settings, shop: Shop,
                                                 models: dict) -> None:
    assert by_date.schema.equals(output_schema("propensity", "as_of"))
    frame = by_date.to_pandas()
    expected = sorted(shop.events.loc[shop.events["event_timestamp"] <= AS_OF, "user_id"].unique())
    assert frame["user_id"].tolist() == expected
    assert list(active_users(raw_events(settings), AS_OF)) == expected
    assert (frame["as_of"] == AS_OF).all()
    assert (frame["model_tag"] == models["propensity"].tag).all()
    assert frame["score"].between(0, 1, inclusive="neither").all()
    assert frame["score"].nunique() > 10


def test_reasons_are_the_top_three_contributions(by_date, models: dict) -> None:
    _, meta = load_model(models["propensity"].tag, task="propensity")
    for reasons in by_date.column("reasons").to_pylist()[:200]:
        assert len(reasons) == 3
        assert {r["feature"] for r in reasons} <= set(meta["features"])
        sizes = [abs(r["contribution"]) for r in reasons]
        assert sizes == sorted(sizes, reverse=True)
        assert set(reasons[0]) == {"feature", "value", "contribution", "category"}
        assert all(r["category"] is None for r in reasons)  # a v1 model has no categories


def test_chunks_give_the_same_file_and_report_progress(by_date, settings: Settings,
                                                       tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    result = score(settings, "propensity", tmp_path / "chunked.parquet", as_of=AS_OF,
                   chunk_rows=97, on_progress=lambda done, total: seen.append((done, total)))
    n = by_date.num_rows
    assert result.rows == n and result.chunks == -(-n // 97)
    assert pq.ParquetFile(result.path).metadata.num_row_groups == result.chunks
    assert pq.read_table(result.path).equals(by_date)
    assert seen[0] == (0, n) and seen[-1] == (n, n)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_backtest_reproduces_the_training_frame_predictions(settings: Settings, models: dict,
                                                            tmp_path: Path) -> None:
    """Candidates with their own event_timestamp get the features of that moment: the scores of
    the training frame's rows are the model's predictions on the training frame."""
    booster, meta = load_model(models["propensity"].tag, task="propensity")
    frame = labelled_frame(settings, "propensity", horizon_days=HORIZON).frame.frame
    frame = frame.sample(n=600, random_state=0)
    candidates = frame[["user_id", "event_timestamp"]].assign(
        event_timestamp=frame["event_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    candidates.to_csv(tmp_path / "candidates.csv", index=False)
    result = score(settings, "propensity", tmp_path / "backtest.parquet",
                   candidates=tmp_path / "candidates.csv", chunk_rows=250)
    scored = pd.read_parquet(result.path)
    assert result.time_column == "event_timestamp" and result.chunks == 3
    assert scored["user_id"].tolist() == frame["user_id"].tolist()
    assert (scored["event_timestamp"] == frame["event_timestamp"].to_numpy()).all()
    np.testing.assert_allclose(scored["score"], predict(booster, frame, meta["features"],
                                       calibration=meta["calibration"]),
                               rtol=1e-6)


def test_conversion_scores_candidate_pairs_point_in_time(settings: Settings, models: dict,
                                                         tmp_path: Path) -> None:
    booster, meta = load_model(models["conversion"].tag, task="conversion")
    frame = labelled_frame(settings, "conversion").frame.frame.sample(n=400, random_state=1)
    candidates = frame[["user_id", "item_id", "event_timestamp"]]
    cold = pd.DataFrame({"user_id": ["U-nobody", frame["user_id"].iloc[0]],
                         "item_id": [frame["item_id"].iloc[0], "I-unknown"],
                         "event_timestamp": frame["event_timestamp"].iloc[:2].to_numpy()})
    twice = pd.concat([candidates, candidates.iloc[:5], cold], ignore_index=True)
    twice.to_parquet(tmp_path / "pairs.parquet", index=False)
    result = score(settings, "conversion", tmp_path / "scores.parquet",
                   candidates=tmp_path / "pairs.parquet")
    scored = pd.read_parquet(result.path)
    assert list(scored.columns) == ["user_id", "item_id", "event_timestamp", "score",
                                    "model_tag", "reasons"]
    assert len(scored) == len(twice)
    np.testing.assert_allclose(scored["score"].iloc[:400],
                               predict(booster, frame, meta["features"],
                                       calibration=meta["calibration"]), rtol=1e-6)
    np.testing.assert_array_equal(scored["score"].iloc[400:405], scored["score"].iloc[:5])
    assert scored["score"].iloc[-2:].between(0, 1).all()  # cold user, unknown item: scored


def test_candidates_without_time_are_scored_as_of_the_date(settings: Settings, models: dict,
                                                           by_date, tmp_path: Path) -> None:
    users = by_date.column("user_id").to_pylist()[:50]
    pd.DataFrame({"user_id": users, "item_id": "ignored"}).to_csv(tmp_path / "u.csv", index=False)
    result = score(settings, "propensity", tmp_path / "u.parquet", as_of=AS_OF,
                   candidates=tmp_path / "u.csv")
    assert pq.read_table(result.path).equals(by_date.slice(0, 50))


def test_clear_errors_and_no_partial_file(settings: Settings, models: dict,
                                          tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    with pytest.raises(ScoreError, match="--candidates"):
        score(settings, "conversion", out, as_of=AS_OF)
    pd.DataFrame({"user_id": ["U0000001"]}).to_csv(tmp_path / "no_time.csv", index=False)
    with pytest.raises(ScoreError, match="--as-of"):
        score(settings, "propensity", out, candidates=tmp_path / "no_time.csv")
    with pytest.raises(ScoreError, match=r"need column\(s\) \['item_id'\]"):
        score(settings, "conversion", out, candidates=tmp_path / "no_time.csv", as_of=AS_OF)
    late = pd.DataFrame({"user_id": ["U0000001"] * 2,
                         "event_timestamp": ["2026-09-01", "2026-09-20T10:00:00+02:00"]})
    late.to_csv(tmp_path / "late.csv", index=False)
    with pytest.raises(ScoreError, match="later than --as-of"):
        score(settings, "propensity", out, candidates=tmp_path / "late.csv", as_of=AS_OF)
    with pytest.raises(ScoreError, match="no user has any event"):
        score(settings, "propensity", out, as_of=parse_as_of("2020-01-01"))
    with pytest.raises(ModelMetadataError, match="trained for task 'conversion'"):
        score(settings, "propensity", out, as_of=AS_OF, model_tag=models["conversion"].tag)
    assert list(tmp_path.glob("*.parquet")) == [] and list(tmp_path.glob(".*partial")) == []


def test_cli(settings: Settings, models: dict, tmp_path: Path) -> None:
    env = {"PERSONA_HOME": str(settings.home), "PERSONA_REPORTS_DIR": str(settings.reports_dir)}
    version = models["propensity"].tag.split(":")[1]
    ok = CliRunner().invoke(app, ["score", "--task", "propensity", "--as-of", "2026-09-10",
                                  "--model", version, "--out", str(tmp_path / "s.parquet")],
                            env=env)
    assert ok.exit_code == 0, ok.output
    assert models["propensity"].tag in ok.output
    assert pq.read_table(tmp_path / "s.parquet").num_rows > 100
    bad = CliRunner().invoke(app, ["score", "--task", "conversion", "--as-of", "2026-09-10",
                                   "--out", str(tmp_path / "c.parquet")], env=env)
    assert bad.exit_code == 1 and "--candidates" in bad.output
    assert "Traceback" not in bad.output


def test_cli_refuses_another_homes_model(settings: Settings, models: dict,
                                         tmp_path: Path) -> None:
    """Homes share the model store: on a home no model was trained on, `persona score` names
    both homes in one line instead of scoring with another shop's model; pinned, it warns."""
    other = tmp_path / "other-shop"
    args = ["score", "--task", "propensity", "--as-of", "2026-09-10", "--home", str(other),
            "--out", str(tmp_path / "s.parquet")]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    line = " ".join(refused.output.split())
    assert f"no propensity model was trained on home {other}" in line
    assert f"{models['propensity'].tag}, was trained on {settings.home}" in line
    assert not (tmp_path / "s.parquet").exists()
