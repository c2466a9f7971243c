"""docker/compose.yaml runs what the chart runs: same images, commands, ports, variables and limits.

The reference is the chart rendered with ci/cpu-values.yaml (compose runs the CPU images), with the
chart stage switched on for compose's `chart` profile; the GPU overlay is compared with the CUDA
render. Every image compose names builds from docker/Dockerfile, whose targets expose the ports
the chart gives them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import (
    HEALTH_SERVICES,
    REPO,
    STAGES,
    VALUES_SETS,
    Rendered,
    load_values,
    render,
    render_values,
)

DOCKER = REPO / "docker"
# Variables the chart sets from the downward API: pod identity for traces, threads from the CPU request.
KUBERNETES_ONLY_ENV = {"POD_NAME", "POD_NAMESPACE", "OTEL_RESOURCE_ATTRIBUTES", "OMP_NUM_THREADS"}
CHART_STAGE = {"enabled": True, "model": {"existingClaim": "mug-models"}}


def load_compose(name: str) -> dict[str, Any]:
    """A compose file of docker/ with YAML anchors and merge keys resolved."""
    return yaml.safe_load((DOCKER / name).read_text())


def with_defaults(value: str) -> str:
    """A compose value with each `${NAME:-default}` replaced by its default (no variable set)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as strings, as compose runs it with no variable set."""
    return {key: with_defaults(str(value)) for key, value in service["environment"].items()}


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


@pytest.fixture(scope="module")
def reference() -> Rendered:
    """The chart as compose runs it: CPU images, the chart stage on."""
    values = load_values("cpu")
    return render_values({**values, "stages": {**values["stages"], "chart": CHART_STAGE}})


def test_compose_runs_the_stages_the_gateway_jaeger_and_the_model_loader(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*STAGES, "chart", "gateway", "jaeger", "models"}
    # The chart stage is off unless its profile is on; nothing else waits for it.
    assert compose["services"]["chart"]["profiles"] == ["chart"]
    assert [name for name, service in compose["services"].items() if "profiles" in service] == ["chart"]
    assert "chart" not in compose["services"]["gateway"]["depends_on"]


@pytest.mark.parametrize("component", [*STAGES, "chart", "gateway"])
def test_compose_service_matches_the_chart(
    compose: dict[str, Any], reference: Rendered, component: str
) -> None:
    service = compose["services"][component]
    chart_container = reference.container(component)
    assert service["image"] == chart_container["image"]
    assert service["command"] == chart_container["args"]

    chart_env = reference.env(component)
    env = compose_env(service)
    assert set(env) == set(chart_env) - KUBERNETES_ONLY_ENV
    for name, value in env.items():
        if name == "OTEL_EXPORTER_OTLP_ENDPOINT":
            assert value == "http://jaeger:4317"
            assert chart_env[name].endswith(":4317")
        elif name == "SONGSMITH_MODELS":
            # The same models and stages, at compose's service names.
            chart_routes = yaml.safe_load(chart_env[name])
            assert yaml.safe_load(value) == {
                model: {
                    stage: f"dns:///{stage}:{address.rsplit(':', 1)[1]}" for stage, address in stages.items()
                }
                for model, stages in chart_routes.items()
            }
        elif name == "SONGSMITH_CHART_TARGET":
            # Empty (no charts) unless set with the chart profile.
            assert service["environment"][name] == "${SONGSMITH_CHART_TARGET:-}"
            assert chart_env[name].endswith(":50055")
        else:
            assert value == chart_env[name], name

    port = chart_env["SONGSMITH_PORT"]
    assert service["healthcheck"]["test"] == [
        "CMD",
        "songsmith-healthcheck",
        f"--port={port}",
        f"--service={HEALTH_SERVICES[component]}",
    ]
    pod = reference.pod(component)
    assert service["stop_grace_period"] == f"{pod['terminationGracePeriodSeconds']}s"


@pytest.mark.parametrize("component", [*STAGES, "chart", "gateway"])
def test_compose_service_is_locked_down_like_the_pods(
    compose: dict[str, Any], reference: Rendered, component: str
) -> None:
    service = compose["services"][component]
    pod_security = reference.pod(component)["securityContext"]
    assert service["user"] == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}"
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    scratch = {entry.split(":")[0] for entry in service["tmpfs"]}
    chart_mounts = {m["mountPath"] for m in reference.container(component)["volumeMounts"]}
    assert scratch == {"/tmp", "/home/songsmith"} <= chart_mounts
    volumes = service.get("volumes", [])
    if component == "chart":
        assert volumes == ["${CHART_MODEL_DIR:-./chart-model}:/models/mug-diffusion:ro"]
    elif "SONGSMITH_MODEL_DIR" in reference.env(component):
        assert volumes == ["models:/models:ro"]
        assert service["depends_on"]["models"] == {"condition": "service_completed_successfully"}
    elif component == "gateway":
        assert volumes == ["gateway-data:/var/lib/songsmith"]
    else:
        assert volumes == []


def test_compose_builds_every_image_it_runs(compose: dict[str, Any]) -> None:
    targets = dockerfile_targets()
    overlay = load_compose("compose.gpu.yaml")["services"]
    for services in (compose["services"], overlay):
        for name, service in services.items():
            if name == "jaeger":
                assert "build" not in service
                continue
            build = service["build"]
            assert (build["context"], build["dockerfile"]) == ("..", "docker/Dockerfile")
            assert (DOCKER / ".." / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
            service_name, variant = re.fullmatch(
                r".*/songsmith-(\w+):0\.1\.0-(cpu|cuda)", service["image"]
            ).groups()
            assert build["target"] == f"{service_name}-{variant}"
            assert build["target"] in targets


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


def test_model_loader_runs_the_source_of_the_charts_default_model(
    compose: dict[str, Any], reference: Rendered
) -> None:
    models = compose["services"]["models"]
    (command,) = models["command"]
    (pull,) = reference.pod("diffusion")["initContainers"]
    assert f"then {with_defaults(command)}; touch" in pull["args"][0]
    assert models["image"] == reference.container("gateway")["image"]
    assert models["volumes"] == ["models:/models"]
    assert compose_env(models)["HF_HUB_OFFLINE"] == "0"


def test_demo_weights_switch_the_style_folder_with_them(compose: dict[str, Any]) -> None:
    style = compose["services"]["style"]["environment"]["SONGSMITH_MODEL_DIR"]
    demo = {
        stage: entry.get("modelDir")
        for stage, entry in load_values("minimal")["models"]["served"][0]["stages"].items()
    }
    assert re.sub(r"\$\{STYLE_MODEL:-[^}]*\}", demo["style"], style) == "/models/muq-mulan/MuQ-MuLan-demo"
    assert "STYLE_MODEL=muq-mulan/MuQ-MuLan-demo" in (DOCKER / "compose.yaml").read_text()


def test_jaeger_is_the_chart_image(compose: dict[str, Any]) -> None:
    jaeger = render("mtls").get("Deployment", "songsmith-jaeger")["spec"]["template"]["spec"]["containers"][0]
    assert compose["services"]["jaeger"]["image"] == jaeger["image"]


def test_gpu_overlay_matches_the_chart_gpu_stages() -> None:
    overlay = load_compose("compose.gpu.yaml")["services"]
    rendered = render_values({"stages": {"chart": {**CHART_STAGE, "gpu": True}}})
    assert set(overlay) == {"diffusion", "vocoder", "chart"}
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
        rendered = render(values_set)
        images.update(
            rendered.container(component)["image"] for component in ["gateway", *rendered.stage_deployments()]
        )
    for image in images:
        match = re.fullmatch(r"([\w./]+)/songsmith-(\w+)(-[\w-]+)?:0\.1\.0-(cpu|cuda)", image)
        assert match, image
        _, service, baked, variant = match.groups()
        if baked:
            # Images with weights baked in are built FROM a service image (the with-models target).
            assert targets["with-models"]["base"] == "${SERVICE_IMAGE}"
            continue
        target = targets[f"{service}-{variant}"]
        assert target["base"] == f"runtime-{variant}"
        ports = {
            "grpc": int(target["env"]["SONGSMITH_PORT"]),
            "metrics": int(target["env"]["SONGSMITH_METRICS_PORT"]),
        }
        assert sorted(target["expose"]) == sorted(ports.values())
        chart = render_values({"stages": {"chart": CHART_STAGE}}).container(service)
        assert {p["name"]: p["containerPort"] for p in chart["ports"]} == ports
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
