"""`python -m bench [NAME ...]`: run the benchmarks (bench/cli.py)."""

from bench.cli import app

app(prog_name="python -m bench")
