"""Render bench/results/*.json as the Markdown table of the README's Performance section.

    python -m bench.table [RESULTS_DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.common import RESULTS

COLUMNS = ("Target", "Measured (median, min-max)", "Floor / baseline, same run", "Ratio", "Goal",
           "Met", "Peak RSS")


def load(directory: Path = RESULTS) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(Path(directory).glob("*.json"))]


def render(results: list[dict]) -> str:
    """One line per table row of every result, ordered by target, then where and when."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    rows = sorted((r for result in results for r in result.get("table", [])),
                  key=lambda r: r["target"])
    for r in rows:
        met = {True: "yes", False: "**no**", None: "-"}[r["met"]]
        cells = [r["target"], r["figure"], r["baseline"], r["ratio"], r["goal"], met, r["peak_rss"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += ["", *(_provenance(result) for result in sorted(results, key=lambda r: r["name"]))]
    return "\n".join(lines)


def _provenance(result: dict) -> str:
    machine, git = result["machine"], result["git"]
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    load = machine.get("load_average", {})
    return (f"- `{result['name']}`: {result['date']}, git {git['revision'][:10]}{dirty}, "
            f"{machine['cpu_count']} x {machine['cpu_model']}, {machine['memory_gb']} GB, "
            f"1-min load average {load.get('start')} at start, {load.get('end')} at end; "
            f"parameters {json.dumps(result.get('parameters', {}))}")


def main(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    text = render(load(Path(args[0]) if args else RESULTS))
    print(text)
    return text


if __name__ == "__main__":
    main()
