"""Render the Songsmith chart with real Helm (helm-python-sdk, in-process) and look objects up."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "k8s" / "helm" / "songsmith"
RELEASE = "songsmith"
NAMESPACE = "songs"
STAGES = ("tokenizer", "style", "diffusion", "vocoder")
COMPONENTS = (*STAGES, "gateway")
GPU_STAGES = ("diffusion", "vocoder")
# The values files shipped in the chart's ci/ folder, plus the chart defaults ("default").
VALUES_SETS = ("default", "cpu", "keda", "minimal", "mtls")
# Kinds of the CRDs the chart renders; they have no built-in schema.
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "Certificate", "Issuer"}
HEALTH_SERVICES = {
    "tokenizer": "songsmith.v1.LyricTokenizerService",
    "style": "songsmith.v1.StyleEncoderService",
    "diffusion": "songsmith.v1.DiffusionService",
    "vocoder": "songsmith.v1.VocoderService",
    "gateway": "songsmith.v1.SongService",
}
PORTS = {"gateway": 50050, "tokenizer": 50051, "style": 50052, "diffusion": 50053, "vocoder": 50054}
METRICS_PORTS = {"gateway": 9400, "tokenizer": 9401, "style": 9402, "diffusion": 9403, "vocoder": 9404}


@dataclass(frozen=True)
class Rendered:
    """The objects of one `helm template`, with the values that produced them."""

    values: dict[str, Any]
    objects: tuple[dict[str, Any], ...]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every rendered object of `kind`."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        """The one object of `kind` called `name` (fails the test when absent)."""
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def deployment(self, component: str) -> dict[str, Any]:
        """The Deployment of a component (gateway or stage)."""
        return self.get("Deployment", f"{RELEASE}-{component}")

    def container(self, component: str) -> dict[str, Any]:
        """The main container of a component's pod."""
        containers = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        return next(c for c in containers if c["name"] == component)

    def env(self, component: str) -> dict[str, Any]:
        """The main container's environment as name -> value (or valueFrom)."""
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in self.container(component)["env"]}

    def component_of(self, obj: dict[str, Any]) -> str | None:
        """The app.kubernetes.io/component label of an object."""
        return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")


def load_values(name: str) -> dict[str, Any]:
    """The values of a named set: {} for the defaults, else ci/<name>-values.yaml parsed as Helm does."""
    if name == "default":
        return {}
    return helm_python.values_from_yaml((CHART_DIR / "ci" / f"{name}-values.yaml").read_text())


@functools.cache
def chart() -> helm_python.Chart:
    """The chart, loaded once per test session."""
    return helm_python.Chart.load(str(CHART_DIR))


def render_values(values: dict[str, Any], release: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
    """Render the chart with `values` (as release `songsmith` in namespace `songs` unless told)."""
    manifests = chart().render(values, name=release, namespace=namespace)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(values=values, objects=tuple(objects), notes=notes)


@functools.cache
def render(name: str) -> Rendered:
    """The chart rendered with a named values set (cached: rendering is pure)."""
    return render_values(load_values(name))


def containers_of(pod_spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container of a pod spec, init containers included."""
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec["containers"]


def pod_specs(rendered: Rendered) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment, Job and bare Pod (the `helm test` pod)."""
    for obj in rendered.objects:
        if obj["kind"] in {"Deployment", "Job"}:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield obj["metadata"]["name"], obj["spec"]
