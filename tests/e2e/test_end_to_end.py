"""The whole path through the `persona` CLI, run from an unrelated directory: ingest, apply,
train, materialize, then real HTTP calls to the BentoML server, on SQLite and on Redis.

Every child process gets its environment explicitly (the CLI's and the server's, through
Settings); this process's environment is never changed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from worlds import model_store, start_server_retrying

from persona.core.settings import Settings
from persona.synthetic_shop import generate_shop, write_shop
from training.model_store import load_model

pytestmark = pytest.mark.integration

CLI_TIMEOUT = 900  # seconds for one CLI command on a busy 2-core machine


def persona(*args: str, cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "persona.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=CLI_TIMEOUT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[Path, dict[str, str], object]]:
    root = tmp_path_factory.mktemp("e2e")
    shop = generate_shop(800, 200, 45, seed=11)
    write_shop(shop, root / "raw", fmt="csv")
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"),
           "PERSONA_HOME": str(root / "home"), "PERSONA_REPORTS_DIR": str(root / "reports")}
    env.pop("PERSONA_REDIS_URL", None)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    persona("ingest", str(root / "raw"), cwd=elsewhere, env=env)
    persona("apply", cwd=elsewhere, env=env)
    out = persona("train", cwd=elsewhere, env=env)
    assert "roc_auc" in out
    yield root, env, shop


def _exercise(url: str, shop) -> None:
    users = shop.events["user_id"].value_counts().index[:3].tolist()
    items = shop.events["item_id"].value_counts().index[:30].tolist()
    with httpx.Client(base_url=url, timeout=60, trust_env=False) as client:
        for user in users:
            reply = client.post("/rank", json={"user_id": user, "item_ids": items})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            scores = [item["score"] for item in body["items"]]
            assert scores == sorted(scores, reverse=True) and len(scores) == len(items)
            assert not body["cold_user"] and len(set(scores)) > 1
        pairs = [{"user_id": users[0], "item_id": items[0]},
                 {"user_id": "nobody", "item_id": "nothing"}]
        reply = client.post("/predict", json={"pairs": pairs})
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        assert predictions[1]["cold_user"] and predictions[1]["cold_item"]
        assert all(0 <= p["probability"] <= 1 for p in predictions)
        reply = client.post("/rank", json={"user_id": users[0], "item_ids": []})
        assert reply.status_code // 100 == 4


@pytest.mark.parametrize("online", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_cli_pipeline_serves_rankings(online: str, trained, request: pytest.FixtureRequest) -> None:
    root, env, shop = trained
    env = dict(env)
    home = root / "home"
    full = []
    if online == "redis":  # the same home, switched to Redis: reload the whole TTL window
        # a Redis of the module's own: this shop's rows would overwrite the session world's
        env["PERSONA_REDIS_URL"] = request.getfixturevalue("own_redis_url")
        full = ["--full"]
    persona("materialize", *full, cwd=root / "elsewhere", env=env)
    with model_store(root / "bentoml"):  # the store the CLI trained into, in this process
        _, metadata = load_model(None)
    assert metadata["metrics"] and metadata["data_hash"] and metadata["validation"]
    settings = Settings(home=home, reports_dir=root / "reports",
                        online_url=env.get("PERSONA_REDIS_URL"), bentoml_home=root / "bentoml")
    with start_server_retrying(settings) as server:
        _exercise(server.url, shop)
