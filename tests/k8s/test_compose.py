"""docker/compose.yaml runs what the chart runs: same images, commands, ports, variables and limits.

The reference is the chart rendered with ci/cpu-values.yaml (compose runs the CPU images); the GPU
overlay is compared with the default (CUDA) render. The Dockerfile must have a target for every
image either of them names, exposing the same ports.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import COMPONENTS, HEALTH_SERVICES, REPO, STAGES, VALUES_SETS, render

DOCKER = REPO / "docker"
# Variables the chart sets from the downward API: pod identity for traces, threads from the CPU request.
KUBERNETES_ONLY_ENV = {"POD_NAME", "POD_NAMESPACE", "OTEL_RESOURCE_ATTRIBUTES", "OMP_NUM_THREADS"}


def load_compose(name: str) -> dict[str, Any]:
    """A compose file of docker/ with YAML anchors and merge keys resolved."""
    return yaml.safe_load((DOCKER / name).read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as strings."""
    return {key: str(value) for key, value in service["environment"].items()}


def dockerfile_targets() -> dict[str, dict[str, Any]]:
    """Each Dockerfile stage by name: its base, exposed ports and ENV settings."""
    targets: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if match := re.match(r"FROM (\S+) AS (\S+)", line):
            current = targets[match.group(2)] = {"base": match.group(1), "expose": [], "env": {}}
        elif current is not None and line.startswith("EXPOSE "):
            current["expose"] = [int(port) for port in line.split()[1:]]
        elif current is not None and line.startswith("ENV "):
            current["env"].update(pair.split("=", 1) for pair in line.split()[1:])
    return targets


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The parsed docker/compose.yaml."""
    return load_compose("compose.yaml")


def test_compose_runs_the_five_services_jaeger_and_the_model_loader(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*COMPONENTS, "jaeger", "models"}


@pytest.mark.parametrize("component", COMPONENTS)
def test_compose_service_matches_the_chart(compose: dict[str, Any], component: str) -> None:
    rendered = render("cpu")
    service = compose["services"][component]
    chart_container = rendered.container(component)
    assert service["image"] == chart_container["image"]
    assert service["command"] == chart_container["args"]

    chart_env = rendered.env(component)
    env = compose_env(service)
    assert set(env) == set(chart_env) - KUBERNETES_ONLY_ENV
    for name, value in env.items():
        if name == "OTEL_EXPORTER_OTLP_ENDPOINT":
            assert value == "http://jaeger:4317"
            assert chart_env[name].endswith(":4317")
        elif name.endswith("_TARGET"):
            stage = name.removeprefix("SONGSMITH_").removesuffix("_TARGET").lower()
            port = chart_env[name].rsplit(":", 1)[1]
            assert value == f"dns:///{stage}:{port}"
        else:
            assert value == chart_env[name], name

    port = chart_env["SONGSMITH_PORT"]
    assert service["healthcheck"]["test"] == [
        "CMD",
        "songsmith-healthcheck",
        f"--port={port}",
        f"--service={HEALTH_SERVICES[component]}",
    ]
    pod = rendered.deployment(component)["spec"]["template"]["spec"]
    assert service["stop_grace_period"] == f"{pod['terminationGracePeriodSeconds']}s"


@pytest.mark.parametrize("component", COMPONENTS)
def test_compose_service_is_locked_down_like_the_pods(compose: dict[str, Any], component: str) -> None:
    rendered = render("cpu")
    service = compose["services"][component]
    pod_security = rendered.deployment(component)["spec"]["template"]["spec"]["securityContext"]
    assert service["user"] == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    scratch = {entry.split(":")[0] for entry in service["tmpfs"]}
    chart_mounts = {m["mountPath"] for m in rendered.container(component)["volumeMounts"]}
    assert scratch == {"/tmp", "/home/songsmith"} <= chart_mounts
    volumes = service.get("volumes", [])
    if "SONGSMITH_MODEL_DIR" in rendered.env(component):
        assert volumes == ["models:/models:ro"]
        assert service["depends_on"]["models"] == {"condition": "service_completed_successfully"}
    elif component == "gateway":
        assert volumes == ["gateway-data:/var/lib/songsmith"]
    else:
        assert volumes == []


def test_gateway_waits_for_healthy_stages_and_reads_tokens_from_a_secret(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert gateway["depends_on"] == {
        "jaeger": {"condition": "service_started"},
        **{stage: {"condition": "service_healthy"} for stage in STAGES},
    }
    (secret,) = gateway["secrets"]
    assert secret["target"] == gateway["environment"]["SONGSMITH_AUTH_TOKENS_FILE"]
    assert compose["secrets"][secret["source"]] == {"file": "./gateway-tokens.txt"}
    assert "gateway-tokens.txt" in (DOCKER / ".gitignore").read_text().split()


def test_model_loader_runs_the_chart_model_command(compose: dict[str, Any]) -> None:
    models = compose["services"]["models"]
    (command,) = models["command"]
    default_command = command.replace("${MODELS:-pull diffrhythm2}", "pull diffrhythm2")
    job = render("cpu").of_kind("Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert f"then {default_command}; touch" in job["args"][0]
    assert models["image"] == job["image"]
    assert models["volumes"] == ["models:/models"]
    assert compose_env(models)["HF_HUB_OFFLINE"] == "0"


def test_jaeger_is_the_chart_image(compose: dict[str, Any]) -> None:
    jaeger = render("mtls").get("Deployment", "songsmith-jaeger")["spec"]["template"]["spec"]["containers"][0]
    assert compose["services"]["jaeger"]["image"] == jaeger["image"]


def test_gpu_overlay_matches_the_chart_gpu_stages() -> None:
    overlay = load_compose("compose.gpu.yaml")["services"]
    rendered = render("default")
    assert set(overlay) == {"diffusion", "vocoder"}
    for stage, service in overlay.items():
        assert service["image"] == rendered.container(stage)["image"]
        chart_env = rendered.env(stage)
        for name, value in compose_env(service).items():
            assert value == chart_env[name], name
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}


def test_dockerfile_has_a_target_for_every_image_the_chart_and_compose_name(compose: dict[str, Any]) -> None:
    targets = dockerfile_targets()
    images = {s["image"] for s in compose["services"].values() if "songsmith" in s["image"]}
    for values_set in VALUES_SETS:
        images.update(render(values_set).container(component)["image"] for component in COMPONENTS)
    for image in images:
        match = re.fullmatch(r"ghcr\.io/songsmith/songsmith-(\w+):0\.1\.0-(cpu|cuda)", image)
        assert match, image
        service, variant = match.groups()
        target = targets[f"{service}-{variant}"]
        assert target["base"] == f"runtime-{variant}"
        chart = render("default").container(service)
        ports = {p["name"]: p["containerPort"] for p in chart["ports"]}
        assert sorted(target["expose"]) == sorted(ports.values())
        assert target["env"]["SONGSMITH_PORT"] == str(ports["grpc"])
        assert target["env"]["SONGSMITH_METRICS_PORT"] == str(ports["metrics"])
    runtime = targets["runtime-cpu"]["env"]
    assert runtime["HF_HUB_OFFLINE"] == "1"
    assert runtime["HOME"] == "/home/songsmith"
    for cache in (
        "XDG_CACHE_HOME",
        "HF_HOME",
        "NUMBA_CACHE_DIR",
        "TORCHINDUCTOR_CACHE_DIR",
        "TRITON_CACHE_DIR",
    ):
        assert Path(runtime[cache]).is_relative_to("/home/songsmith"), cache
    assert targets["runtime-cuda"]["env"] == runtime
