"""Data Docs of the gates with the real GE: a home's site keeps every validation of every command
(each run here in its own process, as commands are), opens without the internet, and names the
data asset and the run on each page."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd
import pytest

from expectations.gate import run_gate
from expectations.raw import users_suite

pytestmark = pytest.mark.integration

NOW = pd.Timestamp("2024-06-01 12:00:00", tz="UTC")

# One gate in a fresh interpreter: argv = docs dir, "pass" or "fail"; prints the page it wrote.
GATE = """
import sys
from pathlib import Path
import pandas as pd
from expectations.gate import DataQualityError, run_gate
from expectations.raw import users_suite

now = pd.Timestamp("2024-06-01 12:00:00", tz="UTC")
ids = ["u1", "u2", "u2"] if sys.argv[2] == "fail" else ["u1", "u2", "u3"]
users = pd.DataFrame({
    "user_id": pd.Series(ids, dtype=object),
    "signup_timestamp": pd.Series([now - pd.Timedelta(days=d) for d in (3, 2, 1)]),
    "age_band": ["25-34", None, "35-44"], "gender": ["f", "m", None],
    "region": ["north", "south", "east"], "membership_level": [None, "gold", "basic"],
})
try:
    page = run_gate(users_suite(now), users, Path(sys.argv[1]), Path("raw/users.parquet")).docs_path
except DataQualityError as error:
    page = error.docs_path
print(page)
"""


def _gate_in_a_new_process(docs: Path, outcome: str) -> Path:
    done = subprocess.run([sys.executable, "-c", GATE, str(docs), outcome],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Three commands' validations, one after another, into one docs directory."""
    docs = tmp_path_factory.mktemp("home") / "data_docs"
    pages = [_gate_in_a_new_process(docs, outcome) for outcome in ("pass", "fail", "pass")]
    return docs, pages


def test_the_index_lists_every_process_validation_and_every_page_stays(site) -> None:
    docs, pages = site
    assert len(set(pages)) == 3 and all(p.is_file() and docs in p.parents for p in pages)
    index = (docs / "index.html").read_text()
    linked = {unquote(href) for href in re.findall(r'href="(validations/[^"]+)"', index)}
    assert linked == {p.relative_to(docs).as_posix() for p in pages}
    assert index.count("Failed") >= 1 and index.count("Success") >= 2


def test_processes_validating_at_once_keep_all_their_pages(tmp_path) -> None:
    """Not serialized by a home's lock (e.g. `persona train` beside an ingest): the site's own
    lock keeps each process from hiding or deleting another's page."""
    docs = tmp_path / "data_docs"
    runs = [subprocess.Popen([sys.executable, "-c", GATE, str(docs), "pass"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    pages = {Path(out.strip().splitlines()[-1]) for out, _ in outputs}
    index = (docs / "index.html").read_text()
    linked = {unquote(href) for href in re.findall(r'href="(validations/[^"]+)"', index)}
    assert len(pages) == 3 and linked == {p.relative_to(docs).as_posix() for p in pages}


class _References(HTMLParser):
    """What a page loads: scripts, stylesheets, icons and images (not the links it offers)."""

    def __init__(self) -> None:
        super().__init__()
        self.loads: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {"script": "src", "link": "href", "img": "src"}.get(tag)
        value = dict(attrs).get(attr) if attr else None
        if value:
            self.loads.append(value)


def test_no_page_loads_anything_from_the_internet_and_what_it_loads_is_there(site) -> None:
    docs, _ = site
    pages = sorted(docs.rglob("*.html"))
    assert len(pages) >= 5  # the index, 3 validations, the suite's page
    for page in pages:
        text = page.read_text()
        parser = _References()
        parser.feed(text)
        assert parser.loads, page
        for ref in parser.loads:
            assert not re.match(r"(https?:)?//", ref), f"{page} loads {ref}"
            local = (page.parent / unquote(urlsplit(ref).path)).resolve()
            assert local.is_file() and docs.resolve() in local.parents, f"{page}: {ref}"
        assert not re.search(r"url\(\s*['\"]?(https?:)?//", text), page
        assert "bootstrapTable(" not in text and "$(" not in text, page  # nothing needs jQuery


def test_pages_name_the_data_asset_and_the_command_run(tmp_path, monkeypatch) -> None:
    docs = tmp_path / "data_docs"
    raw = tmp_path / "raw"
    monkeypatch.setattr(sys, "argv", ["/venv/bin/persona", "ingest", str(raw), "--home", "h"])
    users = pd.DataFrame({
        "user_id": pd.Series(["u1", "u2"], dtype=object),
        "signup_timestamp": pd.Series([NOW - pd.Timedelta(days=1)] * 2),
        "age_band": ["25-34", None], "gender": ["f", "m"], "region": ["north", "south"],
        "membership_level": [None, "gold"],
    })
    page = run_gate(users_suite(NOW), users, docs, raw / "users.csv").docs_path
    words = " ".join(re.sub(r"<[^>]+>", " ", page.read_text()).split())
    assert "Expectation Suite: raw.users Data asset: users.csv" in words
    run = re.search(r"Run Name (persona-ingest-\d{8}T\d{6}Z)", words)
    assert run, words[:2000]
    assert f"raw.users / users.csv / {run.group(1)}" in words  # the page title
    index = " ".join(re.sub(r"<[^>]+>", " ", (docs / "index.html").read_text()).split())
    assert f"{run.group(1)} users.csv" in index
