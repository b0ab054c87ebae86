"""`persona demo`: the main job end to end on embedded defaults (or Redis when configured).

Generate a small shop, ingest and validate it, train the conversion model, the candidate
generators and the recommendation ranker, write batch lists, materialize, start the BentoML
service, send real HTTP requests (/rank, /recommend) and print ranked items and recommendations
beside the models' metrics and baselines.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pandas as pd
from rich.table import Table

from persona.core.catalog import CONVERSION_V2_SERVICE
from persona.core.dates import start_of_today
from persona.core.settings import Settings
from persona.jobs.ingest import ingest
from persona.jobs.materialize import materialize
from persona.jobs.progress import console, steps
from persona.synthetic_shop import generate_shop, write_shop

SHOP = {"n_users": 3000, "n_items": 1000, "days": 60, "seed": 42}


def _candidates(events: pd.DataFrame, user_id: str, n: int = 20) -> list[str]:
    """Items the user looked at lately plus the shop's most viewed ones: a product-page
    shortlist."""
    mine = events[events["user_id"] == user_id].sort_values("event_timestamp")
    seen = mine["item_id"].tolist()[-n // 2:]
    popular = events["item_id"].value_counts().index.tolist()
    return list(dict.fromkeys(seen + popular))[:n]


def _metrics_table(metrics: dict) -> Table:
    table = Table(title="Validation metrics: model vs baselines")
    names = sorted({key for values in metrics.values() if isinstance(values, dict)
                    for key, value in values.items() if isinstance(value, int | float)})
    table.add_column("scorer")
    for name in names:
        table.add_column(name, justify="right")
    for scorer, values in metrics.items():
        if isinstance(values, dict):
            table.add_row(scorer, *[_fmt(values.get(name)) for name in names])
    return table


def _lists_table(metrics: dict) -> Table:
    """The ranker's test week beside the baselines (training.recommend_training)."""
    table = Table(title=f"Recommendations on the test week ({metrics['users']} users)")
    shown = ("recall@10", "ndcg@10", "hit_rate@10", "coverage@10")
    table.add_column("method")
    for name in shown:
        table.add_column(name, justify="right")
    for method, values in metrics.items():
        if method != "users":
            table.add_row(method, *(f"{values[name]:.3f}" for name in shown))
    return table


def _reason(reason: dict) -> str:
    """'item_popularity__views_30d = 41 (+0.35)': the feature, its value, its push on the score."""
    value = "missing" if reason["value"] is None else f"{reason['value']:g}"
    return f"{reason['feature']} = {value} ({reason['contribution']:+.2f})"


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))


def run(settings: Settings, port: int = 3000, shop_size: dict | None = None) -> None:
    """Every stage for real; raises on the first failure. `shop_size` overrides SHOP's
    n_users, n_items and days."""
    from persona.jobs.recommend import recommend
    from serving.run import start_server
    from training.candidate_training import train_retrieval
    from training.pipeline import train
    from training.recommend_training import train_recommend

    raw_dir = settings.home / "raw"
    size = {**SHOP, **(shop_size or {})}
    with steps("demo") as on_step:
        on_step("generating a shop of {n_users} users x {n_items} items x {days} days"
                .format(**size))
        shop = generate_shop(**size, end=start_of_today().to_pydatetime())  # current features
        write_shop(shop, raw_dir)
        on_step("ingesting and validating")
        ingest(settings, raw_dir, lambda s: on_step(f"ingest: {s}"))
        on_step("training")
        # v2: lifetime priors, exact recency, the user x item history and categories
        result = train(settings, features=CONVERSION_V2_SERVICE,
                       on_step=lambda s: on_step(f"train: {s}"))
        on_step("training the candidate generators")
        train_retrieval(settings)
        on_step("training the recommendation ranker")
        ranker = train_recommend(settings, on_step=lambda s: on_step(f"recommend: {s}"))
        users = shop.events["user_id"].value_counts().index[:3].tolist()
        on_step("writing batch lists for every active user")
        lists = recommend(settings, shop.events["event_timestamp"].max(), 10,
                          settings.home / "recommendations.parquet")
        on_step("materializing into the online store")
        materialize(settings)
        on_step("starting the BentoML service")
        responses, recommended = [], []
        with start_server(settings, port=port, model_tag=result.tag):
            on_step("sending requests")
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                for user in users:
                    body = {"user_id": user, "item_ids": _candidates(shop.events, user),
                            "top_k": 5}
                    reply = client.post("/rank", json=body)
                    reply.raise_for_status()
                    responses.append(reply.json())
                    reply = client.post("/recommend", json={"user_id": user, "k": 5})
                    reply.raise_for_status()
                    recommended.append(reply.json())
    for reply in responses:
        table = Table(title=f"Top items for {reply['user_id']} (model {reply['model_tag']})")
        table.add_column("rank", justify="right")
        table.add_column("item")
        table.add_column("purchase probability", justify="right")
        table.add_column("strongest reason")
        for rank, item in enumerate(reply["items"], start=1):
            table.add_row(str(rank), item["item_id"], f"{item['probability']:.4f}",
                          _reason(item["reasons"][0]))
        console.print(table)
    table = Table(title="Recommendations from the whole catalogue (POST /recommend)")
    numbers = ("rank", "cart or purchase probability")
    for column in ("user", "rank", "item", "cart or purchase probability", "why"):
        table.add_column(column, justify="right" if column in numbers else "left")
    for reply in recommended:
        for rank, item in enumerate(reply["items"], start=1):
            table.add_row(reply["user_id"], str(rank), item["item_id"], f"{item['score']:.4f}",
                          "; ".join(item["reasons"]))
    console.print(table)
    console.print(_metrics_table(result.metrics))
    console.print(_lists_table(ranker.metrics["all"]))
    console.print(f"batch lists: {lists.rows:,} rows for {lists.users:,} users -> {lists.path}")
    console.print(f"reports: {Path(result.report_path)}, {ranker.report_path}")
