"""Stage commands that serve every family: each family's own flags, and which family a flag is for.

A stage command (`latents generate`, `latents decode`, `style embed`) adds the flags of every
registered family (`FamilyCli.add_arguments`). After the model folder says which family runs, a
flag of another family that was given is a usage error rather than silently ignored.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from services.runtime.errors import InvalidArgumentError
from services.runtime.families import Family, FamilyRegistry

FAMILY_FLAGS = "family_flags"


def add_family_arguments(parser: argparse.ArgumentParser, registry: FamilyRegistry) -> None:
    """Add every family's own flags to `parser`, remembering which family each flag belongs to."""
    owners: dict[str, tuple[str, str, Any]] = {}
    for family in registry.families():
        if family.cli.add_arguments is None:
            continue
        group = parser.add_argument_group(f"{family.name} options")
        before = {action.dest for action in parser._actions}
        family.cli.add_arguments(group)
        for action in parser._actions:
            if action.dest not in before:
                flag = action.option_strings[0] if action.option_strings else action.dest
                owners[action.dest] = (family.name, flag, action.default)
    parser.set_defaults(**{FAMILY_FLAGS: owners})


def family_options(args: argparse.Namespace, family: Family) -> Any:
    """The options `family` reads from its flags; InvalidArgumentError for another family's flag."""
    owners: dict[str, tuple[str, str, Any]] = getattr(args, FAMILY_FLAGS, {})
    for dest, (owner, flag, default) in owners.items():
        if owner != family.name and getattr(args, dest) != default:
            raise InvalidArgumentError(flag, f"is a {owner} option; this model is {family.name}")
    return family.cli.options(args) if family.cli.options is not None else None


def to_file(family: Family, array: np.ndarray) -> np.ndarray:
    """The engine's array in the layout the family's command writes."""
    return family.cli.to_file(array) if family.cli.to_file is not None else array


def from_file(family: Family, array: np.ndarray) -> np.ndarray:
    """An array read by the family's command in the layout its engine takes."""
    return family.cli.from_file(array) if family.cli.from_file is not None else array
