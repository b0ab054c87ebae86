"""Profile tags and segments, declared in feature_repo/profile_tags.yaml and checked on load.

A tag is a rule over user features and scores; a segment is the first of an ordered list of
rules over tags. Loading validates every rule (unknown names, bad expressions) with a message
naming the tag or segment, so a broken file fails before anything is scored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from persona.core.schema import USER_ACTIVITY, USER_PROFILE
from persona.core.settings import FEATURE_REPO
from persona.profiling.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    quantiles_from,
)

TAGS_FILE = FEATURE_REPO / "profile_tags.yaml"
SCORES = ("propensity", "churn_risk")
_LABEL_FIELD = re.compile(r"\{(\w+)\}")


class TagFileError(ValueError):
    """The tag file is not valid; the message names the file and the rule."""


@dataclass(frozen=True)
class Tag:
    name: str
    description: str
    rule: Expression
    label: str | None = None


@dataclass(frozen=True)
class Segment:
    name: str
    rule: Expression


def profile_variables() -> list[str]:
    """Names a rule may use: user_profile and user_activity features, and the scores."""
    return [*USER_PROFILE.names, *USER_ACTIVITY.names, *SCORES]


@dataclass(frozen=True)
class TagBook:
    tags: tuple[Tag, ...]
    segments: tuple[Segment, ...]

    @classmethod
    def load(cls, path: Path = TAGS_FILE, variables: list[str] | None = None) -> TagBook:
        known = variables if variables is not None else profile_variables()
        try:
            spec = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise TagFileError(f"{path}: {exc}") from exc
        if not isinstance(spec, dict) or not isinstance(spec.get("tags"), dict):
            raise TagFileError(f"{path}: expected a mapping with 'tags' (and 'segments')")
        tags = tuple(_tag(path, name, body, known) for name, body in spec["tags"].items())
        tag_names = [t.name for t in tags]
        segments = tuple(_segment(path, i, body, tag_names)
                         for i, body in enumerate(spec.get("segments") or []))
        return cls(tags, segments)

    @property
    def names(self) -> set[str]:
        """Every variable some rule reads."""
        return {name for tag in self.tags for name in tag.rule.names}

    def evaluate(self, frame: pd.DataFrame,
                 reference: Mapping[str, Mapping[str, float]] | None = None) -> pd.DataFrame:
        """Per row: `tags` (list of tag labels) and `segment`. Missing variables are nulls.
        Quantiles come from `reference` when given, else from the frame itself."""
        frame = frame.reindex(columns=sorted(set(frame.columns) | self.names))
        quantile = quantiles_from(frame, reference)
        flags = pd.DataFrame({t.name: t.rule.evaluate(frame, quantile) for t in self.tags},
                             index=frame.index)
        labels = [[_label(t, frame, row) for t in self.tags if flags.at[row, t.name]]
                  for row in frame.index]
        segment = pd.Series(None, index=frame.index, dtype=object)
        for seg in self.segments:
            segment = segment.where(segment.notna() | ~seg.rule.evaluate(flags, quantile), seg.name)
        return pd.DataFrame({"tags": labels, "segment": segment}, index=frame.index)


def _tag(path: Path, name: str, body, known: list[str]) -> Tag:
    if not isinstance(body, dict) or "when" not in body:
        raise TagFileError(f"{path}: tag {name!r} needs a 'when' rule")
    label = body.get("label")
    try:
        rule = compile_expression(body["when"], known)
        for field in _LABEL_FIELD.findall(label or ""):
            if field not in known:
                raise ExpressionError(f"label {label!r}: unknown name {field!r}")
    except ExpressionError as exc:
        raise TagFileError(f"{path}: tag {name!r}: {exc}") from None
    return Tag(name, str(body.get("description", "")), rule, label)


def _segment(path: Path, index: int, body, tag_names: list[str]) -> Segment:
    if not isinstance(body, dict) or "name" not in body or "when" not in body:
        raise TagFileError(f"{path}: segment #{index + 1} needs 'name' and 'when'")
    try:
        return Segment(str(body["name"]), compile_expression(body["when"], tag_names))
    except ExpressionError as exc:
        raise TagFileError(f"{path}: segment {body['name']!r}: {exc}") from None


def _label(tag: Tag, frame: pd.DataFrame, row) -> str:
    if not tag.label:
        return tag.name
    return _LABEL_FIELD.sub(lambda m: str(frame.at[row, m.group(1)]), tag.label)
