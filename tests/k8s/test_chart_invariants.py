"""What the rendered chart must guarantee, for the defaults and every values file in ci/.

Probes (ready when SERVING, alive when answering), resources and GPU placement, drain timing,
headless Services, one autoscaler and one PDB per Deployment (HPA on per-pod in-flight metrics or
KEDA), tracing, metrics, security contexts, NetworkPolicy, mTLS certificates and the gateway's
tokens from a Secret. CRD objects (ScaledObject, ServiceMonitor, Certificate, Issuer) have no
built-in schema, so their shape is asserted here field by field.
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import re
from typing import Any

import helm_python
import pytest
import yaml

from services.runtime.config import ServerConfig
from tests.k8s.chart import (
    HEALTH_SERVICES,
    METRICS_PORTS,
    NAMESPACE,
    PORTS,
    RELEASE,
    REPO,
    STAGES,
    VALUES_SETS,
    Rendered,
    containers_of,
    pod_specs,
    render,
    render_values,
)

AUTOSCALED_SETS = tuple(name for name in VALUES_SETS if name != "minimal")
HPA_SETS = tuple(name for name in AUTOSCALED_SETS if name != "keda")
# Sets whose GPU stages keep the chart's GPU defaults.
GPU_DEFAULT_SETS = ("default", "keda", "mtls", "chart", "volume-per-stage", "shared-volume", "diffrhythm1")


def settings_of(config_cls: type[ServerConfig]) -> set[str]:
    """The SONGSMITH_* variables a config dataclass reads."""
    return {"SONGSMITH_" + spec.name.upper() for spec in dataclasses.fields(config_cls)}


def settings_in(module: str, class_name: str) -> set[str]:
    """The SONGSMITH_* variables of a ServerConfig subclass, read from its source (importing the
    service would import torch: seconds per test run for a list of field names). A stage whose
    server is not in this tree yet reads at least what every stage reads (ServerConfig)."""
    if not (REPO / module).exists():
        return settings_of(ServerConfig)
    tree = ast.parse((REPO / module).read_text())
    config = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == class_name)
    assert [base.id for base in config.bases] == ["ServerConfig"]
    fields = {n.target.id for n in config.body if isinstance(n, ast.AnnAssign)}
    return settings_of(ServerConfig) | {"SONGSMITH_" + name.upper() for name in fields}


# What each service reads: the fields of its own config class.
SETTINGS = {
    "gateway": settings_in("gateway/server.py", "GatewayConfig"),
    "tokenizer": settings_in("services/tokenizer/server.py", "TokenizerConfig"),
    "style": settings_in("services/style/server.py", "StyleConfig"),
    "diffusion": settings_in("services/diffusion/server.py", "DiffusionConfig"),
    "vocoder": settings_in("services/vocoder/server.py", "VocoderConfig"),
    "chart": settings_in("services/chart/server.py", "ChartConfig"),
}


def components(rendered: Rendered) -> list[str]:
    """Every Deployment of a stage, then the gateway (their names after the release)."""
    return [*rendered.stage_deployments(), "gateway"]


def stage_of(rendered: Rendered, component: str) -> str:
    """The stage a component runs (the gateway is its own)."""
    return rendered.stage_of(rendered.deployment(component)) or component


def selector_labels(component: str) -> dict[str, str]:
    """The labels that select one component's pods."""
    return {
        "app.kubernetes.io/name": "songsmith",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": component,
    }


def volume_for_mount(pod_spec: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any]:
    """The pod volume mounted at `path` in `container`."""
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == path)
    return next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])


# --- every component: probes, drain, resources, placement --------------------------------------------


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_each_component_has_one_deployment_serving_its_ports(values_set: str) -> None:
    rendered = render(values_set)
    assert rendered.stage_deployments()[: len(STAGES)] == list(STAGES)
    for component in components(rendered):
        stage = stage_of(rendered, component)
        deployment = rendered.deployment(component)
        assert deployment["spec"]["selector"]["matchLabels"] == selector_labels(component)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector_labels(component).items() <= pod_labels.items()
        container = rendered.container(component)
        assert container["name"] == stage
        assert container["args"] == ["serve", stage]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": PORTS[stage], "metrics": METRICS_PORTS[stage]}
        env = rendered.env(component)
        assert env["SONGSMITH_HOST"] == "0.0.0.0"
        assert env["SONGSMITH_PORT"] == str(PORTS[stage])
        assert env["SONGSMITH_METRICS_PORT"] == str(METRICS_PORTS[stage])


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_ready_means_serving_and_alive_means_answering(values_set: str) -> None:
    rendered = render(values_set)
    mtls = bool(rendered.values.get("mtls", {}).get("enabled"))
    for component in components(rendered):
        stage = stage_of(rendered, component)
        container = rendered.container(component)
        check = ["songsmith-healthcheck", f"--port={PORTS[stage]}", f"--service={HEALTH_SERVICES[stage]}"]
        if mtls and stage != "gateway":
            server_name = f"{RELEASE}-{component}-headless"
            check += ["--tls-dir=/etc/songsmith/tls", f"--server-name={server_name}"]
        for probe_name in ("startupProbe", "readinessProbe"):
            probe = container[probe_name]
            if mtls and stage != "gateway":
                # The kubelet's gRPC probe cannot present a client certificate.
                assert probe["exec"]["command"] == check
                assert "grpc" not in probe
            else:
                assert probe["grpc"] == {"port": PORTS[stage], "service": HEALTH_SERVICES[stage]}
        # Liveness is another check: a loading or draining pod (NOT_SERVING) is alive.
        assert container["livenessProbe"]["exec"]["command"] == [*check, "--alive"]
        assert container["livenessProbe"] != container["readinessProbe"]
        startup = container["startupProbe"]
        liveness = container["livenessProbe"]
        # Model loading is covered by the startup probe, so liveness can stay strict.
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
        assert liveness["failureThreshold"] * liveness["periodSeconds"] <= 120
        assert liveness["timeoutSeconds"] >= 5
    diffusion = rendered.container("diffusion")["startupProbe"]
    assert diffusion["periodSeconds"] * diffusion["failureThreshold"] >= 900


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_termination_grace_covers_drain_and_the_longest_song(values_set: str) -> None:
    rendered = render(values_set)
    longest_job = (rendered.values.get("global", {}).get("longestJobSeconds")) or 480
    for component in components(rendered):
        pod = rendered.pod(component)
        env = rendered.env(component)
        grace = float(env["SONGSMITH_SHUTDOWN_GRACE_S"])
        drain_delay = float(env["SONGSMITH_DRAIN_DELAY_S"])
        assert grace >= longest_job
        assert float(env["SONGSMITH_MAX_CONNECTION_AGE_GRACE_S"]) >= longest_job
        assert pod["terminationGracePeriodSeconds"] > drain_delay + grace
        assert drain_delay > 0


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_every_container_has_requests_and_a_memory_limit(values_set: str) -> None:
    for name, pod_spec in pod_specs(render(values_set)):
        for container in containers_of(pod_spec):
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), (name, container["name"])
            assert "memory" in resources["limits"], (name, container["name"])


def assert_on_gpu(rendered: Rendered, component: str, resource: str = "nvidia.com/gpu") -> None:
    """The component asks for one GPU in limits, lands on GPU nodes and runs the CUDA image."""
    pod = rendered.pod(component)
    container = rendered.container(component)
    assert container["resources"]["limits"][resource] == "1"
    assert resource not in container["resources"].get("requests", {})
    assert container["image"].endswith("-cuda")
    assert rendered.env(component)["SONGSMITH_DEVICE"] == "cuda"
    assert pod["nodeSelector"]
    assert pod["tolerations"]


def assert_on_cpu(rendered: Rendered, component: str) -> None:
    """The component asks for no GPU and stays off GPU nodes (no GPU taint toleration)."""
    pod = rendered.pod(component)
    container = rendered.container(component)
    assert not any("gpu" in name for name in container["resources"].get("limits", {}))
    assert not any("gpu" in t.get("key", "") for t in pod.get("tolerations", []))
    assert not any("gpu" in label for label in pod.get("nodeSelector", {}))
    assert container["image"].endswith("-cpu")
    if stage_of(rendered, component) not in ("tokenizer", "gateway"):
        assert rendered.env(component)["SONGSMITH_DEVICE"] == "cpu"


@pytest.mark.parametrize("values_set", GPU_DEFAULT_SETS)
def test_gpu_stages_ask_for_a_gpu_in_limits_and_tolerate_gpu_nodes(values_set: str) -> None:
    rendered = render(values_set)
    for component in components(rendered):
        if stage_of(rendered, component) in ("diffusion", "vocoder"):
            assert_on_gpu(rendered, component)
            pod = rendered.pod(component)
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
                "tolerations"
            ]
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        else:
            assert_on_cpu(rendered, component)
    assert rendered.env("diffusion")["SONGSMITH_DTYPE"] == "bfloat16"


@pytest.mark.parametrize("values_set", ["cpu", "minimal"])
def test_cpu_values_need_no_gpu_anywhere(values_set: str) -> None:
    rendered = render(values_set)
    for name, pod_spec in pod_specs(rendered):
        assert "nodeSelector" not in pod_spec, name
        assert "tolerations" not in pod_spec, name
        for container in containers_of(pod_spec):
            assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), name
    for component in components(rendered):
        assert_on_cpu(rendered, component)
    # CPU sampling runs float32 whatever the GPU precision is.
    assert rendered.env("diffusion")["SONGSMITH_DTYPE"] == "float32"


def test_gpu_placement_comes_from_the_gpu_values() -> None:
    # Helm merges maps with the defaults: null removes the default GPU node label.
    gpu = {
        "resourceName": "amd.com/gpu",
        "nodeSelector": {"nvidia.com/gpu.present": None, "cloud.example.com/accelerator": "mi300"},
        "tolerations": [{"key": "accelerator", "operator": "Equal", "value": "amd", "effect": "NoSchedule"}],
        "runtimeClassName": "rocm",
    }
    own_toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    values = {
        "gpu": gpu,
        "stages": {
            "vocoder": {"nodeSelector": {"pool": "decoders"}, "tolerations": [own_toleration]},
            "style": {"gpu": True},
        },
    }
    rendered = render_values(values)
    for component in ("style", "diffusion", "vocoder"):
        assert_on_gpu(rendered, component, resource="amd.com/gpu")
        pod = rendered.pod(component)
        assert pod["runtimeClassName"] == "rocm"
        assert "nvidia.com/gpu" not in str(pod)
    assert rendered.pod("diffusion")["tolerations"] == gpu["tolerations"]
    assert rendered.pod("diffusion")["nodeSelector"] == {"cloud.example.com/accelerator": "mi300"}
    # A stage's own placement comes on top of the GPU's.
    assert rendered.pod("vocoder")["tolerations"] == [*gpu["tolerations"], own_toleration]
    assert rendered.pod("vocoder")["nodeSelector"] == {
        "cloud.example.com/accelerator": "mi300",
        "pool": "decoders",
    }
    assert_on_cpu(rendered, "tokenizer")
    assert_on_cpu(rendered, "gateway")


def test_no_template_names_a_gpu_vendor() -> None:
    templates = (REPO / "k8s" / "helm" / "songsmith" / "templates").rglob("*")
    for path in templates:
        if path.is_file():
            assert "nvidia" not in path.read_text().lower(), path


def test_batching_settings_reach_the_generation_stage_and_the_vocoder() -> None:
    rendered = render_values(
        {
            "stages": {
                "diffusion": {"batching": {"maxBatch": 4}, "grpc": {"maxConcurrent": 6, "maxQueue": 3}},
                "vocoder": {"batching": {"maxWindowBatch": 12}},
            }
        }
    )
    diffusion, vocoder = rendered.env("diffusion"), rendered.env("vocoder")
    assert (diffusion["SONGSMITH_MAX_BATCH"], diffusion["SONGSMITH_MAX_CONCURRENT"]) == ("4", "6")
    assert diffusion["SONGSMITH_MAX_QUEUE"] == "3"
    assert vocoder["SONGSMITH_MAX_WINDOW_BATCH"] == "12"
    assert "SONGSMITH_MAX_BATCH" not in vocoder and "SONGSMITH_MAX_WINDOW_BATCH" not in diffusion
    defaults = render("default")
    assert defaults.env("diffusion")["SONGSMITH_MAX_BATCH"] == "8"
    assert defaults.env("vocoder")["SONGSMITH_MAX_WINDOW_BATCH"] == "0"


def test_a_gpu_limit_given_in_resources_is_kept() -> None:
    rendered = render_values({"stages": {"diffusion": {"resources": {"limits": {"nvidia.com/gpu": 2}}}}})
    assert rendered.container("diffusion")["resources"]["limits"]["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_environment_names_are_settings_the_services_read(values_set: str) -> None:
    rendered = render(values_set)
    for component in components(rendered):
        stage = stage_of(rendered, component)
        names = {name for name in rendered.env(component) if name.startswith("SONGSMITH_")}
        assert names <= SETTINGS[stage], sorted(names - SETTINGS[stage])
        pod = rendered.pod(component)
        # Service links would add e.g. SONGSMITH_PORT=tcp://10.0.0.1:50050 for a Service named songsmith.
        assert pod["enableServiceLinks"] is False
        assert rendered.env(component)["HF_HUB_OFFLINE"] == "1"


# --- Services ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_stages_have_headless_services_the_gateway_dials_round_robin(values_set: str) -> None:
    rendered = render(values_set)
    targets = {target for stages in rendered.models().values() for target in stages.values()}
    for component in rendered.stage_deployments():
        stage = stage_of(rendered, component)
        service = rendered.get("Service", f"{RELEASE}-{component}-headless")
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == selector_labels(component)
        ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
        assert ports == {"grpc": (PORTS[stage], "grpc"), "metrics": (METRICS_PORTS[stage], "metrics")}
        fqdn = f"{RELEASE}-{component}-headless.{NAMESPACE}.svc.cluster.local"
        if stage == "chart":
            assert rendered.env("gateway")["SONGSMITH_CHART_TARGET"] == f"dns:///{fqdn}:{PORTS[stage]}"
        else:
            assert f"dns:///{fqdn}:{PORTS[stage]}" in targets
    gateway = rendered.get("Service", f"{RELEASE}-gateway")
    assert gateway["spec"].get("clusterIP") != "None"
    assert gateway["spec"]["selector"] == selector_labels("gateway")
    assert {p["name"]: p["port"] for p in gateway["spec"]["ports"]} == {"grpc": 50050, "metrics": 9400}


# --- autoscaling and disruption budgets ---------------------------------------------------------------


def autoscalers_by_target(rendered: Rendered) -> dict[str, list[dict[str, Any]]]:
    """HPAs and ScaledObjects of a render, keyed by the Deployment they scale."""
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in rendered.objects:
        if obj["kind"] in {"HorizontalPodAutoscaler", "ScaledObject"}:
            target = obj["spec"]["scaleTargetRef"]
            assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
            found.setdefault(target["name"], []).append(obj)
    return found


@pytest.mark.parametrize("values_set", AUTOSCALED_SETS)
def test_each_stage_deployment_has_exactly_one_autoscaler(values_set: str) -> None:
    rendered = render(values_set)
    found = autoscalers_by_target(rendered)
    assert set(found) == {f"{RELEASE}-{component}" for component in rendered.stage_deployments()}
    kind = "ScaledObject" if values_set == "keda" else "HorizontalPodAutoscaler"
    for component in rendered.stage_deployments():
        assert [obj["kind"] for obj in found[f"{RELEASE}-{component}"]] == [kind]
        # The autoscaler owns the replica count; a replicas field would fight it on every upgrade.
        assert "replicas" not in rendered.deployment(component)["spec"]


@pytest.mark.parametrize("values_set", HPA_SETS)
def test_hpas_scale_on_in_flight_calls_per_pod_never_on_utilization(values_set: str) -> None:
    rendered = render(values_set)
    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        stage = rendered.stage_of(hpa)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["minReplicas"] >= 1
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Pods"}
        metrics = {m["pods"]["metric"]["name"]: m["pods"] for m in hpa["spec"]["metrics"]}
        assert set(metrics) == {"songsmith_requests_in_flight", "songsmith_queue_depth"}
        for pods_metric in metrics.values():
            assert pods_metric["metric"]["selector"] == {"matchLabels": {"stage": stage}}
            assert pods_metric["target"]["type"] == "AverageValue"
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 120
    rules = rendered.get("ConfigMap", f"{RELEASE}-prometheus-adapter-rules")["data"]["config.yaml"]
    adapter = yaml.safe_load(rules)["rules"]
    assert [rule["name"]["as"] for rule in adapter] == [
        "songsmith_requests_in_flight",
        "songsmith_queue_depth",
    ]
    for rule in adapter:
        assert rule["resources"]["overrides"] == {
            "namespace": {"resource": "namespace"},
            "pod": {"resource": "pod"},
        }
        assert "<<.Series>>{<<.LabelMatchers>>}" in rule["metricsQuery"]
        assert "by (<<.GroupBy>>)" in rule["metricsQuery"]


def test_keda_scaled_objects_query_the_load_of_their_deployment_from_prometheus() -> None:
    rendered = render("keda")
    scaled_objects = rendered.of_kind("ScaledObject")
    assert len(scaled_objects) == len(STAGES)
    assert not rendered.of_kind("HorizontalPodAutoscaler")
    assert not rendered.of_kind("ConfigMap")
    for scaled in scaled_objects:
        component = rendered.component_of(scaled)
        stage = rendered.stage_of(scaled)
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        assert scaled["metadata"]["namespace"] == NAMESPACE
        spec = scaled["spec"]
        assert set(spec) == {
            "scaleTargetRef",
            "minReplicaCount",
            "maxReplicaCount",
            "pollingInterval",
            "cooldownPeriod",
            "advanced",
            "triggers",
        }
        assert spec["scaleTargetRef"]["name"] == f"{RELEASE}-{component}"
        assert isinstance(spec["minReplicaCount"], int) and spec["minReplicaCount"] >= 1
        assert spec["maxReplicaCount"] > spec["minReplicaCount"]
        assert spec["pollingInterval"] == 10
        assert isinstance(spec["cooldownPeriod"], int)
        behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 120
        assert behavior["scaleUp"]["policies"] == [{"type": "Pods", "value": 2, "periodSeconds": 60}]
        queries = []
        for trigger in spec["triggers"]:
            assert trigger["type"] == "prometheus"
            assert trigger["metricType"] == "AverageValue"
            metadata = trigger["metadata"]
            assert set(metadata) == {"serverAddress", "query", "threshold"}
            assert metadata["serverAddress"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
            assert re.fullmatch(r"\d+(\.\d+)?|\d+m", metadata["threshold"])
            queries.append(metadata["query"])
        pods = f"{RELEASE}-{component}-[a-z0-9]+-[a-z0-9]+"
        assert queries == [
            f'sum(songsmith_requests_in_flight{{namespace="{NAMESPACE}",stage="{stage}",pod=~"{pods}"}})',
            f'sum(songsmith_queue_depth{{namespace="{NAMESPACE}",stage="{stage}",pod=~"{pods}"}})',
        ]
    diffusion = rendered.get("ScaledObject", f"{RELEASE}-diffusion")["spec"]
    assert (diffusion["minReplicaCount"], diffusion["maxReplicaCount"]) == (2, 16)


def test_keda_pod_patterns_tell_two_deployments_of_a_stage_apart() -> None:
    values = {**render("musicgen").values, "autoscaling": {"mode": "keda"}}
    rendered = render_values(values, api_versions=("keda.sh/v1alpha1/ScaledObject",))
    patterns = {
        rendered.component_of(s): re.search(r'pod=~"([^"]+)"', s["spec"]["triggers"][0]["metadata"]["query"])[
            1
        ]
        for s in rendered.of_kind("ScaledObject")
    }
    pods = {
        "diffusion": "songsmith-diffusion-7d9f8c6b5-x2x4z",
        "diffusion-musicgen-small": "songsmith-diffusion-musicgen-small-6c5b4-k8s9q",
    }
    for component, pod in pods.items():
        matching = {name for name, pattern in patterns.items() if re.fullmatch(pattern, pod)}
        assert matching == {component}


def test_without_autoscaling_the_deployments_keep_their_replica_count() -> None:
    rendered = render("minimal")
    assert autoscalers_by_target(rendered) == {}
    for component in components(rendered):
        assert rendered.deployment(component)["spec"]["replicas"] == 1


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_each_component_has_one_pod_disruption_budget(values_set: str) -> None:
    rendered = render(values_set)
    budgets = rendered.of_kind("PodDisruptionBudget")
    assert len(budgets) == len(components(rendered))
    for component in components(rendered):
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"] == selector_labels(component)]
        assert len(matching) == 1
        assert matching[0]["spec"]["maxUnavailable"] == 1
        assert "minAvailable" not in matching[0]["spec"]


# --- tracing and metrics ------------------------------------------------------------------------------


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_tracing_goes_to_jaeger_over_otlp(values_set: str) -> None:
    rendered = render(values_set)
    tracing_on = rendered.values.get("tracing", {}).get("enabled", True)
    jaeger_on = rendered.values.get("jaeger", {}).get("enabled", False)
    for component in components(rendered):
        env = rendered.env(component)
        assert env["OTEL_SERVICE_NAME"] == f"songsmith-{component}"
        if not tracing_on:
            assert env["OTEL_TRACES_EXPORTER"] == "none"
            assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
            continue
        assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
        assert "k8s.pod.name=$(POD_NAME)" in env["OTEL_RESOURCE_ATTRIBUTES"]
        if jaeger_on:
            assert (
                env["OTEL_EXPORTER_OTLP_ENDPOINT"]
                == f"http://{RELEASE}-jaeger.{NAMESPACE}.svc.cluster.local:4317"
            )
        else:
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317")
    jaeger_deployments = [
        d for d in rendered.of_kind("Deployment") if d["metadata"]["name"] == f"{RELEASE}-jaeger"
    ]
    assert len(jaeger_deployments) == int(jaeger_on)
    if jaeger_on:
        service = rendered.get("Service", f"{RELEASE}-jaeger")
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {
            "otlp-grpc": 4317,
            "otlp-http": 4318,
            "ui": 16686,
        }


def test_service_monitor_scrapes_every_component_metrics_port() -> None:
    rendered = render("keda")
    (monitor,) = rendered.of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    spec = monitor["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "15s", "scrapeTimeout": "10s"}
    ]
    wanted = spec["selector"]["matchLabels"]
    scraped = [s for s in rendered.of_kind("Service") if wanted.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped} == set(
        components(rendered)
    )
    for service in scraped:
        assert "metrics" in {p["name"] for p in service["spec"]["ports"]}
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_pods_carry_scrape_annotations_for_prometheus_without_the_operator(values_set: str) -> None:
    rendered = render(values_set)
    wanted = rendered.values.get("metrics", {}).get("scrapeAnnotations", True)
    for component in components(rendered):
        annotations = rendered.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        scrape = {k: v for k, v in annotations.items() if k.startswith("prometheus.io/")}
        stage = stage_of(rendered, component)
        expected = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORTS[stage]),
            "prometheus.io/path": "/metrics",
        }
        assert scrape == (expected if wanted else {})


# --- security -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_every_pod_runs_unprivileged_on_a_read_only_root(values_set: str) -> None:
    rendered = render(values_set)
    for name, pod_spec in pod_specs(rendered):
        pod_security = pod_spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] != 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod_spec["automountServiceAccountToken"] is False, name
        for container in containers_of(pod_spec):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert security["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert security["privileged"] is False, (name, container["name"])
            assert security["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert security["runAsNonRoot"] is True, (name, container["name"])
            # Writable scratch space comes from emptyDir volumes: /tmp everywhere (the wait loop
            # writes nothing), $HOME with the caches in the services.
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if container["name"] != "wait-for-models":
                assert "/tmp" in mounts, (name, container["name"])
            if container["name"] in HEALTH_SERVICES:
                assert "/home/songsmith" in mounts, (name, container["name"])
        volumes = {v["name"]: v for v in pod_spec["volumes"]}
        assert "emptyDir" in volumes["tmp"], name


@pytest.mark.parametrize("values_set", [name for name in VALUES_SETS if name != "minimal"])
def test_network_policy_lets_only_the_gateway_reach_the_stages(values_set: str) -> None:
    rendered = render(values_set)
    policies = {rendered.component_of(p): p for p in rendered.of_kind("NetworkPolicy")}
    assert set(components(rendered)) <= set(policies)
    for component in rendered.stage_deployments():
        spec = policies[component]["spec"]
        assert spec["podSelector"] == {"matchLabels": selector_labels(component)}
        assert spec["policyTypes"] == ["Ingress"]
        grpc_rules = [r for r in spec["ingress"] if {"port": "grpc", "protocol": "TCP"} in r["ports"]]
        assert grpc_rules == [
            {
                "from": [{"podSelector": {"matchLabels": selector_labels("gateway")}}],
                "ports": [{"port": "grpc", "protocol": "TCP"}],
            }
        ]
        for rule in spec["ingress"]:
            assert rule.get("from"), "every stage ingress rule names its peers"
            if rule is not grpc_rules[0]:
                assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # The model job, where there is one, serves nothing.
    assert ("models" in policies) == bool(rendered.of_kind("Job"))
    if "models" in policies:
        models = policies["models"]["spec"]
        assert models["policyTypes"] == ["Ingress"] and "ingress" not in models
    gateway_grpc = next(r for r in policies["gateway"]["spec"]["ingress"] if r["ports"][0]["port"] == "grpc")
    if values_set == "mtls":
        assert gateway_grpc["from"] == [
            {"namespaceSelector": {"matchLabels": {"songsmith.io/client": "true"}}},
            {"podSelector": {"matchLabels": selector_labels("test")}},
        ]
    else:
        assert "from" not in gateway_grpc


def test_minimal_values_render_no_network_policy() -> None:
    assert not render("minimal").of_kind("NetworkPolicy")


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_gateway_reads_bearer_tokens_from_a_secret(values_set: str) -> None:
    rendered = render(values_set)
    pod = rendered.pod("gateway")
    container = rendered.container("gateway")
    tokens_file = rendered.env("gateway")["SONGSMITH_AUTH_TOKENS_FILE"]
    directory, key = tokens_file.rsplit("/", 1)
    secret_volume = volume_for_mount(pod, container, directory)["secret"]
    assert secret_volume["items"] == [{"key": key, "path": key}]
    existing = rendered.values.get("gateway", {}).get("auth", {}).get("existingSecret")
    if existing:
        assert secret_volume["secretName"] == existing
        assert not rendered.of_kind("Secret")
        return
    secret = rendered.get("Secret", secret_volume["secretName"])
    assert key in secret["data"]
    # No token appears in plain text anywhere in the pod spec.
    assert "dev-token-change-me" not in str(pod)


def test_generated_token_is_random_and_given_tokens_are_kept() -> None:
    first = render_values({}).get("Secret", f"{RELEASE}-gateway-auth")["data"]["tokens"]
    second = render_values({}).get("Secret", f"{RELEASE}-gateway-auth")["data"]["tokens"]
    assert first != second
    assert len(base64.b64decode(first).decode().strip()) == 40
    given = render("minimal").get("Secret", f"{RELEASE}-gateway-auth")["data"]["tokens"]
    assert base64.b64decode(given).decode() == "dev-token-change-me\n"


def test_mtls_certificates_cover_the_names_the_gateway_dials() -> None:
    rendered = render("mtls")
    issuers = {i["metadata"]["name"]: i["spec"] for i in rendered.of_kind("Issuer")}
    assert issuers == {
        f"{RELEASE}-selfsigned": {"selfSigned": {}},
        f"{RELEASE}-ca": {"ca": {"secretName": f"{RELEASE}-ca"}},
    }
    certificates = {c["metadata"]["name"]: c for c in rendered.of_kind("Certificate")}
    ca = certificates.pop(f"{RELEASE}-ca")["spec"]
    assert ca["isCA"] is True and ca["secretName"] == f"{RELEASE}-ca"
    assert ca["issuerRef"] == {"name": f"{RELEASE}-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}
    assert set(certificates) == {f"{RELEASE}-{c}" for c in components(rendered)}
    targets = [target for stages in rendered.models().values() for target in stages.values()]
    for component in components(rendered):
        cert = certificates[f"{RELEASE}-{component}"]
        assert cert["apiVersion"] == "cert-manager.io/v1"
        spec = cert["spec"]
        assert spec["issuerRef"] == {"name": f"{RELEASE}-ca", "kind": "Issuer", "group": "cert-manager.io"}
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        tls_volume = volume_for_mount(
            rendered.pod(component), rendered.container(component), "/etc/songsmith/tls"
        )
        assert tls_volume["secret"]["secretName"] == spec["secretName"]
        env = rendered.env(component)
        if component == "gateway":
            assert spec["usages"] == ["digital signature", "key encipherment", "client auth"]
            assert "dnsNames" not in spec
            assert env["SONGSMITH_STAGE_TLS_CA"] == "/etc/songsmith/tls/ca.crt"
            assert env["SONGSMITH_STAGE_TLS_CERT"] == "/etc/songsmith/tls/tls.crt"
            assert env["SONGSMITH_STAGE_TLS_KEY"] == "/etc/songsmith/tls/tls.key"
            continue
        assert "server auth" in spec["usages"]
        # The exec probes dial with the stage's own certificate and check a name it carries.
        probe = rendered.container(component)["readinessProbe"]["exec"]["command"]
        server_name = next(arg for arg in probe if arg.startswith("--server-name=")).split("=", 1)[1]
        assert server_name in spec["dnsNames"]
        assert "client auth" in spec["usages"]
        (target,) = [t for t in targets if f"-{component}-headless." in t]
        dialled_host = target.removeprefix("dns:///").rsplit(":", 1)[0]
        assert dialled_host in spec["dnsNames"]
        assert env["SONGSMITH_TLS_CLIENT_CA"] == "/etc/songsmith/tls/ca.crt"
        assert env["SONGSMITH_TLS_CERT"] == "/etc/songsmith/tls/tls.crt"
        assert env["SONGSMITH_TLS_KEY"] == "/etc/songsmith/tls/tls.key"


def test_mtls_with_an_existing_issuer_creates_no_ca() -> None:
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    rendered = render_values(
        {"mtls": {"enabled": True, "issuerRef": issuer}}, api_versions=("cert-manager.io/v1/Certificate",)
    )
    assert not rendered.of_kind("Issuer")
    for cert in rendered.of_kind("Certificate"):
        assert cert["spec"]["issuerRef"] == issuer


# --- values the chart refuses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"stages": {"diffusion": {"autoscaling": {"minReplicas": 0}}}},
            "stages.diffusion (Deployment diffusion): autoscaling.minReplicas must be at least 1",
        ),
        ({"global": {"shutdown": {"graceSeconds": 60}}}, "graceSeconds (60) must cover"),
        (
            {"stages": {"vocoder": {"grpc": {"maxConnectionAgeGraceSeconds": 30}}}},
            "stages.vocoder (Deployment vocoder): grpc.maxConnectionAgeGraceSeconds must cover",
        ),
        (
            {"gateway": {"grpc": {"maxConnectionAgeGraceSeconds": 30}}},
            "gateway: grpc.maxConnectionAgeGraceSeconds must cover",
        ),
    ],
)
def test_the_chart_refuses_unsafe_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        render_values(values)
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stages": {"diffusion": {"replicas": 2}}}, "additional properties 'replicas' not allowed"),
        ({"stages": {"vocoder": {"gpu": "yes"}}}, "at '/stages/vocoder/gpu'"),
        ({"stages": {"tokenizer": {"gpu": True}}}, "additional properties 'gpu' not allowed"),
        ({"stages": {"diffusion": {"dtype": "float8"}}}, "at '/stages/diffusion/dtype'"),
        ({"stages": {"style": {"grpc": {"maxMessageBytes": -1}}}}, "at '/stages/style/grpc/maxMessageBytes'"),
        ({"autoscaling": {"mode": "vpa"}}, "at '/autoscaling/mode'"),
        ({"models": {"delivery": "rsync"}}, "at '/models/delivery'"),
        ({"models": {"podVolume": {"type": "hostPath"}}}, "at '/models/podVolume/type'"),
        ({"models": {"sharedVolume": {"loader": "sidecar"}}}, "at '/models/sharedVolume/loader'"),
        ({"gpu": {"resourceName": ""}}, "at '/gpu/resourceName'"),
        ({"gateway": {"auth": {"tokens": ["short"]}}}, "at '/gateway/auth/tokens/0'"),
        ({"gateway": {"jobs": {"lease": {"seconds": 0}}}}, "at '/gateway/jobs/lease/seconds'"),
        ({"tracing": {"sampler": "sometimes"}}, "at '/tracing/sampler'"),
        ({"stages": {"chart": {"model": {"from": "hub"}}}}, "at '/stages/chart/model/from'"),
        ({"stages": {"chart": {"model": {"subPath": "../etc"}}}}, "at '/stages/chart/model/subPath'"),
    ],
)
def test_the_values_schema_refuses_mistyped_values(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as failure:
        render_values(values)
    assert message in str(failure.value)


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_helm_test_pod_checks_the_gateway_through_its_service(values_set: str) -> None:
    rendered = render(values_set)
    (pod,) = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == rendered.container("gateway")["image"]
    service = rendered.get("Service", f"{RELEASE}-gateway")["metadata"]["name"]
    assert container["command"] == [
        "songsmith-healthcheck",
        f"--host={service}.{NAMESPACE}.svc.cluster.local",
        "--port=50050",
        "--service=songsmith.v1.SongService",
    ]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_runtime_class_is_set_only_where_asked() -> None:
    rendered = render_values({"stages": {"tokenizer": {"runtimeClassName": "gvisor"}}})
    for component in components(rendered):
        assert rendered.pod(component).get("runtimeClassName") == (
            "gvisor" if component == "tokenizer" else None
        )


def test_another_release_name_and_namespace_keep_targets_and_services_in_step() -> None:
    rendered = render_values({}, release="prod", namespace="music")
    services = {service["metadata"]["name"] for service in rendered.of_kind("Service")}
    pod = rendered.get("Deployment", "prod-songsmith-gateway")["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    routes = yaml.safe_load(env["SONGSMITH_MODELS"])
    for stage in STAGES:
        assert f"prod-songsmith-{stage}-headless" in services
        expected = f"dns:///prod-songsmith-{stage}-headless.music.svc.cluster.local:{PORTS[stage]}"
        assert routes["diffrhythm2"][stage] == expected
    assert {obj["metadata"]["namespace"] for obj in rendered.objects} == {"music"}


def test_a_components_own_pod_annotations_win_over_the_scrape_annotations() -> None:
    own = {"prometheus.io/port": "9999", "team": "music"}
    rendered = render_values({"stages": {"diffusion": {"podAnnotations": own}}})
    annotations = rendered.deployment("diffusion")["spec"]["template"]["metadata"]["annotations"]
    assert own.items() <= annotations.items()
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["kubectl.kubernetes.io/default-container"] == "diffusion"
