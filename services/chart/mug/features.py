"""The chart prompt: the feature list of the feature YAML and how values become embedding rows.

Each feature owns a block of rows in one embedding table, in the YAML's order: a numeric feature
ceil((max - min) / interval) + 1 rows, a category (number of values) + 1, a bool 3; an entry with
`count: n` repeats its block n times. Row 0 of a block means "unset". A value picks
first_row + bucket, where the bucket is, as the reference computes it:

- numeric: int((value - min) / interval) + 1 in float64 with truncation, so ln_ratio 0.3 lands in
  bucket 3, not 4; at the maximum the bucket equals the block's row count, which is the next
  feature's "unset" row (the reference does no bounds check; we keep that);
- bool: false 1, true 2;
- category: index in the list + 1.

Values outside [min, max] and unknown categories are refused (the reference clamps the first and
crashes on the second); they are errors naming the feature.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from services.runtime.errors import FailedPreconditionError, InvalidArgumentError

NUMERIC = "numeric"
BOOL = "bool"
CATEGORY = "category"
FeatureValue = float | bool | str
# The published feature list (identical to the repository's configs/mug/mania_beatmap_features.yaml).
PUBLISHED_FEATURES = Path(__file__).parent / "assets" / "mania_beatmap_features.yaml"


@dataclass(frozen=True)
class Feature:
    """One entry of the feature YAML and where its rows start in the embedding table."""

    name: str
    kind: str
    first_rows: tuple[int, ...]
    minimum: float = 0.0
    maximum: float = 0.0
    interval: float = 0.0
    categories: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        """Rows of one block of this feature."""
        if self.kind == NUMERIC:
            return math.ceil((self.maximum - self.minimum) / self.interval) + 1
        if self.kind == CATEGORY:
            return len(self.categories) + 1
        return 3

    def describe(self) -> str:
        """The accepted values, for error messages and --help."""
        if self.kind == NUMERIC:
            return f"a number from {self.minimum:g} to {self.maximum:g}"
        if self.kind == CATEGORY:
            return "one of " + ", ".join(self.categories)
        return "true or false"

    def bucket(self, value: FeatureValue) -> int:
        """The row offset inside this feature's block for `value` (0 is "unset")."""
        if self.kind == NUMERIC:
            return int((float(value) - self.minimum) / self.interval) + 1
        if self.kind == BOOL:
            return 2 if value else 1
        return self.categories.index(str(value)) + 1

    def check(self, value: FeatureValue, field: str) -> FeatureValue:
        """`value` if this feature accepts it; InvalidArgumentError on `field` otherwise."""
        if self.kind == NUMERIC:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidArgumentError(field, f"must be {self.describe()}, got {value!r}")
            if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
                raise InvalidArgumentError(field, f"must be {self.describe()}, got {value!r}")
            return float(value)
        if self.kind == BOOL:
            if not isinstance(value, bool):
                raise InvalidArgumentError(field, f"must be true or false, got {value!r}")
            return value
        if value not in self.categories:
            raise InvalidArgumentError(field, f"must be {self.describe()}, got {value!r}")
        return value

    def parse(self, text: str, field: str) -> FeatureValue:
        """A value written as text (the command line): decimals, true/false, or a category word."""
        cleaned = text.strip()
        if self.kind == NUMERIC:
            try:
                number = float(cleaned)
            except ValueError:
                raise InvalidArgumentError(field, f"must be {self.describe()}, got {text!r}") from None
            return self.check(number, field)
        if self.kind == BOOL:
            lowered = cleaned.lower()
            if lowered not in ("true", "false"):
                raise InvalidArgumentError(field, f"must be true or false, got {text!r}")
            return lowered == "true"
        return self.check(cleaned, field)


class FeaturePrompt:
    """The feature list of one model and the mapping from prompt values to embedding ids."""

    def __init__(self, features: list[Feature]) -> None:
        """`features` in YAML order with their first rows already assigned."""
        self.features = features
        self.by_name = {feature.name: feature for feature in features}
        self.rows = sum(feature.rows * len(feature.first_rows) for feature in features)

    @classmethod
    def from_entries(cls, entries: object, source: str = "feature YAML") -> FeaturePrompt:
        """Build the prompt from the parsed YAML list; FailedPreconditionError on a bad entry."""
        if not isinstance(entries, list) or not entries:
            raise FailedPreconditionError(f"{source} must be a non-empty list of features")
        features = []
        row = 0
        for position, entry in enumerate(entries):
            feature = _feature_from_entry(entry, position, source)
            repeats = entry.get("count", 1)
            if not isinstance(repeats, int) or repeats < 1:
                raise FailedPreconditionError(f"{source}: feature {feature.name} has a bad count {repeats!r}")
            first_rows = []
            for _ in range(repeats):
                first_rows.append(row)
                row += feature.rows
            features.append(Feature(**{**feature.__dict__, "first_rows": tuple(first_rows)}))
        names = [feature.name for feature in features]
        if len(set(names)) != len(names):
            raise FailedPreconditionError(f"{source} names a feature twice")
        return cls(features)

    @classmethod
    def load(cls, path: Path) -> FeaturePrompt:
        """Read the feature YAML at `path`; FailedPreconditionError when it is missing or invalid."""
        try:
            entries = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise FailedPreconditionError(
                f"cannot read the feature list {path}: {exc.strerror or exc}"
            ) from exc
        except yaml.YAMLError as exc:
            raise FailedPreconditionError(f"the feature list {path} is not valid YAML: {exc}") from exc
        return cls.from_entries(entries, str(path))

    @property
    def tokens(self) -> int:
        """Context tokens the prompt makes (one per feature block)."""
        return sum(len(feature.first_rows) for feature in self.features)

    def validate(self, values: Mapping[str, FeatureValue], field_prefix: str = "features") -> dict:
        """`values` checked against the feature list; InvalidArgumentError naming the first bad one
        as `<field_prefix>.<name>` (an unknown name, a value out of range or of the wrong kind, or the
        last feature's maximum, whose bucket would point past the embedding table)."""
        checked = {}
        for name, value in values.items():
            feature = self.by_name.get(name)
            field = f"{field_prefix}.{name}"
            if feature is None:
                raise InvalidArgumentError(
                    field, "this model has no such feature; known: " + ", ".join(self.by_name)
                )
            checked[name] = feature.check(value, field)
        last = self.features[-1]
        if max(self.ids(checked)) >= self.rows:
            raise InvalidArgumentError(
                f"{field_prefix}.{last.name}", "its maximum points past the end of the embedding table"
            )
        return checked

    def parse(self, assignments: list[str]) -> dict:
        """`NAME=VALUE` strings (the command line) as checked values; InvalidArgumentError naming the
        feature for an unknown name or a bad value."""
        values: dict[str, FeatureValue] = {}
        for assignment in assignments:
            name, sep, text = assignment.partition("=")
            name = name.strip()
            if not sep or not name:
                raise InvalidArgumentError("feature", f"expected NAME=VALUE, got {assignment!r}")
            feature = self.by_name.get(name)
            if feature is None:
                raise InvalidArgumentError(
                    f"feature.{name}", "this model has no such feature; known: " + ", ".join(self.by_name)
                )
            values[name] = feature.parse(text, f"feature.{name}")
        return values

    def ids(self, values: Mapping[str, FeatureValue]) -> list[int]:
        """The embedding row of every context token for the (validated) prompt `values`."""
        ids = []
        for feature in self.features:
            value = values.get(feature.name)
            bucket = 0 if value is None else feature.bucket(value)
            ids.extend(first + bucket for first in feature.first_rows)
        return ids

    def unconditional_ids(self) -> list[int]:
        """The ids of the all-unset prompt (guidance's unconditional branch)."""
        return self.ids({})


def _feature_from_entry(entry: object, position: int, source: str) -> Feature:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise FailedPreconditionError(f"{source}: entry {position} has no name")
    name, kind = entry["name"], entry.get("type")
    if kind == NUMERIC:
        try:
            minimum, maximum, interval = (float(entry[key]) for key in ("min", "max", "interval"))
        except (KeyError, TypeError, ValueError):
            raise FailedPreconditionError(
                f"{source}: numeric feature {name} needs min, max and interval"
            ) from None
        if not interval > 0 or not maximum > minimum:
            raise FailedPreconditionError(f"{source}: numeric feature {name} has a bad range")
        return Feature(name, kind, (), minimum, maximum, interval)
    if kind == CATEGORY:
        categories = entry.get("category")
        if not isinstance(categories, list) or not categories:
            raise FailedPreconditionError(f"{source}: category feature {name} has no category list")
        return Feature(name, kind, (), categories=tuple(str(c) for c in categories))
    if kind == BOOL:
        return Feature(name, kind, ())
    raise FailedPreconditionError(f"{source}: feature {name} has an unknown type {kind!r}")
