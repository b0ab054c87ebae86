"""The tag file: validated on load with clear errors, evaluated without eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona.profiling.expressions import ExpressionError, compile_expression
from persona.profiling.tags import TAGS_FILE, TagBook, TagFileError


def _users() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["loyal_big", "new", "lapsed", "browser", "unknown"],
        "purchases_30d": [2, 1, 0, 0, np.nan],
        "purchases_90d": [6, 1, 2, 0, np.nan],
        "spend_90d": [900.0, 20.0, 50.0, 0.0, np.nan],
        "aov_90d": [150.0, 20.0, 25.0, 0.0, np.nan],
        "days_since_last_purchase": [3.0, 5.0, 60.0, np.nan, np.nan],
        "days_since_last_event": [1.0, 2.0, 45.0, 0.5, np.nan],
        "views_30d": [30, 3, 0, 25, np.nan],
        "favourite_category": ["books", "toys", None, "garden", None],
        "propensity": [0.8, 0.5, 0.05, 0.1, np.nan],
    }).set_index("user_id")


def test_the_shipped_file_loads_and_segments_users() -> None:
    book = TagBook.load()
    out = book.evaluate(_users())
    assert {"loyal", "high_value", "fan_of_books"} <= set(out.at["loyal_big", "tags"])
    assert out.at["loyal_big", "segment"] == "champions"
    assert "new_customer" in out.at["new", "tags"] and out.at["new", "segment"] == "newcomers"
    assert {"lapsed", "at_risk"} <= set(out.at["lapsed", "tags"])
    assert out.at["lapsed", "segment"] == "at_risk"
    assert out.at["browser", "segment"] == "window_shoppers"
    assert out.at["unknown", "tags"] == [] and out.at["unknown", "segment"] == "others"


def test_reference_quantiles_decide_for_a_single_user() -> None:
    book = TagBook.load()
    one = _users().loc[["new"]]
    assert "high_value" in book.evaluate(one)["tags"].iloc[0]  # alone, it is its own top 10%
    reference = {"spend_90d": {"0.9": 500.0}, "aov_90d": {"0.5": 10.0}}
    assert "high_value" not in book.evaluate(one, reference)["tags"].iloc[0]


@pytest.mark.parametrize(("rule", "message"), [
    ("purchses_90d > 1", "unknown name 'purchses_90d'"),
    ("__import__('os').system('true')", "only the functions"),
    ("spend_90d.real > 1", "Attribute is not allowed"),
    ("spend_90d >", "cannot parse"),
    ("quantile(spend_90d, 0.33) < 1", "quantile's q"),
    ("1 < spend_90d < 5", "chain comparisons"),
    ("[x for x in spend_90d]", "not allowed"),
])
def test_bad_rules_are_rejected_with_the_tag_named(tmp_path: Path, rule: str, message: str) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(f"tags:\n  broken:\n    when: \"{rule}\"\n")
    with pytest.raises(TagFileError, match="tag 'broken'") as caught:
        TagBook.load(path)
    assert message in str(caught.value)


def test_segment_rules_may_only_name_tags(tmp_path: Path) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text("tags:\n  loyal:\n    when: purchases_90d >= 3\nsegments:\n"
                    "  - name: vip\n    when: spend_90d > 3\n")
    with pytest.raises(TagFileError, match="segment 'vip': .*unknown name 'spend_90d'"):
        TagBook.load(path)


def test_adding_a_tag_is_an_edit_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tags.yaml"
    path.write_text(TAGS_FILE.read_text().replace(
        "tags:\n", "tags:\n  big_basket:\n    when: aov_90d >= 100\n", 1))
    assert "big_basket" in TagBook.load(path).evaluate(_users()).at["loyal_big", "tags"]


def test_null_comparisons_and_arithmetic() -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [2.0, 2.0, np.nan]})
    quantile = lambda name, q: 0.0  # noqa: E731
    def evaluated(text: str) -> list[bool]:
        return compile_expression(text, ["a", "b"]).evaluate(frame, quantile).tolist()

    assert evaluated("a * 2 > b") == [False, False, False]
    assert evaluated("a + 1 >= b") == [True, False, False]
    assert evaluated("a == null or not b < 3") == [False, True, True]
    with pytest.raises(ExpressionError):
        compile_expression("a ** 2 > 1", ["a"])
