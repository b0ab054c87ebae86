"""Shared fixtures: a small generated shop and an isolated Persona home per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from persona.core.settings import Settings, library_defaults

library_defaults()  # before a test imports xgboost or GX

from persona.synthetic_shop import Shop, generate_shop, write_shop  # noqa: E402


@pytest.fixture(scope="session")
def small_shop() -> Shop:
    return generate_shop(600, 150, 40, seed=5)


@pytest.fixture
def raw_dir(tmp_path: Path, small_shop: Shop) -> Path:
    out = tmp_path / "raw"
    write_shop(small_shop, out)
    return out


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """An isolated home, reports dir and BentoML model store."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    monkeypatch.delenv("PERSONA_REDIS_URL", raising=False)
    return Settings(home=tmp_path / "home", reports_dir=tmp_path / "reports")


@pytest.fixture(scope="module")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """BENTOML_HOME in a temporary directory for a module. BentoML resolves its store once per
    process, so the store is also patched in case another test touched BentoML first."""
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    home = tmp_path_factory.mktemp("bentoml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENTOML_HOME", str(home))
        with BentoMLContainer.model_store.patch(ModelStore(home / "models")):
            yield home
