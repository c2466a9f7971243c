"""The chart serves the configured models: one Deployment per distinct stage, the gateway's routing,
and the weights delivered to each stage pod without ReadWriteMany storage (unless asked for).

`models.served` lists the models; a stage two models share (the lyric tokenizer, one MuQ-MuLan)
is one Deployment. The gateway's SONGSMITH_MODELS is read back with the gateway's own parser, and
the Deployment names are those `songsmith up` gives its processes for the same models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python
import pytest

from gateway.launcher import plan as launcher_plan
from gateway.models import LOCAL, ModelRoute, read_routes
from tests.k8s.chart import NAMESPACE, PORTS, RELEASE, STAGES, VALUES_SETS, Rendered, render, render_values

DIFFRHYTHM2_DIRS = {
    "style": "muq-mulan/MuQ-MuLan-large",
    "diffusion": "diffrhythm2",
    "vocoder": "diffrhythm2",
}


def model(name: str, source: str, stages: dict[str, Any], family: str = "") -> dict[str, Any]:
    """One entry of models.served."""
    return {"name": name, "family": family or name, "source": source, "stages": stages}


DIFFRHYTHM2 = model(
    "diffrhythm2",
    "pull diffrhythm2",
    {"tokenizer": {}, **{stage: {"modelDir": folder} for stage, folder in DIFFRHYTHM2_DIRS.items()}},
)


def target(component: str) -> str:
    """The gateway's target of a stage Deployment."""
    stage = component.split("-")[0]
    return f"dns:///{RELEASE}-{component}-headless.{NAMESPACE}.svc.cluster.local:{PORTS[stage]}"


def init_containers(rendered: Rendered, component: str) -> list[dict[str, Any]]:
    """The init containers of a component's pods."""
    return rendered.pod(component).get("initContainers", [])


def models_volume(rendered: Rendered, component: str) -> dict[str, Any] | None:
    """The pod volume named `models` of a component (None when it has none)."""
    return next((v for v in rendered.pod(component)["volumes"] if v["name"] == "models"), None)


def mount_of(container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The container's volume mount at `path` (None when there is none)."""
    return next((m for m in container.get("volumeMounts", []) if m["mountPath"] == path), None)


# --- the default: today's DiffRhythm 2 deployment -----------------------------------------------------


def test_default_values_keep_the_single_diffrhythm2_deployment() -> None:
    rendered = render("default")
    assert rendered.stage_deployments() == list(STAGES)
    assert rendered.models() == {"diffrhythm2": {stage: target(stage) for stage in STAGES}}
    gateway = rendered.env("gateway")
    # One routing, not two: the per-stage *_TARGET variables are gone.
    assert not [name for name in gateway if name.endswith("_TARGET")]
    for stage, folder in DIFFRHYTHM2_DIRS.items():
        assert rendered.env(stage)["SONGSMITH_MODEL_DIR"] == f"/models/{folder}"
    assert "SONGSMITH_MODEL_DIR" not in rendered.env("tokenizer")
    # The stages that load the model's own folder serve under its name; the generation stage is
    # told its family; the style stage serves its folder's own name.
    assert rendered.env("diffusion")["SONGSMITH_MODEL_NAME"] == "diffrhythm2"
    assert rendered.env("vocoder")["SONGSMITH_MODEL_NAME"] == "diffrhythm2"
    assert rendered.env("diffusion")["SONGSMITH_FAMILY"] == "diffrhythm2"
    assert "SONGSMITH_MODEL_NAME" not in rendered.env("style")
    assert "SONGSMITH_FAMILY" not in rendered.env("vocoder")
    assert "diffrhythm2: tokenizer -> deploy/songsmith-tokenizer" in rendered.notes


@pytest.mark.parametrize("values_set", VALUES_SETS)
def test_the_gateway_reads_the_routing_the_chart_renders(values_set: str) -> None:
    rendered = render(values_set)
    routes = read_routes(rendered.env("gateway")["SONGSMITH_MODELS"])
    served = rendered.values.get("models", {}).get("served") or [DIFFRHYTHM2]
    assert [route.name for route in routes] == [entry["name"] for entry in served]
    services = {s["metadata"]["name"]: s for s in rendered.of_kind("Service")}
    for route, entry in zip(routes, served, strict=True):
        assert list(route.stages) == [stage for stage in STAGES if stage in entry["stages"]]
        for stage, address in route.stages.items():
            host, port = re.fullmatch(r"dns:///([^.]+)\.songs\.svc\.cluster\.local:(\d+)", address).groups()
            ports = {p["name"]: p["port"] for p in services[host]["spec"]["ports"]}
            assert ports["grpc"] == int(port) == PORTS[stage]
            assert services[host]["spec"]["clusterIP"] == "None"


# --- several models -----------------------------------------------------------------------------------


def test_a_second_model_gets_deployments_of_its_own() -> None:
    rendered = render("musicgen")
    musicgen = ["style-musicgen-small", "diffusion-musicgen-small", "vocoder-musicgen-small"]
    assert rendered.stage_deployments() == [*STAGES, *musicgen]
    assert rendered.models() == {
        "diffrhythm2": {stage: target(stage) for stage in STAGES},
        "musicgen-small": {name.split("-")[0]: target(name) for name in musicgen},
    }
    for name in musicgen:
        env = rendered.env(name)
        assert env["SONGSMITH_MODEL_DIR"] == "/models/musicgen-small"
        assert env["SONGSMITH_MODEL_NAME"] == "musicgen-small"
        assert rendered.deployment(name)["metadata"]["annotations"] == {
            "songsmith.io/models": "musicgen-small"
        }
        for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"):
            assert rendered.get(kind, f"{RELEASE}-{name}")
        assert rendered.get("Service", f"{RELEASE}-{name}-headless")
    # The model's own settings: its generation stage's family, precision, resources and autoscaler,
    # its vocoder on CPU while DiffRhythm 2's stays on a GPU.
    generation = rendered.env("diffusion-musicgen-small")
    assert (generation["SONGSMITH_FAMILY"], generation["SONGSMITH_DTYPE"]) == ("musicgen", "float16")
    assert rendered.container("diffusion-musicgen-small")["resources"] == {
        "requests": {"cpu": "2", "memory": "6Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "1"},
    }
    assert (
        rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-diffusion-musicgen-small")["spec"]["maxReplicas"]
        == 4
    )
    assert rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-diffusion")["spec"]["maxReplicas"] == 8
    assert rendered.env("vocoder-musicgen-small")["SONGSMITH_DEVICE"] == "cpu"
    assert rendered.container("vocoder-musicgen-small")["image"].endswith("songsmith-vocoder:0.1.0-cpu")
    assert rendered.env("vocoder")["SONGSMITH_DEVICE"] == "cuda"
    # Each pod downloads its own model.
    for name, source in (
        ("diffusion", "pull diffrhythm2"),
        ("diffusion-musicgen-small", "pull musicgen-small"),
    ):
        (pull,) = init_containers(rendered, name)
        assert f"songsmith models {source} --model-root /models;" in pull["args"][0]


def test_a_stage_two_models_share_runs_once() -> None:
    rendered = render("diffrhythm1")
    assert rendered.stage_deployments() == [*STAGES, "diffusion-diffrhythm1", "vocoder-diffrhythm1"]
    routes = rendered.models()
    assert routes["diffrhythm1"] == {
        "tokenizer": target("tokenizer"),
        "style": target("style"),
        "diffusion": target("diffusion-diffrhythm1"),
        "vocoder": target("vocoder-diffrhythm1"),
    }
    assert list(routes) == ["diffrhythm2", "diffrhythm1"]
    for shared in ("tokenizer", "style"):
        annotations = rendered.deployment(shared)["metadata"]["annotations"]
        assert annotations == {"songsmith.io/models": "diffrhythm2,diffrhythm1"}
        # A shared stage serves under its folder's own name, not one of the models'.
        assert "SONGSMITH_MODEL_NAME" not in rendered.env(shared)
    assert rendered.env("diffusion-diffrhythm1")["SONGSMITH_FAMILY"] == "diffrhythm1"
    assert rendered.env("vocoder-diffrhythm1")["SONGSMITH_MODEL_DIR"] == "/models/diffrhythm1"
    assert rendered.container("diffusion-diffrhythm1")["resources"]["requests"]["memory"] == "16Gi"
    assert len(rendered.of_kind("PodDisruptionBudget")) == 7
    assert len(rendered.of_kind("HorizontalPodAutoscaler")) == 6


@pytest.mark.parametrize("values_set", ["default", "musicgen", "diffrhythm1"])
def test_deployments_are_the_processes_songsmith_up_starts(values_set: str) -> None:
    rendered = render(values_set)
    served = rendered.values.get("models", {}).get("served") or [DIFFRHYTHM2]
    routes = [
        ModelRoute(
            entry["name"],
            {
                stage: f"{LOCAL}:{Path('/models') / entry['stages'][stage]['modelDir']}"
                if entry["stages"][stage]
                else LOCAL
                for stage in STAGES
                if stage in entry["stages"]
            },
        )
        for entry in served
    ]
    local = launcher_plan(routes, base_port=50050, metrics_base_port=0)
    assert [service.name for service in local.services[1:]] == rendered.stage_deployments()


def test_a_model_name_may_differ_from_its_folders() -> None:
    renamed = model("dr2-prod", "pull diffrhythm2", DIFFRHYTHM2["stages"], family="diffrhythm2")
    renamed["stages"] = {
        **renamed["stages"],
        "style": {"modelDir": DIFFRHYTHM2_DIRS["style"], "modelName": "mulan"},
    }
    rendered = render_values({"models": {"served": [renamed]}})
    assert list(rendered.models()) == ["dr2-prod"]
    assert rendered.env("diffusion")["SONGSMITH_MODEL_NAME"] == "dr2-prod"
    assert rendered.env("style")["SONGSMITH_MODEL_NAME"] == "mulan"


@pytest.mark.parametrize(
    ("served", "message"),
    [
        ([DIFFRHYTHM2, DIFFRHYTHM2], 'the model "diffrhythm2" is listed twice'),
        (
            [
                DIFFRHYTHM2,
                model(
                    "diffrhythm1",
                    "pull diffrhythm1",
                    {
                        "tokenizer": {"replicaCount": 3},
                        "diffusion": {"modelDir": "diffrhythm1"},
                        "vocoder": {"modelDir": "diffrhythm1"},
                    },
                ),
            ],
            'diffrhythm1 shares the tokenizer stage of diffrhythm2 (folder ""), whose entry sets its '
            "settings; remove replicaCount from diffrhythm1's entry",
        ),
        (
            [
                DIFFRHYTHM2,
                model(
                    "a-model-name-of-thirty-chars-x",
                    "demo",
                    {"diffusion": {"modelDir": "x"}, "vocoder": {"modelDir": "x"}},
                ),
            ],
            "is longer than 63 characters: shorten the release name or the model name "
            "a-model-name-of-thirty-chars-x",
        ),
        (
            [model("diffrhythm2", "", DIFFRHYTHM2["stages"])],
            "models.delivery=download runs each model's source in the stage pods, and the model "
            "diffrhythm2 has none for its style folder",
        ),
    ],
)
def test_the_chart_refuses_model_lists_it_cannot_serve(served: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        render_values({"models": {"served": served}}, release="songsmith-production-eu-west-1")
    assert message in str(failure.value)


@pytest.mark.parametrize(
    ("served", "message"),
    [
        ([], "at '/models/served': minItems"),
        ([model("diffrhythm2", "demo", {"diffusion": {"modelDir": "d"}})], "missing property 'vocoder'"),
        ([model("Diff_Rhythm", "demo", DIFFRHYTHM2["stages"])], "at '/models/served/0/name'"),
        (
            [model("d", "demo", {**DIFFRHYTHM2["stages"], "tokenizer": {"modelDir": "g2p"}})],
            "additional properties 'modelDir'",
        ),
        (
            [model("d", "demo", {**DIFFRHYTHM2["stages"], "diffusion": {"modelDir": "../etc"}})],
            "at '/models/served/0/stages/diffusion/modelDir'",
        ),
        ([model("d", "pull x; rm -rf /", DIFFRHYTHM2["stages"])], "at '/models/served/0/source'"),
        (
            [model("d", "demo", {**DIFFRHYTHM2["stages"], "chart": {"modelDir": "mug"}})],
            "additional properties 'chart'",
        ),
        (
            [model("d", "demo", {**DIFFRHYTHM2["stages"], "diffusion": {"modelDir": "d", "port": 1}})],
            "additional properties 'port'",
        ),
    ],
)
def test_the_schema_refuses_malformed_models(served: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as failure:
        render_values({"models": {"served": served}})
    assert message in str(failure.value)


# --- delivery of the weights --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values_set", ["default", "minimal", "musicgen", "diffrhythm1", "volume-per-stage", "baked"]
)
def test_no_values_set_but_the_shared_one_needs_readwritemany(values_set: str) -> None:
    for claim in render(values_set).of_kind("PersistentVolumeClaim"):
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], claim["metadata"]["name"]


def test_download_runs_the_model_source_into_a_volume_of_each_pod() -> None:
    rendered = render("default")
    assert not rendered.of_kind("Job")
    assert [c["metadata"]["name"] for c in rendered.of_kind("PersistentVolumeClaim")] == [
        f"{RELEASE}-gateway-data"
    ]
    for stage in STAGES:
        container = rendered.container(stage)
        if stage == "tokenizer":
            assert init_containers(rendered, stage) == []
            assert models_volume(rendered, stage) is None
            continue
        (pull,) = init_containers(rendered, stage)
        assert pull["name"] == "pull-models"
        assert pull["image"] == container["image"]
        script = pull["args"][0]
        marker = re.search(r"touch (/models/\.songsmith/ready-[0-9a-f]{10}); fi$", script)[1]
        assert script == (
            "set -e; mkdir -p /models/.songsmith; exec 9>/models/.songsmith/lock; flock 9; "
            f"if [ ! -f {marker} ]; then songsmith models pull diffrhythm2 --model-root /models; "
            f"touch {marker}; fi"
        )
        assert {e["name"]: e.get("value") for e in pull["env"]}["HF_HUB_OFFLINE"] == "0"
        assert not mount_of(pull, "/models").get("readOnly")
        assert mount_of(container, "/models")["readOnly"] is True
        assert models_volume(rendered, stage) == {"name": "models", "emptyDir": {"sizeLimit": "20Gi"}}


def test_download_into_an_ephemeral_claim_per_pod() -> None:
    rendered = render_values(
        {"models": {"podVolume": {"type": "ephemeral", "storageClassName": "local-ssd", "size": "30Gi"}}}
    )
    volume = models_volume(rendered, "diffusion")
    template = volume["ephemeral"]["volumeClaimTemplate"]
    assert template["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "local-ssd",
        "resources": {"requests": {"storage": "30Gi"}},
    }
    assert template["metadata"]["labels"]["app.kubernetes.io/component"] == "diffusion"


def test_volume_per_stage_gives_each_deployment_its_own_readwriteonce_claim() -> None:
    rendered = render("volume-per-stage")
    claims = {c["metadata"]["name"]: c for c in rendered.of_kind("PersistentVolumeClaim")}
    assert set(claims) == {f"{RELEASE}-{stage}-models" for stage in DIFFRHYTHM2_DIRS} | {
        f"{RELEASE}-gateway-data"
    }
    for stage in DIFFRHYTHM2_DIRS:
        claim = claims[f"{RELEASE}-{stage}-models"]["spec"]
        assert claim == {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "fast-ssd",
            "resources": {"requests": {"storage": "30Gi"}},
        }
        assert models_volume(rendered, stage) == {
            "name": "models",
            "persistentVolumeClaim": {"claimName": f"{RELEASE}-{stage}-models"},
        }
        pod = rendered.pod(stage)
        # Every replica on the node that mounts the volume; no spreading that would fight it.
        (term,) = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term == {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": rendered.deployment(stage)["spec"]["selector"]["matchLabels"]},
        }
        assert "topologySpreadConstraints" not in pod
        (pull,) = init_containers(rendered, stage)
        assert "songsmith models pull diffrhythm2 --model-root /models;" in pull["args"][0]
    assert "affinity" not in rendered.pod("tokenizer")
    assert rendered.pod("tokenizer")["topologySpreadConstraints"]


def test_volume_per_stage_keeps_a_stages_own_affinity() -> None:
    own = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    rendered = render_values(
        {"models": {"delivery": "volumePerStage"}, "stages": {"diffusion": {"affinity": own}}}
    )
    affinity = rendered.pod("diffusion")["affinity"]
    assert affinity["nodeAffinity"] == own["nodeAffinity"]
    assert len(affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]) == 1


def test_shared_volume_is_filled_once_by_a_job_the_stages_wait_for() -> None:
    rendered = render("shared-volume")
    claim = rendered.get("PersistentVolumeClaim", f"{RELEASE}-models")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "nfs"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (job,) = rendered.of_kind("Job")
    (loader,) = job["spec"]["template"]["spec"]["containers"]
    script = loader["args"][0]
    marker = re.search(r"touch (/models/\.songsmith/ready-[0-9a-f]{10}); fi$", script)[1]
    assert f"then songsmith models pull diffrhythm2 --model-root /models; touch {marker}" in script
    assert job["metadata"]["name"] == f"{RELEASE}-models-{marker[-10:]}"
    assert loader["image"] == rendered.container("gateway")["image"]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in loader["env"]}
    assert env["HF_ENDPOINT"] == "https://hub-mirror.example.com"
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "HF_TOKEN"}}
    for stage in DIFFRHYTHM2_DIRS:
        (wait,) = init_containers(rendered, stage)
        assert wait["name"] == "wait-for-models"
        assert f"until [ -f {marker} ]" in wait["args"][0]
        assert models_volume(rendered, stage)["persistentVolumeClaim"] == {"claimName": f"{RELEASE}-models"}
        assert mount_of(rendered.container(stage), "/models")["readOnly"] is True


def test_the_shared_job_writes_every_models_folders_once() -> None:
    musicgen = model(
        "musicgen-small",
        "pull musicgen-small",
        {s: {"modelDir": "musicgen-small"} for s in ("style", "diffusion", "vocoder")},
        "musicgen",
    )
    second = model(
        "diffrhythm2-demo",
        "pull diffrhythm2",
        DIFFRHYTHM2["stages"] | {"diffusion": {"modelDir": "diffrhythm2"}},
    )
    values = {"models": {"delivery": "sharedVolume", "served": [DIFFRHYTHM2, musicgen, second]}}
    (job,) = render_values(values).of_kind("Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert (
        "then songsmith models pull diffrhythm2 --model-root /models; "
        "songsmith models pull musicgen-small --model-root /models; touch" in script
    )


def test_shared_volume_without_loader_mounts_an_existing_claim_as_is() -> None:
    values = {
        "models": {"delivery": "sharedVolume", "sharedVolume": {"existingClaim": "weights", "loader": "none"}}
    }
    rendered = render_values(values)
    assert not rendered.of_kind("Job")
    assert [c["metadata"]["name"] for c in rendered.of_kind("PersistentVolumeClaim")] == [
        f"{RELEASE}-gateway-data"
    ]
    for stage in DIFFRHYTHM2_DIRS:
        assert init_containers(rendered, stage) == []
        assert models_volume(rendered, stage)["persistentVolumeClaim"] == {"claimName": "weights"}


def test_baked_images_need_no_volume_and_no_download() -> None:
    rendered = render("baked")
    assert not rendered.of_kind("Job")
    for stage, folder in DIFFRHYTHM2_DIRS.items():
        assert init_containers(rendered, stage) == []
        assert models_volume(rendered, stage) is None
        assert mount_of(rendered.container(stage), "/models") is None
        assert rendered.env(stage)["SONGSMITH_MODEL_DIR"] == f"/models/{folder}"
        variant = "cuda" if stage != "style" else "cpu"
        assert (
            rendered.container(stage)["image"]
            == f"registry.example.com/songsmith/songsmith-{stage}-diffrhythm2:0.1.0-{variant}"
        )


def test_a_new_source_or_image_makes_a_new_marker() -> None:
    def marker(values: dict[str, Any]) -> str:
        (pull,) = init_containers(render_values(values), "diffusion")
        return re.search(r"ready-([0-9a-f]{10})", pull["args"][0])[1]

    default = marker({})
    assert marker({"global": {"image": {"tag": "0.2.0"}}}) != default
    demo = model("diffrhythm2", "demo", DIFFRHYTHM2["stages"])
    assert marker({"models": {"served": [demo]}}) != default


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "models": {
                    "delivery": "sharedVolume",
                    "served": [model("diffrhythm2", "", DIFFRHYTHM2["stages"])],
                }
            },
            "models.sharedVolume.loader=job runs the models' sources, and no model in models.served has one",
        ),
        (
            {
                "models": {
                    "delivery": "volumePerStage",
                    "served": [model("diffrhythm2", "", DIFFRHYTHM2["stages"])],
                }
            },
            "models.delivery=volumePerStage runs each model's source in the stage pods",
        ),
    ],
)
def test_the_chart_refuses_a_delivery_with_nothing_to_deliver(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmError) as failure:
        render_values(values)
    assert message in str(failure.value)
