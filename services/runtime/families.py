"""Model families per stage: which engine a model folder needs, found from its config files.

Each stage keeps one `FamilyRegistry`. A family registers a `Family` entry (its name, a cheap
`detect` that reads only config files, a `load` that imports torch and builds the engine, and how to
read its typed request options), so a stage's servicer and server never name a family. Extra
families can be plugged in without editing the project: modules listed in `SONGSMITH_FAMILY_PLUGINS`
(comma-separated) are imported before the first lookup and register themselves.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from services.runtime.errors import FailedPreconditionError, InvalidArgumentError

log = logging.getLogger(__name__)

PLUGINS_ENV = "SONGSMITH_FAMILY_PLUGINS"
E = TypeVar("E")


@dataclass(frozen=True)
class FamilyCli:
    """How a family extends its stage's command (`latents generate`, `latents decode`, `style embed`).

    `add_arguments` adds the family's own flags (the stage command has the common ones);
    `options` reads them into the engine's options. `to_file` turns the engine's array into the
    array the command writes, `from_file` the array the command reads into the engine's (for
    example codes [codebooks, frames] on disk, [frames, codebooks] in the engine). None: unchanged.
    """

    add_arguments: Callable[[argparse._ActionsContainer], None] | None = None
    options: Callable[[argparse.Namespace], Any] | None = None
    to_file: Callable[[np.ndarray], np.ndarray] | None = None
    from_file: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class Family(Generic[E]):
    """One model family as one stage sees it.

    `detect(model_dir)` says whether a folder holds this family's files (config files only: it runs
    in the gateway and the CLI, which do not load torch). `load(model_dir, settings)` builds the
    engine. `describe` names the files `detect` looks for, for error messages. `options_field` is
    the family's arm of the stage request's `family_options` oneof; `parse_options` turns that
    message into the engine's own options (None when the request sent none). `cli` extends the
    stage's command line.

    `companions` (generation families only) says where a model's other stages find their models when
    a model folder is served in process or by `songsmith up`: stage name -> "." (this same folder),
    the name of a folder beside it under the model root (e.g. "muq-mulan"), or "" (a stage without
    a model folder: the lyric tokenizer). A stage it does not name is not used by the family.

    `check_input`, when given, checks a request's input for this family cheaply, without loading
    anything (the gateway runs it before it accepts a song), raising InvalidArgumentError; its
    arguments are the stage's (a lyric family: the lyrics, the song's seconds, the LyricsLimits).

    `style_crop` (generation families only) is how the style stage turns a style recording into this
    family's conditioning, one of the style stage's crop modes: "whole" (every 10 s clip averaged),
    "random" (one seeded 10 s window) or "middle" (the 10 s around the middle, DiffRhythm v1's
    reference); the gateway asks the style stage for it.
    """

    name: str
    detect: Callable[[Path], bool]
    load: Callable[[Path, Any], E]
    describe: str
    options_field: str = ""
    parse_options: Callable[[Any], Any] | None = None
    cli: FamilyCli = field(default_factory=FamilyCli)
    companions: dict[str, str] = field(default_factory=dict)
    check_input: Callable[..., None] | None = None
    style_crop: str = "whole"


class FamilyRegistry(Generic[E]):
    """The families one stage can host, in registration order (the first match wins)."""

    def __init__(self, stage: str) -> None:
        """An empty registry for `stage` (used in error messages)."""
        self.stage = stage
        self._families: dict[str, Family[E]] = {}

    def register(self, family: Family[E]) -> None:
        """Add a family; registering a name twice keeps the later entry."""
        self._families[family.name] = family

    def families(self) -> list[Family[E]]:
        """Every registered family (plugins included)."""
        load_plugins()
        return list(self._families.values())

    def get(self, name: str) -> Family[E]:
        """The family called `name`; FailedPreconditionError for an unknown one."""
        load_plugins()
        family = self._families.get(name)
        if family is None:
            known = ", ".join(self._families) or "none"
            raise FailedPreconditionError(f"the {self.stage} stage has no family {name!r} (known: {known})")
        return family

    def detect(self, model_dir: Path) -> Family[E]:
        """The family whose files are in `model_dir`; FailedPreconditionError naming what was looked for."""
        if not model_dir.is_dir():
            raise FailedPreconditionError(f"model folder {model_dir} does not exist")
        for family in self.families():
            if family.detect(model_dir):
                return family
        wanted = "; ".join(f"{family.name}: {family.describe}" for family in self.families())
        raise FailedPreconditionError(f"no {self.stage} model in {model_dir}: expected one of {wanted}")

    def load(self, model_dir: str | Path, settings: Any, family: str = "") -> E:
        """Build the engine for the model in `model_dir` (family detected unless named)."""
        path = Path(model_dir)
        chosen = self.get(family) if family else self.detect(path)
        return chosen.load(path, settings)

    def options(self, family: str, request: Any, oneof: str = "family_options") -> Any:
        """The typed options a stage request carries for `family` (None when it carries none).

        INVALID_ARGUMENT naming the field when the request carries another family's options.
        """
        arm = request.WhichOneof(oneof)
        return None if arm is None else self.parse_options(family, arm, getattr(request, arm))

    def parse_options(self, family: str, field: str, message: Any) -> Any:
        """`family`'s options from the message of oneof arm `field`; INVALID_ARGUMENT naming the field
        when the arm belongs to another family."""
        entry = self.get(family)
        if field != entry.options_field:
            raise InvalidArgumentError(field, f"options for another model family; the model is {family}")
        return entry.parse_options(message) if entry.parse_options else None


_loaded_plugins: set[str] = set()


def load_plugins() -> None:
    """Import the modules named in SONGSMITH_FAMILY_PLUGINS (once each); they register families."""
    for module in filter(None, (name.strip() for name in os.environ.get(PLUGINS_ENV, "").split(","))):
        if module not in _loaded_plugins:
            _loaded_plugins.add(module)
            importlib.import_module(module)
            log.info("family plugin %s loaded", module)
