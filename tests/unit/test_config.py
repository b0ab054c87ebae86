"""The one configuration path: settings read every variable in one place, the Feast
configuration is built once (the committed default YAML and each home's YAML are renderings of
it), and importing the definitions has no side effects."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from persona.core.settings import FEATURE_REPO, PROJECT_ROOT, VARIABLES, Settings
from persona.featurestore.config import config_values, store_yaml

PRODUCT = ("persona", "feature_repo", "expectations", "training", "serving")


def test_the_committed_feature_store_yaml_is_the_default_home_rendering() -> None:
    default = Settings.from_env(home=PROJECT_ROOT / "data", env={})
    committed = yaml.safe_load((FEATURE_REPO / "feature_store.yaml").read_text())
    assert committed == config_values(default, relative_to=FEATURE_REPO)


def test_a_home_yaml_names_that_home_and_keeps_secrets_out(tmp_path: Path) -> None:
    settings = Settings.from_env(home=tmp_path / "h", online="redis://:s3cret@127.0.0.1:6390/2",
                                 env={})
    text = store_yaml(settings)
    values = yaml.safe_load(text)
    assert "s3cret" not in text
    assert values["online_store"] == {"type": "redis",
                                      "connection_string": "${FEAST_REDIS_CONNECTION}"}
    assert values["registry"] == str(tmp_path / "h" / "registry.db")
    assert values["offline_store"]["root"] == str(tmp_path / "h" / "offline" / "current")


def test_settings_read_each_variable_and_hand_them_to_a_child(tmp_path: Path) -> None:
    env = {"PERSONA_HOME": str(tmp_path / "h"), "PERSONA_REPORTS_DIR": str(tmp_path / "r"),
           "PERSONA_REDIS_URL": "redis://127.0.0.1:6390", "PERSONA_SNAPSHOT_INTERVAL": "6h",
           "PERSONA_PRIOR_STRENGTH": "5", "PERSONA_MODEL_TAG": "v1", "PERSONA_PROPENSITY_TAG": "p1",
           "PERSONA_API_KEYS": "a,b", "PERSONA_ITEM_CACHE_SIZE": "7",
           "PERSONA_ITEM_CACHE_SECONDS": "2.5", "BENTOML_HOME": str(tmp_path / "b")}
    settings = Settings.from_env(env=env)
    assert settings == Settings(tmp_path / "h", tmp_path / "r", "redis://127.0.0.1:6390",
                                timedelta(hours=6), 5.0, "v1", "p1", ("a", "b"), 7, 2.5,
                                tmp_path / "b")
    child = settings.environment(base={"PATH": "/bin", "PERSONA_MODEL_TAG": "stale"})
    assert Settings.from_env(env=child) == settings
    assert child["OMP_WAIT_POLICY"] == "PASSIVE" and child["PATH"] == "/bin"
    assert set(env) <= set(VARIABLES)
    unpinned = Settings.from_env(env={**env, "PERSONA_MODEL_TAG": ""}).environment(base=env)
    assert "PERSONA_MODEL_TAG" not in unpinned


@pytest.mark.parametrize("text", ["0", "-3", "nan", "inf", "lots"])
def test_a_prior_strength_that_is_not_a_positive_number_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="PERSONA_PRIOR_STRENGTH"):
        Settings.from_env(env={"PERSONA_PRIOR_STRENGTH": text})


_ELSEWHERE = f"/nonexistent/elsewhere-{uuid.uuid4().hex}"  # a home named only in the environment
_PROBE = ("import json, os\n"
          "from feast import FeatureView\n"  # Feast's own import sets variables of its own
          "before = dict(os.environ)\n"
          "from feature_repo import definitions as d\n"
          "print(json.dumps({'same': dict(os.environ) == before, 'paths': "
          "[o.batch_source.path for o in d.OBJECTS if isinstance(o, FeatureView)]}))\n")
# A fresh interpreter imports the definitions. Started when pytest imports this module, so that
# its imports (Feast's alone are about 10 s of CPU) run beside the other unit tests instead of
# after them; the test waits for it.
_DEFINITIONS_IMPORT = subprocess.Popen(
    [sys.executable, "-c", _PROBE], cwd=PROJECT_ROOT,
    env={"PATH": "/usr/bin:/bin", "PERSONA_HOME": _ELSEWHERE},
    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_importing_the_definitions_reads_no_environment_and_names_no_home() -> None:
    out, err = _DEFINITIONS_IMPORT.communicate(timeout=600)
    assert _DEFINITIONS_IMPORT.returncode == 0, err
    found = json.loads(out.strip().splitlines()[-1])
    assert found["same"]
    assert found["paths"] and all(not Path(p).is_absolute() for p in found["paths"])
    assert not any("elsewhere" in p for p in found["paths"])


def _environment_uses(path: Path) -> list[int]:
    """Lines of `path` that touch os.environ, os.getenv or os.putenv."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "os" and node.attr in ("environ", "getenv", "putenv")):
            lines.append(node.lineno)
    return lines


def test_only_the_settings_module_touches_the_environment() -> None:
    found = {}
    for package in PRODUCT:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            lines = _environment_uses(path)
            if lines and path != PROJECT_ROOT / "persona" / "core" / "settings.py":
                found[str(path.relative_to(PROJECT_ROOT))] = lines
    assert not found, found


def test_the_readme_lists_every_variable() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    listed = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert listed == set(VARIABLES)
