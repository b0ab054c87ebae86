"""The training report: a Markdown page with the training data's window and class balance, the
hyper-parameters, the metrics beside the baselines, a gains table by decile, and five plots.

Each run writes its own directory under the reports directory and then points `latest` at it
with one atomic rename, so `latest` is always a complete report.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display; selected before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402

from training.evaluate import GAIN, LIFT, MODEL, Evaluation, K, gains_by_decile  # noqa: E402
from training.model import ModelParams, booster_params  # noqa: E402

PLOTS = {"roc": "roc.png", "pr": "pr.png", "calibration": "calibration.png",
         "scores": "score_histogram.png", "importance": "importance.png"}
REPORT = "report.md"
LATEST = "latest"
TOP_FEATURES = 20
SCORE_BINS = 30
METRICS = ("roc_auc", "pr_auc", LIFT, f"ndcg@{K}", "log_loss", "ece")


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(ev: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in ev.scored.items():
        fpr, tpr, _ = roc_curve(ev.y, s.scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {ev.metrics[name]['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, validation")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_pr(ev: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, s in ev.scored.items():
        precision, recall, _ = precision_recall_curve(ev.y, s.scores)
        ax.plot(recall, precision, label=f"{name} (AP {ev.metrics[name]['pr_auc']:.3f})")
    ax.axhline(ev.y.mean(), color="grey", linestyle=":", linewidth=1, label="positive rate")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, validation")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def plot_calibration(ev: Evaluation, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    top = 0.0
    for name, m in ev.metrics.items():
        predicted = [b["predicted"] for b in m["calibration"]]
        observed = [b["observed"] for b in m["calibration"]]
        top = max(top, *predicted, *observed)
        ax.plot(predicted, observed, marker="o", markersize=3,
                label=f"{name} (ECE {m['ece']:.4f})")
    ax.plot([0, top], [0, top], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="mean predicted probability (equal-count bins)",
           ylabel="observed positive rate", title="Calibration, validation")
    ax.legend(loc="upper left", fontsize=8)
    _save(fig, path)


def plot_scores(ev: Evaluation, path: Path) -> None:
    """The model's validation scores of positives and of negatives on the same bins, each as a
    density: with a few percent positives, counts would hide the positives' shape."""
    scores = ev.scored[MODEL].scores
    bins = np.histogram_bin_edges(scores, bins=SCORE_BINS)
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, name, color in ((0, "negatives", "#4c72b0"), (1, "positives", "#dd8452")):
        part = scores[ev.y == label]
        if len(part):
            ax.hist(part, bins=bins, density=True, histtype="stepfilled", alpha=0.45,
                    color=color, edgecolor=color, label=f"{name} ({len(part)} rows)")
    ax.set(xlabel="model score (calibrated probability)", ylabel="density",
           title="Model scores by class, validation")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def importance(booster: xgb.Booster) -> list[tuple[str, float]]:
    """Total gain per feature, largest first; features never split on are left out."""
    gain = booster.get_score(importance_type="total_gain")
    return sorted(gain.items(), key=lambda kv: -kv[1])


def plot_importance(booster: xgb.Booster, path: Path) -> None:
    top = importance(booster)[:TOP_FEATURES][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(top) + 1.2))
    ax.barh([name for name, _ in top], [gain for _, gain in top])
    ax.set(xlabel="total gain", title=f"Feature importance (top {len(top)} by gain)")
    ax.tick_params(axis="y", labelsize=7)
    _save(fig, path)


def write_plots(ev: Evaluation, booster: xgb.Booster, directory: Path) -> dict[str, Path]:
    """The five PNGs in `directory`; returns their paths by kind."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {kind: directory / name for kind, name in PLOTS.items()}
    plot_roc(ev, paths["roc"])
    plot_pr(ev, paths["pr"])
    plot_calibration(ev, paths["calibration"])
    plot_scores(ev, paths["scores"])
    plot_importance(booster, paths["importance"])
    return paths


def _fmt(value: object) -> str:
    if isinstance(value, dict):  # a gain with its interval (training.evaluate.auc_gains)
        return f"{value['gain']:+.4f} [{value['low']:+.4f}, {value['high']:+.4f}]"
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def tuning_section(tuning: dict | None) -> list[str]:
    """The parameter search, when one ran: each candidate's change to the defaults and its log
    loss on the tuning period (the end of the training period; validation was never seen)."""
    if not tuning:
        return []
    window = tuning["tuned_on"]
    lines = ["## Tuning", "",
             f"Candidates fitted on the training rows up to {window['fit_until']} and scored on "
             f"{window['tuning_from']} .. {window['tuning_until']}; the chosen one was refit on "
             "the whole training period.", "",
             "| candidate | change to the defaults | tuning log loss | trees |",
             "|---|---|---|---|"]
    for i, c in enumerate(tuning["candidates"]):
        change = ", ".join(f"{k}={v}" for k, v in c["change"].items()) or "defaults"
        mark = " (chosen)" if i == tuning["chosen"] else ""
        lines.append(f"| {i + 1}{mark} | {change} | {c['log_loss']:.4f} | {c['trees']} |")
    return [*lines, ""]


def data_section(ev: Evaluation, info: dict) -> list[str]:
    """The training window and class balance: each set's bounds, rows and positives."""
    window, n_train, positives = info["training_window"], info["n_train"], info["train_positives"]
    train_rate = positives / n_train if n_train else float("nan")
    return [
        "## Training data", "",
        "| set | from | until | rows | positives | positive rate |",
        "|---|---|---|---:|---:|---:|",
        f"| train | {window['train_from']} | {window['train_until']} | {n_train} | "
        f"{positives} | {_fmt(train_rate)} |",
        f"| validation | {window['valid_from']} | {window['valid_until']} | {len(ev.y)} | "
        f"{int(ev.y.sum())} | {_fmt(float(ev.y.mean()) if len(ev.y) else float('nan'))} |",
        "",
        f"The latest {info['n_holdout']} training rows were the early-stopping holdout; "
        f"{info['best_iteration'] + 1} trees kept. Gap between train and validation: "
        f"{info['gap_days']:.2f} days.",
        *(["", *(f"- {note}" for note in info["notes"])] if info.get("notes") else []),
        "",
    ]


def params_section(info: dict) -> list[str]:
    """The booster's hyper-parameters as fitted (after the search, when one ran)."""
    params = ModelParams(**info["params"])
    config = booster_params(params)
    rows = [f"| {name} | {'auto (one per usable CPU)' if value is None else value} |"
            for name, value in info["params"].items()]
    return ["## Hyper-parameters", "",
            f"`training.model.ModelParams`; objective `{config['objective']}`, "
            f"`{config['tree_method']}` trees, early stopping on the holdout's log loss.", "",
            "| parameter | value |", "|---|---|", *rows, ""]


def gains_table(ev: Evaluation) -> list[str]:
    """Cumulative gains and lift of the model's scores by validation decile, top first."""
    table = gains_by_decile(ev.y, ev.scored[MODEL].scores)
    lines = ["## Gains by decile (model, validation)", ""]
    if not table:
        return [*lines, "No positive rows in validation: no gains table.", ""]
    lines += ["Deciles of the model's score, top 10% first (ties in the same fixed random "
              f"order as {LIFT}); lift is a positive rate over the overall one.", "",
              "| decile | rows | positives | cumulative share of positives | lift "
              "| cumulative lift |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {d['decile']} | {d['rows']} | {d['positives']} | "
              f"{d['cumulative_share']:.1%} | {d['lift']:.2f} | {d['cumulative_lift']:.2f} |"
              for d in table]
    return [*lines, ""]


def metrics_table(ev: Evaluation) -> list[str]:
    """Model and baselines side by side, one row per metric the evaluation computed."""
    names = list(ev.metrics)
    keys = [k for k in METRICS if k in ev.metrics[names[0]]]
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(ev.metrics[n][key]) for n in names) + " |")
    if any(GAIN in m for m in ev.metrics.values()):
        lines.append(f"| {GAIN} (90% interval) | " + " | ".join(
            _fmt(ev.metrics[n][GAIN]) if GAIN in ev.metrics[n] else "-" for n in names) + " |")
    return lines


def render(ev: Evaluation, booster: xgb.Booster, info: dict) -> str:
    """The Markdown page. `info` carries the task's title, what a positive row is and its
    baselines, the tag, window, data hash, sizes, training positives, parameters and fit
    details."""
    ndcg = (f" and NDCG@{K} (mean over validation users with a positive; ties in a fixed "
            "random order)") if f"ndcg@{K}" in next(iter(ev.metrics.values())) else ""
    known = f"; only what was known at {info['until']} (--until)" if info.get("until") else ""
    lines = [
        f"# {info['title']} {info['tag']}",
        "",
        f"Task: {info['positive'].format(h=info['horizon_days'])}. Feature service "
        f"`{info['feature_service']}`, {len(info['features'])} features; offline data "
        f"`{info['data_hash'][:12]}`{known}.",
        "",
        *data_section(ev, info),
        *params_section(info),
        "## Validation metrics",
        "",
        *metrics_table(ev),
        "",
        f"Baselines: {info['baselines_text']} ROC AUC, PR AUC (average precision), "
        f"{LIFT} (positive rate of the top-scored 10% over the overall rate; ties in a fixed "
        f"random order){ndcg} use raw scores. Log loss and ECE (10 equal-count bins) use "
        "probabilities: the model's, calibrated by the map stored with it "
        f"({info.get('calibration', 'none')}, fitted on the early-stopping holdout at the end "
        "of the training period; `model_uncalibrated` is the booster's own output), and for "
        "each baseline an isotonic map from its score to the positive rate, fitted on the "
        f"training rows. `{GAIN}` is the model's ROC AUC minus the column's, with a 90% "
        "interval from a paired bootstrap over validation users: an interval across zero "
        "is a tie within the validation set's noise.",
        "",
        *gains_table(ev),
        *tuning_section(info.get("tuning")),
        "## Plots",
        "",
        *(f"![{kind}]({name})" for kind, name in PLOTS.items()),
        "",
        "## Top features by gain",
        "",
        "| feature | total gain |",
        "|---|---|",
        *(f"| {name} | {gain:.1f} |" for name, gain in importance(booster)[:TOP_FEATURES]),
        "",
    ]
    return "\n".join(lines)


def latest_name(task: str) -> str:
    """The link to a task's latest report: `latest` for conversion (as before there were two
    tasks), `latest-<task>` for the others."""
    return LATEST if task == "conversion" else f"{LATEST}-{task}"


def bar_chart(groups: dict[str, dict[str, float]], ylabel: str) -> Figure:
    """Grouped bars: one group per outer key, one bar per inner key (the same in each)."""
    names = list(next(iter(groups.values()), {}))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(groups), 1)
    for n, (group, values) in enumerate(groups.items()):
        ax.bar(np.arange(len(names)) + (n - (len(groups) - 1) / 2) * width,
               [values[name] for name in names], width, label=group)
    ax.set_xticks(np.arange(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.legend()
    return fig


def publish_page(reports_dir: Path, tag: str, task: str, markdown: str,
                 figures: dict[str, Figure] | None = None) -> Path:
    """A report of `markdown` and `figures` (file name -> figure) under the version of `tag`,
    made the task's latest (`latest_name`)."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    staging = reports_dir / f".staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    for name, fig in (figures or {}).items():
        _save(fig, staging / name)
    (staging / REPORT).write_text(markdown)
    return publish(staging, reports_dir, tag.split(":", 1)[1], latest_name(task))


def publish(staging: Path, reports_dir: Path, name: str, latest_link: str = LATEST) -> Path:
    """Move a finished report directory to `reports_dir/name` and point `latest_link` at it."""
    target = reports_dir / name
    if target.exists():
        shutil.rmtree(target)
    os.rename(staging, target)
    latest = reports_dir / latest_link
    if latest.is_dir() and not latest.is_symlink():  # a copy left by hand: replace it
        shutil.rmtree(latest)
    link = reports_dir / f".{latest_link}-{name}"
    link.unlink(missing_ok=True)
    link.symlink_to(name, target_is_directory=True)
    os.replace(link, latest)
    return target / REPORT
