"""Service configuration: flags beat SONGSMITH_* variables, which beat the defaults."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.runtime.config import ServerConfig, load_config, option


@dataclass
class ExampleConfig(ServerConfig):
    """A stage config with fields of every supported type."""

    model_dir: str = option("models/example", "model folder")
    warm: bool = option(True, "warm up at start")
    scale: float = option(1.5, "a ratio")


def test_defaults_environment_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_config(ExampleConfig, []).model_dir == "models/example"
    monkeypatch.setenv("SONGSMITH_MODEL_DIR", "/env/models")
    monkeypatch.setenv("SONGSMITH_PORT", "6000")
    monkeypatch.setenv("SONGSMITH_WARM", "false")
    config = load_config(ExampleConfig, [])
    assert (config.model_dir, config.port, config.warm) == ("/env/models", 6000, False)
    config = load_config(ExampleConfig, ["--model-dir", "/flag/models", "--scale", "2", "--warm", "yes"])
    assert (config.model_dir, config.scale, config.warm, config.port) == ("/flag/models", 2.0, True, 6000)


def test_bad_environment_value_is_a_clear_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONGSMITH_PORT", "fifty")
    with pytest.raises(SystemExit, match="SONGSMITH_PORT='fifty'"):
        load_config(ExampleConfig, [])


def test_bad_flag_exits_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        load_config(ExampleConfig, ["--max-queue", "many"])
    assert caught.value.code == 2
    assert "--max-queue" in capsys.readouterr().err


def test_ipv6_host_is_bracketed() -> None:
    assert ServerConfig(host="::", port=1).address == "[::]:1"
    assert ServerConfig(host="0.0.0.0", port=2).address == "0.0.0.0:2"
