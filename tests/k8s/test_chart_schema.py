"""The chart lints with Helm, and every object it renders is valid Kubernetes for 1.29 and 1.33.

Built-in kinds are checked by kubernetes-validate --strict (unknown fields fail) and loaded into the
`kubernetes` client's typed models; CRD kinds have no built-in schema, so their shape is asserted
field by field in test_chart_invariants.py.
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
    crd_kinds_seen = set()
    for obj in render(values_set).objects:
        if obj["kind"] in CRD_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, kube_version, strict=True)
            crd_kinds_seen.add(obj["kind"])
            continue
        kubernetes_validate.validate(obj, kube_version, strict=True)
    assert crd_kinds_seen <= CRD_KINDS


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
