"""The business rules of recommendation lists (feature_repo/recommend_rules.yaml): the shipped
file loads, each rule does what it says, and a broken file fails naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona.recommend.rules import RuleBook, RuleFileError

ITEMS = {f"i{n}": {"category": "grocery" if n < 3 else "books", "brand": f"b{n % 2}"}
         for n in range(8)}


def _candidates(n: int = 8) -> list[dict]:
    return [{"item_id": f"i{k}", "score": 1.0 - k / 10} for k in range(n)]


def test_the_shipped_rules_load() -> None:
    book = RuleBook.load()
    assert book.exclude_bought and "grocery" in book.repeat_categories
    assert book.max_per_category and book.max_per_brand


def test_bought_items_are_left_out_unless_their_category_repeats() -> None:
    book = RuleBook(exclude_bought=True, repeat_categories=frozenset({"grocery"}))
    got = [c["item_id"] for c in book.apply(_candidates(), 8, ITEMS, bought={"i1", "i4"})]
    assert got == ["i0", "i1", "i2", "i3", "i5", "i6", "i7"]  # i1 is grocery: bought again
    keep = RuleBook(exclude_bought=False)
    assert len(keep.apply(_candidates(), 8, ITEMS, bought={"i4"})) == 8


def test_deny_list_caller_exclusions_min_score_and_k() -> None:
    book = RuleBook(deny_items=frozenset({"i0"}), min_score=0.45)
    got = book.apply(_candidates(), 3, ITEMS, exclude={"i2"})
    assert [c["item_id"] for c in got] == ["i1", "i3", "i4"]
    assert [c["item_id"] for c in book.apply(_candidates(), 10, ITEMS)] == [
        "i1", "i2", "i3", "i4", "i5"]  # i6 (0.4) and i7 (0.3) score under the minimum


def test_caps_per_category_and_brand_keep_the_best_first() -> None:
    by_category = RuleBook(max_per_category=2).apply(_candidates(), 8, ITEMS)
    assert [c["item_id"] for c in by_category] == ["i0", "i1", "i3", "i4"]
    by_brand = RuleBook(max_per_brand=1).apply(_candidates(), 8, ITEMS)
    assert [c["item_id"] for c in by_brand] == ["i0", "i1"]
    unknown = RuleBook(max_per_category=1).apply([{"item_id": "x", "score": 1.0},
                                                  {"item_id": "y", "score": 0.9}], 5, ITEMS)
    assert len(unknown) == 2  # items without a category are not capped together


@pytest.mark.parametrize("text, message", [
    ("exclude_bougth: true", "unknown rule 'exclude_bougth'"),
    ("max_per_brand: 0", "max_per_brand must be at least 1"),
    ("max_per_category: two", "max_per_category must be int or NoneType"),
    ("exclude_bought: 1", "exclude_bought must be bool"),
    ("deny_items: [1, 2]", "deny_items must list strings"),
    ("min_score: true", "min_score must be int or float"),
    ("- a list", "expected a mapping"),
    ("a: [", "not valid YAML"),
])
def test_a_broken_file_fails_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(RuleFileError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RuleBook.load(path)
