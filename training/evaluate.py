"""Validation metrics of the model beside the baselines it has to beat.

Each task names its baselines: item popularity and user activity for conversion; an RFM rank
score and recency alone for propensity; and, when the frame holds the task's prior features
(the v2 services), a logistic regression and an XGBoost fitted on those features alone.
Ranking metrics (ROC AUC, PR AUC, top-decile lift and, for conversion, NDCG@10 per user) use
each scorer's raw scores. Probability metrics (log loss, calibration, ECE) need
probabilities: the rule baselines' scores are counts and smoothed rates, so each is mapped to
probabilities by isotonic regression fitted on the training rows (monotone, so its ranking is
unchanged); the fitted baselines give probabilities of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training import bgnbd
from training.model import DEFAULT_PARAMS, ModelParams, fit, predict

LABEL = "label"
MODEL = "model"
PRIORS_LOGISTIC = "priors_logistic"
PRIORS_XGBOOST = "priors_xgboost"
BG_NBD = "bg_nbd"
UNCALIBRATED = "model_uncalibrated"  # the booster's own output, before its calibration map
POPULARITY = "item_popularity"
ACTIVITY = "user_activity"
RFM = "rfm"
RECENCY = "recency"
TIME = "event_timestamp"
# Smoothed conversion rate of an item with no views or purchases in 30 days: (0 + 1) / (0 + 50).
POPULARITY_PRIOR = 1 / 50
EPS = 1e-6
N_BINS = 10
K = 10
LIFT = "top_decile_lift"
GAIN = "model_auc_gain"  # the model's ROC AUC minus the scorer's, with a bootstrap interval
BOOTSTRAP = 200
# Days since the last purchase of a user who never bought: ranked after every buyer.
NEVER = 1e6
Baseline = Callable[[pd.DataFrame], np.ndarray]
# Fitted on the training rows, then (train, valid) -> probabilities on the validation rows.
FittedBaseline = Callable[[pd.DataFrame, pd.DataFrame], np.ndarray]


@dataclass
class Scored:
    """One scorer on the validation rows: raw ranking scores and calibrated probabilities."""

    scores: np.ndarray
    probabilities: np.ndarray
    calibrated_by: str  # "model" (its calibrated output), "none" or "isotonic on train"


@dataclass
class Evaluation:
    """Everything the report needs: labels, users, each scorer's outputs and metrics."""

    y: np.ndarray
    users: np.ndarray
    scored: dict[str, Scored]
    metrics: dict[str, dict] = field(default_factory=dict)


def popularity_score(frame: pd.DataFrame) -> np.ndarray:
    """The item's smoothed 30-day conversion rate; an item without recent rows gets the prior."""
    return frame["item_popularity__conversion_rate_30d"].fillna(POPULARITY_PRIOR).to_numpy(float)


def activity_score(frame: pd.DataFrame) -> np.ndarray:
    """The user's purchases in 30 days, ties broken by views in 7 days: p + v / (v + 1) orders
    users by purchases first, then by recent views, without either dominating the other."""
    purchases = frame["user_activity__purchases_30d"].fillna(0).to_numpy(float)
    views = frame["user_activity__views_7d"].fillna(0).to_numpy(float)
    return purchases + views / (views + 1)


def _ranks_per_snapshot(frame: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """Percentile ranks in (0, 1] of `values` among the rows of the same snapshot time (ties
    share their average rank): RFM scores a user against the others of the same moment."""
    series = pd.Series(values, index=frame.index)
    return series.groupby(frame[TIME].to_numpy()).rank(pct=True, method="average").to_numpy(float)


def rfm_score(frame: pd.DataFrame) -> np.ndarray:
    """The classic recency / frequency / monetary segmentation as one score: the mean of three
    percentile ranks per snapshot. Recency is days since the last purchase; users who never
    bought come after every buyer, ordered by days since their last event. Frequency is
    purchases in 90 days, monetary value spend in 90 days; missing features (no recent
    snapshot) count as the worst value."""
    last_event = frame["user_activity__days_since_last_event"].fillna(NEVER).to_numpy(float)
    last_buy = frame["user_activity__days_since_last_purchase"].to_numpy(float)
    recency = np.where(np.isnan(last_buy), NEVER + last_event, last_buy)
    frequency = frame["user_activity__purchases_90d"].fillna(0).to_numpy(float)
    monetary = frame["user_activity__spend_90d"].fillna(0).to_numpy(float)
    ranks = [_ranks_per_snapshot(frame, v) for v in (-recency, frequency, monetary)]
    return np.mean(ranks, axis=0)


def recency_score(frame: pd.DataFrame) -> np.ndarray:
    """Minus the days since the user's last event of any kind: the more recently active, the
    higher. Users without a recent snapshot come last."""
    return -frame["user_activity__days_since_last_event"].fillna(NEVER).to_numpy(float)


CONVERSION_BASELINES: dict[str, Baseline] = {POPULARITY: popularity_score,
                                             ACTIVITY: activity_score}
PROPENSITY_BASELINES: dict[str, Baseline] = {RFM: rfm_score, RECENCY: recency_score}


def _prior_matrix(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    return frame[list(features)].to_numpy(dtype=np.float64, na_value=np.nan)


def logistic_on(features: Sequence[str]) -> FittedBaseline:
    """A logistic regression on `features` alone: missing values imputed by the training
    median with a missing-indicator column, standardized (scikit-learn's own pipeline)."""
    def score(train: pd.DataFrame, valid: pd.DataFrame) -> np.ndarray:
        model = make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                            keep_empty_features=True),
                              StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(_prior_matrix(train, features), train[LABEL].to_numpy(int))
        return model.predict_proba(_prior_matrix(valid, features))[:, 1]
    return score


def xgboost_on(features: Sequence[str], params: ModelParams = DEFAULT_PARAMS) -> FittedBaseline:
    """Persona's own booster (the task's parameters), early stopping and calibration included,
    on `features` alone: what the full feature set must beat to earn its complexity."""
    def score(train: pd.DataFrame, valid: pd.DataFrame) -> np.ndarray:
        fitted = fit(train, list(features), params)
        return predict(fitted.booster, valid, list(features), calibration=fitted.calibration)
    return score


def prior_baselines(features: Sequence[str], params: ModelParams = DEFAULT_PARAMS
                    ) -> dict[str, FittedBaseline]:
    """The two fitted baselines on a task's prior features."""
    return {PRIORS_LOGISTIC: logistic_on(features), PRIORS_XGBOOST: xgboost_on(features, params)}


def bgnbd_on(horizon_days: int) -> FittedBaseline:
    """The BG/NBD model (training.bgnbd) fitted on the customers of the latest training
    snapshot, each summarised as of that snapshot; its probability of a purchase within the
    horizon scores validation."""
    def score(train: pd.DataFrame, valid: pd.DataFrame) -> np.ndarray:
        latest = train[train[TIME] == train[TIME].max()]
        params = bgnbd.fit_bgnbd(bgnbd.customers(latest))
        return bgnbd.p_purchase(params, bgnbd.customers(valid), horizon_days / bgnbd.WEEK_DAYS)
    return score


def calibrate(train_scores: np.ndarray, train_y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Probabilities for `scores` from an isotonic map of score -> positive rate on train."""
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(train_scores, train_y)
    return iso.predict(scores)


def calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int = N_BINS
                     ) -> tuple[list[dict], float]:
    """Reliability bins of equal count (predictions of a few-percent task crowd the lowest
    equal-width bin) and the expected calibration error: the count-weighted mean gap between
    predicted and observed rates."""
    order = np.argsort(p, kind="stable")
    bins, ece = [], 0.0
    for part in np.array_split(order, min(n_bins, len(p))):
        if len(part) == 0:
            continue
        predicted, observed = float(p[part].mean()), float(y[part].mean())
        bins.append({"predicted": predicted, "observed": observed, "count": int(len(part)),
                     "low": float(p[part].min()), "high": float(p[part].max())})
        ece += len(part) / len(p) * abs(predicted - observed)
    return bins, float(ece)


def ndcg_at_k(users: np.ndarray, y: np.ndarray, scores: np.ndarray, k: int = K,
              seed: int = 0) -> float:
    """Mean NDCG@k over users with at least one positive, each user's rows ranked by score.

    Ties are broken by a fixed random order, so a scorer that cannot tell a user's rows apart
    (a per-user baseline) scores like a random ranking rather than like the input order.
    """
    tie = np.random.default_rng(seed).permutation(len(y))
    frame = pd.DataFrame({"user": users, "y": y, "s": -np.asarray(scores, float), "tie": tie})
    frame = frame[frame.groupby("user")["y"].transform("max") > 0]
    if frame.empty:
        return float("nan")
    frame = frame.sort_values(["user", "s", "tie"], kind="stable")
    rank = frame.groupby("user").cumcount().to_numpy() + 1
    gain = np.where(rank <= k, frame["y"].to_numpy() / np.log2(rank + 1), 0.0)
    dcg = pd.Series(gain, index=frame["user"].to_numpy()).groupby(level=0).sum()
    positives = frame.groupby("user")["y"].sum().clip(upper=k).astype(int)
    ideal_table = np.concatenate([[0.0], np.cumsum(1 / np.log2(np.arange(2, k + 2)))])
    ideal = positives.map(lambda n: ideal_table[n])
    return float((dcg / ideal.reindex(dcg.index)).mean())


def deciles(scores: np.ndarray, seed: int = 0) -> list[np.ndarray]:
    """Row indices of the ten score deciles, top-scored first: decile k holds ranks
    ceil((k-1)n/10) .. ceil(kn/10) - 1, so with fewer than ten rows some are empty. Ties are
    broken in a fixed random order, so a scorer with many ties is not credited with the input
    order. The one definition of a decile for the lift metric and the gains table."""
    n = len(scores)
    tie = np.random.default_rng(seed).permutation(n)
    order = np.lexsort((tie, -np.asarray(scores, float)))
    cuts = [-(-k * n // 10) for k in range(11)]  # exact integer ceil(k * n / 10)
    return [order[cuts[k]:cuts[k + 1]] for k in range(10)]


def top_decile_lift(y: np.ndarray, scores: np.ndarray, seed: int = 0) -> float:
    """The positive rate of the top-scored 10% of rows over the overall positive rate: how many
    times better than random a campaign aimed at the top decile does (ties as in `deciles`)."""
    if len(y) == 0 or y.sum() == 0:
        return float("nan")
    top = deciles(scores, seed)[0]
    return float(y[top].mean() / y.mean())


def gains_by_decile(y: np.ndarray, scores: np.ndarray, seed: int = 0) -> list[dict]:
    """Cumulative gains and lift per score decile, top first: rows, positives, the share of all
    positives captured down to it, the decile's lift and the cumulative lift (each a positive
    rate over the overall one). The first decile's lift is `top_decile_lift`. Empty deciles
    (fewer than ten rows) are left out; no positives, no table."""
    y = np.asarray(y)
    if len(y) == 0 or y.sum() == 0:
        return []
    rate, total = y.mean(), int(y.sum())
    out, rows, positives = [], 0, 0
    for k, part in enumerate(deciles(scores, seed), start=1):
        if len(part) == 0:
            continue
        rows, positives = rows + len(part), positives + int(y[part].sum())
        out.append({"decile": k, "rows": int(len(part)), "positives": int(y[part].sum()),
                    "cumulative_rows": rows, "cumulative_positives": positives,
                    "cumulative_share": positives / total,
                    "lift": float(y[part].mean() / rate),
                    "cumulative_lift": float(positives / rows / rate)})
    return out


def _weighted_auc(inverse: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """ROC AUC with row weights, ties counted half: `inverse` is each row's rank among the
    scorer's distinct scores (np.unique's inverse), so one resample costs two bincounts."""
    pos = np.bincount(inverse, w * y)
    neg = np.bincount(inverse, w * (1 - y))
    below = np.cumsum(neg) - neg
    return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def auc_gains(y: np.ndarray, users: np.ndarray, scores: dict[str, np.ndarray],
              reference: str = MODEL, n: int = BOOTSTRAP, seed: int = 0) -> dict[str, dict]:
    """For each scorer, `reference`'s ROC AUC minus its own, with a 90% interval from a paired
    bootstrap over users (a user's rows are drawn together, every scorer on the same draws):
    whether the model beats a baseline, or only ties it within the validation set's noise."""
    if len(np.unique(y)) < 2:
        return {}
    codes, distinct = pd.factorize(users)
    rng = np.random.default_rng(seed)
    names = list(scores)
    inverse = [np.unique(np.asarray(scores[name], float), return_inverse=True)[1]
               for name in names]
    y = y.astype(float)
    point = np.array([_weighted_auc(inv, y, np.ones(len(y))) for inv in inverse])
    draws = np.empty((n, len(names)))
    for i in range(n):  # one draw's row weights at a time, shared by every scorer
        w = np.bincount(rng.integers(0, len(distinct), len(distinct)),
                        minlength=len(distinct))[codes].astype(float)
        draws[i] = [_weighted_auc(inv, y, w) for inv in inverse]
    ref = names.index(reference)
    out = {}
    for j, name in enumerate(names):
        if j == ref:
            continue
        low, high = np.quantile(draws[:, ref] - draws[:, j], [0.05, 0.95])
        out[name] = {"gain": float(point[ref] - point[j]), "low": float(low), "high": float(high)}
    return out


def metrics(y: np.ndarray, users: np.ndarray, scored: Scored, ndcg: bool = True) -> dict:
    """ROC AUC, PR AUC, top-decile lift and (when rows are ranked per user) NDCG@10 on scores;
    log loss, ECE and bins on probabilities."""
    single_class = len(np.unique(y)) < 2
    p = np.clip(scored.probabilities, EPS, 1 - EPS)
    bins, ece = calibration_bins(y, p)
    out = {
        "roc_auc": float("nan") if single_class else float(roc_auc_score(y, scored.scores)),
        "pr_auc": (float("nan") if single_class
                   else float(average_precision_score(y, scored.scores))),
        LIFT: top_decile_lift(y, scored.scores),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": ece,
    }
    if ndcg:
        out[f"ndcg@{K}"] = ndcg_at_k(users, y, scored.scores)
    return {**out, "calibration": bins, "calibrated_by": scored.calibrated_by}


def evaluate(train: pd.DataFrame, valid: pd.DataFrame, model_probabilities: np.ndarray,
             baselines: dict[str, Baseline] | None = None, ndcg: bool = True,
             uncalibrated: np.ndarray | None = None,
             fitted: dict[str, FittedBaseline] | None = None) -> Evaluation:
    """Score validation with the model and each baseline (default: the conversion ones),
    calibrated on `train`, and compute every metric for each. `ndcg=False` for tasks with one
    row per user, where a per-user ranking metric says nothing. `uncalibrated`, the model's
    output before its calibration map, is reported beside it as `model_uncalibrated`; each
    `fitted` baseline is trained on `train` and scored on `valid` in the same run."""
    y = valid[LABEL].to_numpy(int)
    scored = {MODEL: Scored(np.asarray(model_probabilities, float),
                            np.asarray(model_probabilities, float), "model")}
    if uncalibrated is not None:
        scored[UNCALIBRATED] = Scored(np.asarray(uncalibrated, float),
                                      np.asarray(uncalibrated, float), "none")
    for name, score in (CONVERSION_BASELINES if baselines is None else baselines).items():
        raw = score(valid)
        probabilities = calibrate(score(train), train[LABEL].to_numpy(float), raw)
        scored[name] = Scored(raw, probabilities, "isotonic on train")
    for name, fitted_score in (fitted or {}).items():
        probabilities = np.asarray(fitted_score(train, valid), float)
        scored[name] = Scored(probabilities, probabilities, "its own fit on train")
    users = valid["user_id"].to_numpy()
    result = Evaluation(y=y, users=users, scored=scored)
    result.metrics = {name: metrics(y, users, s, ndcg) for name, s in scored.items()}
    gains = auc_gains(y, users, {name: s.scores for name, s in scored.items()
                                 if name != UNCALIBRATED})  # the same ranking, nearly
    for name, gain in gains.items():
        result.metrics[name][GAIN] = gain
    return result


def summary(evaluation: Evaluation) -> dict:
    """The metrics without per-bin detail, plus the validation set's size and positive rate:
    what the model's metadata keeps."""
    out: dict = {name: {k: v for k, v in m.items() if k != "calibration"}
                 for name, m in evaluation.metrics.items()}
    out["validation_rows"] = int(len(evaluation.y))
    out["validation_positive_rate"] = float(evaluation.y.mean()) if len(evaluation.y) else None
    out["validation_users_with_positive"] = int(pd.Series(evaluation.y).groupby(
        evaluation.users).max().sum())
    return out
