"""The chart on the cluster it meets: operator objects only where the operator's API is served, the
chart stage (Mug-Diffusion) when asked for, and several gateways only with a shared job store.

The cluster is described as `helm template --api-versions` describes it: Helm's built-in APIs plus
the operator APIs a test names. A values set that asks for an operator renders its objects when the
cluster serves the API, and refuses to render, naming the API, when it does not.
"""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.k8s.chart import (
    CERT_MANAGER_APIS,
    CHART_DIR,
    HEALTH_SERVICES,
    METRICS_PORTS,
    NAMESPACE,
    PORTS,
    RELEASE,
    SCALED_OBJECT_API,
    SERVICE_MONITOR_API,
    load_values,
    render,
    render_values,
)

OPERATOR_APIS = (SERVICE_MONITOR_API, SCALED_OBJECT_API, *CERT_MANAGER_APIS)
CHART_ON = {
    "stages": {
        "chart": {"enabled": True, "model": {"existingClaim": "mug-models", "subPath": "mug-diffusion"}}
    }
}
REPLICAS = {
    "gateway": {
        "replicaCount": 2,
        "persistence": {"accessModes": ["ReadWriteMany"]},
        "jobs": {"database": {"existingSecret": "jobs-db", "key": "url"}},
    }
}


# --- operators ----------------------------------------------------------------------------------------


def test_default_values_render_no_operator_object_even_where_operators_run() -> None:
    rendered = render_values({}, api_versions=OPERATOR_APIS)
    kinds = {obj["kind"] for obj in rendered.objects}
    assert not kinds & {"ServiceMonitor", "ScaledObject", "Certificate", "Issuer"}
    # The HPAs (built in) stay, with the adapter rules; the default render is the plain-cluster one.
    assert kinds == {obj["kind"] for obj in render("default").objects}


@pytest.mark.parametrize(
    ("values", "api", "kinds", "message"),
    [
        (
            {"metrics": {"serviceMonitor": {"enabled": True}}},
            SERVICE_MONITOR_API,
            {"ServiceMonitor"},
            "metrics.serviceMonitor.enabled needs the Prometheus Operator, whose API "
            f"{SERVICE_MONITOR_API} this cluster does not serve",
        ),
        (
            {"autoscaling": {"mode": "keda"}},
            SCALED_OBJECT_API,
            {"ScaledObject"},
            f"autoscaling.mode=keda needs KEDA, whose API {SCALED_OBJECT_API} this cluster does not serve",
        ),
        (
            {
                "mtls": {
                    "enabled": True,
                    "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
                }
            },
            CERT_MANAGER_APIS[0],
            {"Certificate"},
            f"mtls.enabled needs cert-manager, whose API {CERT_MANAGER_APIS[0]} this cluster does not serve",
        ),
    ],
)
def test_operator_objects_render_only_where_their_api_is_served(
    values: dict[str, Any], api: str, kinds: set[str], message: str
) -> None:
    served = render_values(values, api_versions=(api,))
    assert kinds <= {obj["kind"] for obj in served.objects}
    with pytest.raises(helm_python.HelmRenderError) as failure:
        render_values(values)
    assert message in str(failure.value)
    assert f"--api-versions {api}" in str(failure.value)


def test_a_chart_made_ca_needs_cert_managers_issuer_too() -> None:
    with pytest.raises(helm_python.HelmRenderError) as failure:
        render_values({"mtls": {"enabled": True}}, api_versions=(CERT_MANAGER_APIS[0],))
    assert (
        "mtls.enabled without mtls.issuerRef needs cert-manager, whose API cert-manager.io/v1/Issuer"
        in str(failure.value)
    )


@pytest.mark.parametrize("values_set", ["keda", "mtls"])
def test_operator_values_sets_still_lint_on_a_plain_cluster(values_set: str) -> None:
    # helm lint (and ct lint) render without the cluster's APIs; `fail` is reported, not fatal there.
    report = helm_python.lint(str(CHART_DIR), load_values(values_set), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []


# --- the chart stage ----------------------------------------------------------------------------------


def test_the_chart_stage_is_off_by_default() -> None:
    rendered = render("default")
    assert not [obj for obj in rendered.objects if rendered.component_of(obj) == "chart"]
    assert "SONGSMITH_CHART_TARGET" not in rendered.env("gateway")


def test_the_chart_stage_runs_from_the_claim_that_holds_its_model() -> None:
    rendered = render("chart")
    container = rendered.container("chart")
    pod = rendered.pod("chart")
    assert container["name"] == "chart"
    assert container["args"] == ["serve", "chart"]
    assert container["image"] == "ghcr.io/songsmith/songsmith-chart:0.1.0-cpu"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 50055, "metrics": 9405}
    assert container["readinessProbe"]["grpc"] == {"port": 50055, "service": "songsmith.v1.ChartService"}
    assert HEALTH_SERVICES["chart"] == "songsmith.v1.ChartService"
    env = rendered.env("chart")
    assert env["SONGSMITH_MODEL_DIR"] == "/models/mug-diffusion"
    assert env["SONGSMITH_DEVICE"] == "cpu"
    assert (env["SONGSMITH_PORT"], env["SONGSMITH_METRICS_PORT"]) == (
        str(PORTS["chart"]),
        str(METRICS_PORTS["chart"]),
    )
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/models/mug-diffusion")
    assert mount == {
        "name": "chart-model",
        "mountPath": "/models/mug-diffusion",
        "subPath": "mug-diffusion",
        "readOnly": True,
    }
    volume = next(v for v in pod["volumes"] if v["name"] == "chart-model")
    assert volume == {
        "name": "chart-model",
        "persistentVolumeClaim": {"claimName": "songsmith-chart-models", "readOnly": True},
    }
    # Nothing downloads a chart model (its weights are on no hub).
    assert "initContainers" not in pod
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"):
        assert rendered.get(kind, f"{RELEASE}-chart")
    service = rendered.get("Service", f"{RELEASE}-chart-headless")
    assert service["spec"]["clusterIP"] == "None"
    fqdn = f"{RELEASE}-chart-headless.{NAMESPACE}.svc.cluster.local"
    assert rendered.env("gateway")["SONGSMITH_CHART_TARGET"] == f"dns:///{fqdn}:50055"
    # Charts are not a song model: the routing is DiffRhythm 2's alone.
    assert list(rendered.models()) == ["diffrhythm2"]
    assert "Charts: deploy/songsmith-chart" in rendered.notes


def test_the_chart_stage_on_a_gpu() -> None:
    rendered = render_values({"stages": {"chart": {**CHART_ON["stages"]["chart"], "gpu": True}}})
    container = rendered.container("chart")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["image"].endswith("songsmith-chart:0.1.0-cuda")
    assert rendered.env("chart")["SONGSMITH_DEVICE"] == "cuda"
    assert rendered.pod("chart")["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_the_chart_model_may_be_baked_into_its_image() -> None:
    chart = {
        "enabled": True,
        "image": {"repository": "my-chart-with-mug"},
        "model": {"from": "image", "path": "/opt/mug"},
    }
    rendered = render_values({"stages": {"chart": chart}})
    assert rendered.env("chart")["SONGSMITH_MODEL_DIR"] == "/opt/mug"
    assert rendered.container("chart")["image"] == "ghcr.io/songsmith/my-chart-with-mug:0.1.0-cpu"
    assert not [v for v in rendered.pod("chart")["volumes"] if v["name"] == "chart-model"]


def test_the_chart_stage_refuses_to_start_without_a_model() -> None:
    with pytest.raises(helm_python.HelmRenderError) as failure:
        render_values({"stages": {"chart": {"enabled": True}}})
    assert (
        "stages.chart.enabled needs the Mug-Diffusion model folder (model.ckpt + model.yaml), "
        "whose weights are on no hub" in str(failure.value)
    )


# --- several gateways ---------------------------------------------------------------------------------


def test_one_gateway_keeps_sqlite_on_a_readwriteonce_volume() -> None:
    rendered = render("default")
    env = rendered.env("gateway")
    assert env["SONGSMITH_JOBS_DB"] == "/var/lib/songsmith/jobs.sqlite3"
    assert env["SONGSMITH_RESULTS_DIR"] == "/var/lib/songsmith/results"
    assert "SONGSMITH_JOB_LEASE_S" not in env
    claim = rendered.get("PersistentVolumeClaim", f"{RELEASE}-gateway-data")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    deployment = rendered.deployment("gateway")["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}


def test_several_gateways_share_postgresql_and_a_readwritemany_volume() -> None:
    rendered = render("gateway-replicas")
    env = rendered.env("gateway")
    assert env["SONGSMITH_JOBS_DB"] == {"secretKeyRef": {"name": "songsmith-jobs-db", "key": "url"}}
    assert (env["SONGSMITH_JOB_LEASE_S"], env["SONGSMITH_JOB_POLL_S"]) == ("20", "5")
    assert env["SONGSMITH_RESULTS_DIR"] == "/var/lib/songsmith/results"
    # The URL is never in the pod spec itself.
    assert "postgresql://" not in str(rendered.deployment("gateway"))
    claim = rendered.get("PersistentVolumeClaim", f"{RELEASE}-gateway-data")["spec"]
    assert (claim["accessModes"], claim["storageClassName"]) == (["ReadWriteMany"], "nfs")
    deployment = rendered.deployment("gateway")["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"]["type"] == "RollingUpdate"
    budget = rendered.get("PodDisruptionBudget", f"{RELEASE}-gateway")["spec"]
    assert budget["maxUnavailable"] == 1
    assert (
        budget["selector"]["matchLabels"] == rendered.deployment("gateway")["spec"]["selector"]["matchLabels"]
    )


def test_one_gateway_may_use_postgresql_too() -> None:
    rendered = render_values({"gateway": {"jobs": {"database": {"existingSecret": "jobs-db", "key": "dsn"}}}})
    assert rendered.env("gateway")["SONGSMITH_JOBS_DB"] == {"secretKeyRef": {"name": "jobs-db", "key": "dsn"}}


def test_an_autoscaled_gateway_counts_as_several() -> None:
    values = {"gateway": {"autoscaling": {"enabled": True}}}
    with pytest.raises(helm_python.HelmRenderError) as failure:
        render_values(values)
    assert "gateway.replicaCount > 1 (or gateway autoscaling) needs the jobs in PostgreSQL" in str(
        failure.value
    )
    rendered = render_values(
        {"gateway": {**REPLICAS["gateway"], "replicaCount": 1, "autoscaling": {"enabled": True}}}
    )
    assert rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-gateway")["spec"]["maxReplicas"] == 4


@pytest.mark.parametrize(
    ("gateway", "message"),
    [
        (
            {"replicaCount": 2},
            "gateway.replicaCount > 1 (or gateway autoscaling) needs the jobs in PostgreSQL: set "
            "gateway.jobs.database.existingSecret to a Secret holding the postgresql:// URL under "
            "gateway.jobs.database.key (SQLite serves one gateway only)",
        ),
        (
            {"replicaCount": 2, "jobs": {"database": {"existingSecret": "jobs-db"}}},
            "gateway.persistence uses ReadWriteOnce: run one gateway replica, "
            "or give it ReadWriteMany storage",
        ),
        (
            {
                "replicaCount": 2,
                "jobs": {"database": {"existingSecret": "jobs-db"}},
                "persistence": {"enabled": False},
            },
            "gateway.persistence is disabled: several gateway replicas need one ReadWriteMany volume "
            "for the results",
        ),
    ],
)
def test_several_gateways_are_refused_without_a_shared_store(gateway: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as failure:
        render_values({"gateway": gateway})
    assert message in str(failure.value)
