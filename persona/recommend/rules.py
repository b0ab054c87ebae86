"""The business rules of recommendation lists: declared in feature_repo/recommend_rules.yaml,
validated on load (an unknown key or a wrong type fails naming the file and the key), applied
by `RuleBook.apply`, the one function the service and the batch lists call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from persona.core.settings import FEATURE_REPO

RULES_FILE = FEATURE_REPO / "recommend_rules.yaml"


class RuleFileError(ValueError):
    """The rules file is not valid; the message names the file and the key."""


@dataclass(frozen=True)
class RuleBook:
    """The rules, as declared."""

    exclude_bought: bool = True
    exclude_unavailable: bool = True
    repeat_categories: frozenset[str] = frozenset()
    deny_items: frozenset[str] = frozenset()
    max_per_category: int | None = None
    max_per_brand: int | None = None
    min_score: float = 0.0

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> RuleBook:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            raise RuleFileError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(raw, dict):
            raise RuleFileError(f"{path}: expected a mapping of rule names to values")
        return cls.of(raw, path)

    @classmethod
    def of(cls, raw: Mapping[str, Any], source: Path | str = "rules") -> RuleBook:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise RuleFileError(f"{source}: unknown rule {unknown[0]!r}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for name, value in raw.items():
            values[name] = _checked(name, value, source)
        return cls(**values)

    def apply(self, candidates: Iterable[Mapping[str, Any]], k: int,
              items: Mapping[str, Mapping[str, Any]], bought: Iterable[str] = (),
              exclude: Iterable[str] = (), unavailable: Iterable[str] = ()) -> list[dict]:
        """The first `k` candidates (best first, each with `item_id` and `score`) that pass:
        not excluded by the caller or the deny list, not unavailable, not already bought
        (unless its category repeats), scored at least `min_score`, and within the
        per-category and per-brand caps. `items` gives each item's `category` and `brand` (an
        item it lacks has neither)."""
        banned = set(exclude) | self.deny_items
        if self.exclude_unavailable:
            banned |= set(unavailable)
        owned = set(bought) if self.exclude_bought else set()
        per_category: Counter = Counter()
        per_brand: Counter = Counter()
        out = []
        for candidate in candidates:
            item = candidate["item_id"]
            info = items.get(item, {})
            category, brand = info.get("category"), info.get("brand")
            if item in banned or candidate["score"] < self.min_score:
                continue
            if item in owned and category not in self.repeat_categories:
                continue
            if _full(per_category, category, self.max_per_category) or \
                    _full(per_brand, brand, self.max_per_brand):
                continue
            per_category[category] += 1
            per_brand[brand] += 1
            out.append(dict(candidate))
            if len(out) == k:
                break
        return out


def _full(counts: Counter, key: str | None, cap: int | None) -> bool:
    return cap is not None and key is not None and counts[key] >= cap


_KINDS: dict[str, tuple[type, ...]] = {
    "exclude_bought": (bool,), "exclude_unavailable": (bool,), "repeat_categories": (list,),
    "deny_items": (list,),
    "max_per_category": (int, type(None)), "max_per_brand": (int, type(None)),
    "min_score": (int, float),
}


def _checked(name: str, value: Any, source: Path | str) -> Any:
    """A rule's value in its declared type (lists as frozensets of strings, caps >= 1)."""
    kinds: Sequence[type] = _KINDS[name]
    if not isinstance(value, tuple(kinds)) or (isinstance(value, bool) and bool not in kinds):
        raise RuleFileError(f"{source}: {name} must be {' or '.join(k.__name__ for k in kinds)}"
                            f", not {value!r}")
    if isinstance(value, list):
        if not all(isinstance(v, str) for v in value):
            raise RuleFileError(f"{source}: {name} must list strings")
        return frozenset(value)
    if name.startswith("max_per_") and value is not None and value < 1:
        raise RuleFileError(f"{source}: {name} must be at least 1 (or null for no cap)")
    return float(value) if name == "min_score" else value
