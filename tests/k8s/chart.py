"""Render the Songsmith chart with real Helm (helm-python-sdk, in-process) and look objects up."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml
from helm_python import _native as helm_native

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "k8s" / "helm" / "songsmith"
RELEASE = "songsmith"
NAMESPACE = "songs"
STAGES = ("tokenizer", "style", "diffusion", "vocoder")
COMPONENTS = (*STAGES, "gateway")
GPU_STAGES = ("diffusion", "vocoder")
# The values files shipped in the chart's ci/ folder, plus the chart defaults ("default").
VALUES_SETS = (
    "default",
    *sorted(path.name.removesuffix("-values.yaml") for path in CHART_DIR.glob("ci/*-values.yaml")),
)
# The operator APIs a values set needs the cluster to serve (as helm template --api-versions gives them).
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
SCALED_OBJECT_API = "keda.sh/v1alpha1/ScaledObject"
CERT_MANAGER_APIS = ("cert-manager.io/v1/Certificate", "cert-manager.io/v1/Issuer")
CLUSTER_APIS: dict[str, tuple[str, ...]] = {
    "keda": (SCALED_OBJECT_API, SERVICE_MONITOR_API),
    "mtls": CERT_MANAGER_APIS,
}
# Kinds of the CRDs the chart renders; they have no built-in schema.
CRD_KINDS = {"ScaledObject", "ServiceMonitor", "Certificate", "Issuer"}
HEALTH_SERVICES = {
    "tokenizer": "songsmith.v1.LyricTokenizerService",
    "style": "songsmith.v1.StyleEncoderService",
    "diffusion": "songsmith.v1.DiffusionService",
    "vocoder": "songsmith.v1.VocoderService",
    "chart": "songsmith.v1.ChartService",
    "gateway": "songsmith.v1.SongService",
}
PORTS = {
    "gateway": 50050,
    "tokenizer": 50051,
    "style": 50052,
    "diffusion": 50053,
    "vocoder": 50054,
    "chart": 50055,
}
METRICS_PORTS = {
    "gateway": 9400,
    "tokenizer": 9401,
    "style": 9402,
    "diffusion": 9403,
    "vocoder": 9404,
    "chart": 9405,
}


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
        """The Deployment of a component: the gateway, or a stage Deployment by its name after the
        release (`diffusion`, `diffusion-musicgen-small`)."""
        return self.get("Deployment", f"{RELEASE}-{component}")

    def pod(self, component: str) -> dict[str, Any]:
        """The pod spec of a component's Deployment."""
        return self.deployment(component)["spec"]["template"]["spec"]

    def container(self, component: str) -> dict[str, Any]:
        """The main container of a component's pod (its only container)."""
        (container,) = self.pod(component)["containers"]
        return container

    def env(self, component: str) -> dict[str, Any]:
        """The main container's environment as name -> value (or valueFrom)."""
        return {e["name"]: e.get("value", e.get("valueFrom")) for e in self.container(component)["env"]}

    def component_of(self, obj: dict[str, Any]) -> str | None:
        """The app.kubernetes.io/component label of an object."""
        return obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")

    def stage_of(self, obj: dict[str, Any]) -> str | None:
        """The songsmith.io/stage label of an object (the stage a Deployment of a model runs)."""
        return obj["metadata"].get("labels", {}).get("songsmith.io/stage")

    def stage_deployments(self) -> list[str]:
        """The stage Deployments' component names, in render order."""
        return [self.component_of(d) for d in self.of_kind("Deployment") if self.stage_of(d)]

    def models(self) -> dict[str, dict[str, str]]:
        """The gateway's SONGSMITH_MODELS routing: model -> stage -> target (in order)."""
        return yaml.safe_load(self.env("gateway")["SONGSMITH_MODELS"])


def load_values(name: str) -> dict[str, Any]:
    """The values of a named set: {} for the defaults, else ci/<name>-values.yaml parsed as Helm does."""
    if name == "default":
        return {}
    return helm_python.values_from_yaml((CHART_DIR / "ci" / f"{name}-values.yaml").read_text())


@functools.cache
def chart() -> helm_python.Chart:
    """The chart, loaded once per test session."""
    return helm_python.Chart.load(str(CHART_DIR))


def template(
    values: dict[str, Any],
    release: str,
    namespace: str,
    api_versions: tuple[str, ...] = (),
    kube_version: str | None = None,
) -> dict[str, str]:
    """`helm template` in-process: the rendered manifests by template path.

    The cluster is described as `helm template --api-versions ... --kube-version ...` would: Helm's
    built-in API versions plus `api_versions`. `Chart.render` has no parameter for either, so this
    calls the SDK's render entry point, which takes them among its options, directly."""
    options: dict[str, Any] = {"name": release, "namespace": namespace}
    if api_versions:
        options["api_versions"] = list(api_versions)
    if kube_version:
        options["kube_version"] = kube_version
    rendered = helm_native.call_string("helm_render", chart()._raw(), json.dumps(values), json.dumps(options))
    return json.loads(rendered)


def render_values(
    values: dict[str, Any],
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    api_versions: tuple[str, ...] = (),
    kube_version: str | None = None,
) -> Rendered:
    """Render the chart with `values` (as release `songsmith` in namespace `songs` unless told), on a
    cluster serving the built-in APIs plus `api_versions`."""
    manifests = template(values, release, namespace, api_versions, kube_version)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return Rendered(values=values, objects=tuple(objects), notes=notes)


@functools.cache
def render(name: str, kube_version: str | None = None) -> Rendered:
    """The chart rendered with a named values set on a cluster serving the APIs it needs (cached:
    rendering is pure)."""
    return render_values(
        load_values(name), api_versions=CLUSTER_APIS.get(name, ()), kube_version=kube_version
    )


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
