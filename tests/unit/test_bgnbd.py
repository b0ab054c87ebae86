"""The BG/NBD baseline against customers drawn from the BG/NBD process itself: the fit finds
the parameters' neighbourhood, beats the true parameters' likelihood (it is the maximum) and
predicts the next horizon's buyers at the rate they buy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training import bgnbd
from training.bgnbd import BGNBD, Customers

TRUE = BGNBD(r=0.8, alpha=6.0, a=0.9, b=3.0)
HORIZON_WEEKS = 13.0


def _simulate(n: int, seed: int) -> tuple[Customers, np.ndarray]:
    """Customers born at 0 with a purchase, observed until T (20 to 78 weeks): purchases follow
    a Poisson process of rate lambda, and after each repeat purchase the customer drops out with
    probability p. Also returns whether each buys in (T, T + horizon]."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(TRUE.r, 1.0 / TRUE.alpha, n)
    p = rng.beta(TRUE.a, TRUE.b, n)
    T = rng.uniform(20.0, 78.0, n)
    x, t_x, future = np.zeros(n), np.zeros(n), np.zeros(n, bool)
    t, alive = np.zeros(n), np.ones(n, bool)
    while alive.any():
        t = np.where(alive, t + rng.exponential(1.0 / lam), t)
        inside = alive & (t <= T)
        future |= alive & (t > T) & (t <= T + HORIZON_WEEKS)
        x += inside
        t_x = np.where(inside, t, t_x)
        alive &= (t <= T) & (rng.uniform(size=n) >= p)
    return Customers(x=x, t_x=t_x, T=T), future


def test_the_fit_is_the_maximum_and_near_the_truth() -> None:
    customers, _ = _simulate(8000, 0)
    fitted = bgnbd.fit_bgnbd(customers)
    assert (bgnbd.log_likelihood(fitted, customers).sum()
            >= bgnbd.log_likelihood(TRUE, customers).sum())
    # the mean purchase rate r / alpha and mean dropout a / (a + b) are the identifiable parts
    assert fitted.r / fitted.alpha == pytest.approx(TRUE.r / TRUE.alpha, rel=0.15)
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(TRUE.a / (TRUE.a + TRUE.b), rel=0.3)


def test_predicted_buyers_match_the_next_horizon() -> None:
    customers, future = _simulate(8000, 1)
    fitted = bgnbd.fit_bgnbd(customers)
    predicted = bgnbd.p_purchase(fitted, customers, HORIZON_WEEKS)
    assert ((0 <= predicted) & (predicted <= 1)).all()
    assert predicted.mean() == pytest.approx(future.mean(), abs=0.02)
    assert roc_auc_score(future, predicted) > 0.75
    order = np.argsort(predicted)
    low, high = order[: len(order) // 4], order[-len(order) // 4:]
    assert future[low].mean() < predicted[low].mean() + 0.03
    assert future[high].mean() > predicted[high].mean() - 0.05


def test_p_alive_falls_with_recency_and_is_one_without_repeats() -> None:
    c = Customers(x=np.array([0.0, 3.0, 3.0, 3.0]), t_x=np.array([0.0, 50.0, 30.0, 5.0]),
                  T=np.full(4, 52.0))
    alive = bgnbd.p_alive(TRUE, c)
    assert alive[0] == 1.0
    assert alive[1] > alive[2] > alive[3] > 0


def test_customers_from_the_feature_frame() -> None:
    frame = pd.DataFrame({
        bgnbd.PURCHASE_DAYS: [3, 0, np.nan],
        bgnbd.SINCE_FIRST: [70.0, np.nan, np.nan],
        bgnbd.SINCE_LATEST: [14.0, np.nan, np.nan],
        bgnbd.SINCE_SIGNUP: [100.0, 21.0, np.nan],
    })
    c = bgnbd.customers(frame)
    # a buyer is born at the first purchase; a non-buyer at sign-up, with no repeats
    np.testing.assert_allclose(c.x, [2.0, 0.0, 0.0])
    np.testing.assert_allclose(c.T, [10.0, 3.0, 0.0])
    np.testing.assert_allclose(c.t_x, [8.0, 0.0, 0.0])
    assert np.isfinite(bgnbd.p_purchase(TRUE, c, HORIZON_WEEKS)).all()


def test_no_customers_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one customer"):
        bgnbd.fit_bgnbd(Customers(np.array([]), np.array([]), np.array([])))
