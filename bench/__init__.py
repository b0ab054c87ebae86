"""Benchmarks of the performance issue, one module per target, each against a floor measured in
the same run: `python -m bench.<name>`, `python -m bench [NAME]` or `make bench`.
A development tool run from the checkout, not an installed package.

Every run writes bench/results/<name>.json (figures, ratios, machine, git revision, date);
`python -m bench.table` renders them as the README's Performance table.
"""

NAMES = ("generate", "retrieval", "materialize", "scoring", "rank_http", "load", "demo")
