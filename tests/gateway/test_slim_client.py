"""The client side of the CLI is slim and speaks TLS.

Commands that only talk to a gateway (`songsmith --help`, `jobs ...`, `generate --server`, `models list
--server`) import none of the model stack, measured in a fresh interpreter; every one of them takes
`--tls-ca`, `--tls-cert` and `--tls-key`, tested against a real gateway serving mutual TLS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.server import GatewayConfig, build_spec
from tests.helpers import free_port, running_stage
from tests.pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[2]
# What a client must never load: the model stack, the lyric front end, audio and the tracing SDK.
MODEL_STACK = (
    "torch",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "numpy",
    "scipy",
    "onnxruntime",
    "phonemizer",
    "jieba",
    "soundfile",
    "opentelemetry.sdk",
)
PROBE = """
import json, os, sys
from gateway.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
watched = os.environ["WATCHED_MODULES"].split(",")
print(json.dumps({"code": code, "loaded": [name for name in watched if name in sys.modules]}))
"""


def _imports_of(*argv: str) -> dict:
    """Run `songsmith ARGV` in a fresh interpreter; its exit code and the model-stack modules it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        env={**os.environ, "WATCHED_MODULES": ",".join(MODEL_STACK)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["jobs", "list", "--help"],
        ["generate", "--help"],
        ["jobs", "list", "--server", "{closed}"],
        ["jobs", "watch", "a-job", "--server", "{closed}", "-q"],
        ["models", "list", "--server", "{closed}"],
        ["generate", "--server", "{closed}", "--style", "calm piano", "-o", "{out}/song.mp3", "-q"],
    ],
    ids=" ".join,
)
def test_client_commands_load_no_model_stack(argv: list[str], tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"
    ran = _imports_of(*(word.format(closed=closed, out=tmp_path) for word in argv))
    assert ran["loaded"] == []
    assert ran["code"] == (0 if "--help" in argv else 1)


def test_a_stage_command_still_gets_its_subcommands(capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["latents", "--help"])
    assert exit.value.code == 0
    listed = capsys.readouterr().out
    assert "generate" in listed and "decode" in listed


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a certificate for 127.0.0.1 and a client certificate."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_gateway(pki: Pki, tmp_path_factory: pytest.TempPathFactory):
    """A gateway serving mutual TLS on 127.0.0.1 (its stages are not running: the job commands and
    ListModels need none); yields its address."""
    var = tmp_path_factory.mktemp("gateway")
    unreachable = f"127.0.0.1:{free_port()}"
    config = GatewayConfig(
        port=0,
        drain_delay_s=0,
        tls_cert=pki.path("server.crt"),
        tls_key=pki.path("server.key"),
        tls_client_ca=pki.path("ca.crt"),
        tokenizer_target=unreachable,
        style_target=unreachable,
        diffusion_target=unreachable,
        vocoder_target=unreachable,
        jobs_db=str(var / "jobs.sqlite3"),
        results_dir=str(var / "results"),
    )
    with running_stage(build_spec(config), config) as gateway:
        yield f"127.0.0.1:{gateway.port}"


def _tls(pki: Pki) -> list[str]:
    return [
        "--tls-ca",
        pki.path("ca.crt"),
        "--tls-cert",
        pki.path("client.crt"),
        "--tls-key",
        pki.path("client.key"),
    ]


def test_job_commands_reach_a_tls_gateway(tls_gateway: str, pki: Pki, capsys) -> None:
    assert main(["jobs", "list", "--server", tls_gateway, *_tls(pki)]) == 0
    assert main(["jobs", "get", "no-such-job", "--server", tls_gateway, *_tls(pki)]) == 1
    assert "no job no-such-job" in capsys.readouterr().err
    assert main(["jobs", "get", "no-such-job", "--server", tls_gateway]) == 1
    refused = capsys.readouterr().err
    assert "no job" not in refused, "a plaintext client got an answer from a TLS gateway"


def test_models_list_and_generate_reach_a_tls_gateway(
    tls_gateway: str, pki: Pki, tmp_path: Path, capsys
) -> None:
    assert main(["models", "list", "--server", tls_gateway, *_tls(pki)]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("diffrhythm2 (default)") and "UNAVAILABLE" in listed
    song = [
        "generate",
        "--server",
        tls_gateway,
        "--model",
        "nope",
        "--style",
        "x",
        "-o",
        str(tmp_path / "a.mp3"),
    ]
    assert main([*song, *_tls(pki), "-q"]) == 1
    assert "no model 'nope'" in capsys.readouterr().err


def test_tls_options_come_from_the_environment(tls_gateway: str, pki: Pki, capsys, monkeypatch) -> None:
    monkeypatch.setenv("SONGSMITH_CLIENT_TLS_CA", pki.path("ca.crt"))
    monkeypatch.setenv("SONGSMITH_CLIENT_TLS_CERT", pki.path("client.crt"))
    monkeypatch.setenv("SONGSMITH_CLIENT_TLS_KEY", pki.path("client.key"))
    assert main(["jobs", "get", "no-such-job", "--server", tls_gateway]) == 1
    assert "no job no-such-job" in capsys.readouterr().err


def test_a_client_certificate_without_its_key_is_a_usage_error(pki: Pki, capsys) -> None:
    argv = ["jobs", "list", "--server", "127.0.0.1:1", "--tls-cert", pki.path("client.crt")]
    assert main(argv) == 2
    assert "--tls-cert and --tls-key go together" in capsys.readouterr().err


def test_a_server_needing_a_client_certificate_refuses_one_without(
    tls_gateway: str, pki: Pki, capsys
) -> None:
    assert main(["jobs", "get", "x", "--server", tls_gateway, "--tls-ca", pki.path("ca.crt")]) == 1
    assert "no job" not in capsys.readouterr().err
