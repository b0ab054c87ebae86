"""The parameter search sees the training period only: candidates are fitted before the tuning
period and scored on it; the winner is the lowest log loss there."""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.model import ModelParams
from training.report import tuning_section
from training.tuning import tune


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(2 * x[:, 0] - x[:, 1] * x[:, 2])))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2],
                         "label": (rng.uniform(size=n) < p).astype(int),
                         "event_timestamp": pd.date_range("2026-01-01", periods=n, freq="min",
                                                          tz="UTC")})


def test_the_search_fits_before_the_tuning_period_and_keeps_its_best() -> None:
    train = _frame(3000, 0)
    base = ModelParams(num_boost_round=200, early_stopping_rounds=10, nthread=1)
    candidates = ({}, {"max_depth": 1, "eta": 0.01}, {"max_depth": 3})
    chosen, record = tune(train, ["a", "b", "c"], base, candidates=candidates)
    losses = [c["log_loss"] for c in record["candidates"]]
    assert record["chosen"] == int(np.argmin(losses))
    assert chosen.max_depth == {**base.__dict__, **candidates[record["chosen"]]}["max_depth"]
    assert record["chosen"] != 1  # a stump at a tiny learning rate cannot fit the interaction
    window = {k: pd.Timestamp(v) for k, v in record["tuned_on"].items()}
    assert window["fit_until"] < window["tuning_from"] <= window["tuning_until"]
    assert window["tuning_until"] == train["event_timestamp"].max()  # nothing after training
    text = "\n".join(tuning_section(record))
    assert "(chosen)" in text and "max_depth=3" in text
