"""The chart lints with Helm, and every object it renders is valid Kubernetes for 1.29 and 1.33.

Every values set (the defaults and each ci/*-values.yaml) is rendered for each Kubernetes version,
on a cluster serving the operator APIs that set asks for. Built-in kinds are checked by
kubernetes-validate --strict (unknown fields fail) and loaded into the `kubernetes` client's typed
models; CRD kinds have no built-in schema, so their shape is asserted field by field in the other
test files. The default render must need no operator at all: every kind in it is built in.
"""

from __future__ import annotations

import json

import helm_python
import kubernetes_validate
import pytest
from kubernetes.client import ApiClient

from tests.k8s.chart import CHART_DIR, CRD_KINDS, VALUES_SETS, load_values, render

KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
TYPED_MODELS = {
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("v1", "Pod"): "V1Pod",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("batch/v1", "Job"): "V1Job",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "V2HorizontalPodAutoscaler",
    ("networking.k8s.io/v1", "NetworkPolicy"): "V1NetworkPolicy",
}
# The API groups every Kubernetes cluster serves for the kinds the chart uses ("" is the core group).
BUILT_IN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}


def test_every_ci_values_file_is_a_values_set() -> None:
    files = {path.name for path in (CHART_DIR / "ci").iterdir()}
    assert files == {f"{name}-values.yaml" for name in VALUES_SETS if name != "default"}
    assert len(VALUES_SETS) >= 12


@pytest.mark.parametrize("values_set", VALUES_SETS)
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_helm_lint_is_clean(values_set: str, kube_version: str) -> None:
    # Strict: warnings (deprecated APIs for that Kubernetes version included) fail too.
    options = {"strict": True, "namespace": "songs", "kube_version": f"v{kube_version}"}
    report = helm_python.lint(str(CHART_DIR), load_values(values_set), **options)
    assert report["errors"] == []
    findings = [m for m in report["messages"] if m["severity"] >= 2]
    assert findings == []


@pytest.mark.parametrize("values_set", VALUES_SETS)
@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_every_builtin_object_passes_strict_validation(values_set: str, kube_version: str) -> None:
    rendered = render(values_set, f"v{kube_version}")
    crd_kinds_seen = set()
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, kube_version, strict=True)
            crd_kinds_seen.add(obj["kind"])
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)
    assert crd_kinds_seen <= CRD_KINDS


@pytest.mark.parametrize("kube_version", KUBERNETES_VERSIONS)
def test_the_default_render_needs_no_operator(kube_version: str) -> None:
    # A plain cluster: no Prometheus Operator, no KEDA, no cert-manager. Every object of the default
    # render is of a built-in kind that Kubernetes has a schema for.
    rendered = render("default", f"v{kube_version}")
    groups = set()
    for obj in rendered.objects:
        group = obj["apiVersion"].rpartition("/")[0]
        assert group in BUILT_IN_GROUPS, (obj["apiVersion"], obj["kind"])
        assert kubernetes_validate.validate(obj, kube_version, strict=True)
        groups.add(group)
    assert {"", "apps", "policy", "autoscaling"} <= groups


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_every_builtin_object_loads_into_the_typed_client_models(values_set: str) -> None:
    client = ApiClient()
    for obj in render(values_set).objects:
        if obj["kind"] in CRD_KINDS:
            continue
        model_name = TYPED_MODELS[(obj["apiVersion"], obj["kind"])]
        model = client.deserialize(json.dumps(obj), model_name, "application/json")
        assert type(model).__name__ == model_name
        # Nothing is lost on the way in: the typed model knows every field the chart sets.
        assert client.sanitize_for_serialization(model) == obj


def test_validation_rejects_a_broken_manifest() -> None:
    deployment = next(o for o in render("default").objects if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.33.0", strict=True)
