"""The chart prompt: buckets by truncation, the overflow at a maximum, parsing and validation."""

from __future__ import annotations

import pytest

from services.chart.mug.features import PUBLISHED_FEATURES, FeaturePrompt
from services.runtime.errors import FailedPreconditionError, InvalidArgumentError


@pytest.fixture(scope="module")
def prompt() -> FeaturePrompt:
    """The published feature list (21 features, 329 rows)."""
    return FeaturePrompt.load(PUBLISHED_FEATURES)


def _id(prompt: FeaturePrompt, name: str, value) -> int:
    return prompt.ids({name: value})[[f.name for f in prompt.features].index(name)]


def test_published_layout(prompt: FeaturePrompt) -> None:
    assert prompt.rows == 329 and prompt.tokens == 21
    firsts = {f.name: f.first_rows[0] for f in prompt.features}
    assert firsts["sr"] == 0 and firsts["rank_status"] == 36 and firsts["ln_ratio"] == 40
    assert firsts["ett"] == 60 and firsts["technical"] == 326


@pytest.mark.parametrize(
    ("name", "value", "row"),
    [
        ("ln_ratio", 0.3, 40 + 3),  # int(2.9999999999999996) + 1: truncation, not rounding
        ("sr", 2.4, 7),
        ("sr", 4.2, 17),
        ("ett", 22.5, 60 + 18),
        ("sr", 1.0, 1),
        ("hb", True, 54 + 2),
        ("hb", False, 54 + 1),
        ("rank_status", "graveyard", 36 + 3),
    ],
)
def test_buckets(prompt: FeaturePrompt, name: str, value, row: int) -> None:
    assert _id(prompt, name, value) == row


def test_a_maximum_lands_on_the_next_features_unset_row(prompt: FeaturePrompt) -> None:
    assert _id(prompt, "sr", 8.0) == 36  # rank_status's "unset" row, as in the reference
    assert _id(prompt, "ett", 35.0) == 91


def test_parse_command_line_values(prompt: FeaturePrompt) -> None:
    values = prompt.parse(["sr=4.2", "hb=true", "rc=FALSE", "rank_status=loved", "stream_ett=20"])
    assert values == {"sr": 4.2, "hb": True, "rc": False, "rank_status": "loved", "stream_ett": 20.0}


@pytest.mark.parametrize(
    ("assignment", "field"),
    [
        ("sr=9", "feature.sr"),
        ("sr=abc", "feature.sr"),
        ("ln_ratio=-0.1", "feature.ln_ratio"),
        ("hb=yes", "feature.hb"),
        ("rank_status=qualified", "feature.rank_status"),
        ("speed=1", "feature.speed"),
        ("sr", "feature"),
    ],
)
def test_parse_errors_name_the_feature(prompt: FeaturePrompt, assignment: str, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        prompt.parse([assignment])
    assert [v.field for v in caught.value.violations] == [field]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"sr": float("nan")}, "options.features.sr"),
        ({"sr": True}, "options.features.sr"),
        ({"hb": 1.0}, "options.features.hb"),
        ({"rank_status": "unknown"}, "options.features.rank_status"),
        ({"tempo": 120.0}, "options.features.tempo"),
    ],
)
def test_validation_names_the_feature(prompt: FeaturePrompt, values: dict, field: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        prompt.validate(values, "options.features")
    assert [v.field for v in caught.value.violations] == [field]


def test_repeated_entries_and_an_overflowing_last_feature() -> None:
    prompt = FeaturePrompt.from_entries(
        [
            {"name": "flag", "type": "bool", "count": 2},
            {"name": "level", "type": "numeric", "min": 0, "max": 1, "interval": 0.5},
        ]
    )
    assert prompt.rows == 3 + 3 + 3 and prompt.tokens == 3
    assert prompt.ids({"flag": True, "level": 0.5}) == [2, 5, 6 + 2]
    with pytest.raises(InvalidArgumentError) as caught:
        prompt.validate({"level": 1.0}, "options.features")
    assert caught.value.violations[0].field == "options.features.level"


@pytest.mark.parametrize(
    "entries",
    [[], [{"type": "bool"}], [{"name": "x", "type": "numeric", "min": 1}], [{"name": "x", "type": "colour"}]],
)
def test_bad_feature_lists_are_failed_precondition(entries) -> None:
    with pytest.raises(FailedPreconditionError):
        FeaturePrompt.from_entries(entries)
