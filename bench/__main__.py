"""`python -m bench [NAME ...]`: the same as `persona bench` (bench/cli.py)."""

from bench.cli import app

app(prog_name="python -m bench")
