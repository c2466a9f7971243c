"""Which models the gateway routes songs to, and where each one's stages are.

A route maps a model name to its stages: a gRPC target (`dns:///songsmith-diffusion:50053`,
`127.0.0.1:50053`), or `local:PATH` for an engine loaded in the gateway's process from a model folder
(`local` alone for the lyric tokenizer, which needs no folder). Routes come from YAML (a file, or the
text itself in `SONGSMITH_MODELS`), in this form, the default model first:

    diffrhythm2:
      tokenizer: dns:///songsmith-tokenizer:50051
      style: dns:///songsmith-style:50052
      diffusion: dns:///songsmith-diffusion:50053
      vocoder: dns:///songsmith-vocoder:50054
    musicgen-small:
      style: local:models/musicgen-small
      diffusion: local:models/musicgen-small
      vocoder: local:models/musicgen-small

Without a configuration, every model folder under the model root is served in process
(`discover`): a folder is a model when a generation family recognises its files, and the family says
where its other stages' models are.

The chart stage is not part of a model's route: it serves the songs of every model, at the gateway's
`chart_target` (a gRPC target or `local:PATH`). A chart model folder under the model root is found by
`find_chart_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from services.chart.families import CHART_FAMILIES
from services.diffusion.families import GENERATION_FAMILIES
from services.runtime.errors import FailedPreconditionError
from services.style.families import STYLE_FAMILIES

STAGES = ("tokenizer", "style", "diffusion", "vocoder")
REQUIRED_STAGES = ("diffusion", "vocoder")
LOCAL = "local"
DEFAULT_MODEL = "diffrhythm2"


@dataclass(frozen=True)
class ModelRoute:
    """One routed model: its name and, per stage it uses, a gRPC target or `local[:PATH]`."""

    name: str
    stages: dict[str, str]

    def local_path(self, stage: str) -> Path | None:
        """The model folder of an in-process stage (None for a remote stage or the tokenizer)."""
        target = self.stages[stage]
        return Path(target.removeprefix(f"{LOCAL}:")) if target.startswith(f"{LOCAL}:") else None

    def is_local(self, stage: str) -> bool:
        """True when the stage runs in the gateway's process."""
        return self.stages[stage] == LOCAL or self.stages[stage].startswith(f"{LOCAL}:")


class RoutesError(ValueError):
    """A models configuration that cannot be used; the message says where."""


def parse_routes(text: str) -> list[ModelRoute]:
    """Routes from YAML text (see the module docstring); RoutesError naming the problem."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RoutesError(f"the models configuration is not YAML: {exc}") from exc
    if not isinstance(document, dict) or not document:
        raise RoutesError("the models configuration must map each model name to its stages")
    routes = []
    for name, stages in document.items():
        if not isinstance(stages, dict) or not all(isinstance(v, str) and v for v in stages.values()):
            raise RoutesError(f"model {name!r}: map each stage it uses to a target or local:PATH")
        unknown = sorted(set(stages) - set(STAGES))
        if unknown:
            raise RoutesError(f"model {name!r}: unknown stage {unknown[0]!r} (stages: {', '.join(STAGES)})")
        missing = [stage for stage in REQUIRED_STAGES if stage not in stages]
        if missing:
            raise RoutesError(f"model {name!r}: no {missing[0]} stage")
        routes.append(ModelRoute(str(name), {stage: stages[stage] for stage in STAGES if stage in stages}))
    return routes


def read_routes(spec: str) -> list[ModelRoute]:
    """Routes from `spec`: the path of a YAML file, or the YAML text itself."""
    path = Path(spec)
    if "\n" not in spec and path.suffix in (".yaml", ".yml", ".json"):
        try:
            return parse_routes(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RoutesError(f"cannot read the models configuration {path}: {exc.strerror}") from exc
    return parse_routes(spec)


def single_model_routes(name: str, targets: dict[str, str]) -> list[ModelRoute]:
    """The one-model routing of a gateway configured with a target per stage."""
    return [ModelRoute(name, {stage: targets[stage] for stage in STAGES})]


def companion_folder(model_dir: Path, where: str) -> Path:
    """Where a companion stage's model is for a model in `model_dir` (see `Family.companions`)."""
    if where == ".":
        return model_dir
    folder = model_dir.parent / where
    candidates = [folder, *sorted((p for p in folder.glob("*") if p.is_dir()), key=_demo_last)]
    for candidate in candidates:
        if any(family.detect(candidate) for family in STYLE_FAMILIES.families()):
            return candidate
    return folder


def _demo_last(path: Path) -> tuple[bool, str]:
    return (path.name.endswith("-demo"), path.name)


def discover(model_root: Path) -> list[ModelRoute]:
    """An in-process route for every model folder under `model_root` (the DiffRhythm 2 folder first,
    then by name); FailedPreconditionError when there is none."""
    routes = []
    folders = sorted(
        (p for p in model_root.glob("*") if p.is_dir()), key=lambda p: (p.name != DEFAULT_MODEL, p.name)
    )
    for folder in folders:
        family = next((f for f in GENERATION_FAMILIES.families() if f.detect(folder)), None)
        if family is None:
            continue
        stages = {"diffusion": f"{LOCAL}:{folder}"}
        for stage, where in family.companions.items():
            stages[stage] = LOCAL if where == "" else f"{LOCAL}:{companion_folder(folder, where)}"
        routes.append(ModelRoute(folder.name, {stage: stages[stage] for stage in STAGES if stage in stages}))
    if not routes:
        raise FailedPreconditionError(
            f"no model under {model_root}: run `songsmith models demo` or `songsmith models pull diffrhythm2`"
        )
    return routes


def find_chart_model(model_root: Path) -> Path | None:
    """The chart model folder under `model_root` that a chart family recognises (a demo folder, named
    `*-demo`, only when there is no other; then by name), or None."""
    folders = sorted((p for p in model_root.glob("*") if p.is_dir()), key=_demo_last)
    families = CHART_FAMILIES.families()
    return next((folder for folder in folders if any(family.detect(folder) for family in families)), None)
