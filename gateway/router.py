"""The routed models: for each, a client per stage it uses, shared between models that share a stage.

Two models on one tokenizer (or one MuQ-MuLan style encoder) use one client for it, so a shared stage
has one channel or one loaded engine. The generation stage's ModelInfo (family, revision, inputs)
is asked once and kept; it is asked again after a failure. The chart stage, when there is one, serves
the songs of every model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.local_stages import LocalChart, LocalGeneration, LocalStyle, LocalTokenizer, LocalVocoder
from gateway.models import LOCAL, ModelRoute
from gateway.remote_stages import RemoteChart, RemoteGeneration, RemoteStyle, RemoteTokenizer, RemoteVocoder
from gateway.stages import (
    ChartClient,
    GenerationClient,
    StageClient,
    StyleClient,
    TokenizerClient,
    VocoderClient,
)
from services.runtime.cancellation import CancellationToken
from services.runtime.channels import ChannelSecurity, create_channel
from services.runtime.errors import FailedPreconditionError, NotFoundError, ServiceError
from services.runtime.model_info import ModelInfo
from services.runtime.model_service import model_info_to_proto
from songsmith.v1 import song_pb2

# How long ListModels waits for each stage's answer.
INFO_TIMEOUT_S = 2.0
_REMOTE = {
    "tokenizer": RemoteTokenizer,
    "style": RemoteStyle,
    "diffusion": RemoteGeneration,
    "vocoder": RemoteVocoder,
}


class RoutedModel:
    """One model the gateway routes to: its stage clients and its generation stage's ModelInfo."""

    def __init__(self, route: ModelRoute, clients: dict[str, Any]) -> None:
        """Use `clients` (stage name -> client) for the stages `route` names."""
        self.name = route.name
        self.route = route
        self.tokenizer: TokenizerClient | None = clients.get("tokenizer")
        self.style: StyleClient | None = clients.get("style")
        self.generation: GenerationClient = clients["diffusion"]
        self.vocoder: VocoderClient = clients["vocoder"]
        self._clients = clients
        self._infos: dict[str, ModelInfo] = {}
        self._lock = threading.Lock()

    def stages(self) -> list[tuple[str, StageClient]]:
        """(stage name, client) for every stage the model uses, in pipeline order."""
        return list(self._clients.items())

    def info(self, token: CancellationToken, stage: str = "diffusion", refresh: bool = False) -> ModelInfo:
        """A stage's ModelInfo, by default the generation stage's: the model's family, revision and
        inputs (asked again when `refresh` is set or the stage never answered)."""
        with self._lock:
            cached = self._infos.get(stage)
        if cached is not None and not refresh:
            return cached
        info = self._clients[stage].model_info(token)
        with self._lock:
            self._infos[stage] = info
        return info


class Router:
    """Every routed model, by name (the first is the default), and the chart stage if there is one."""

    def __init__(
        self,
        routes: list[ModelRoute],
        security: ChannelSecurity | None = None,
        device: str = "cpu",
        chart_target: str = "",
    ) -> None:
        """Open a client per distinct (stage, target) of `routes`, and one for the chart stage at
        `chart_target` (a gRPC target or `local:PATH`; empty: no charts); in-process engines load here."""
        self._security = security
        self._device = device
        self._clients: dict[tuple[str, str], Any] = {}
        self.models = [
            RoutedModel(route, {stage: self._client(route, stage) for stage in route.stages})
            for route in routes
        ]
        self.chart: ChartClient | None = self._open_chart(chart_target) if chart_target else None
        self._chart_info: ModelInfo | None = None

    def _open_chart(self, target: str) -> ChartClient:
        if target.startswith(f"{LOCAL}:"):
            return LocalChart(Path(target.removeprefix(f"{LOCAL}:")), self._device)
        channel = create_channel(target, security=self._security)
        return RemoteChart(target, channel)

    def chart_info(self, token: CancellationToken, refresh: bool = False) -> ModelInfo:
        """What the chart stage hosts (asked again when `refresh` is set or it never answered)."""
        if self.chart is None:
            raise FailedPreconditionError("this gateway has no chart stage")
        if self._chart_info is None or refresh:
            self._chart_info = self.chart.model_info(token)
        return self._chart_info

    def _client(self, route: ModelRoute, stage: str) -> Any:
        key = (stage, route.stages[stage])
        if key not in self._clients:
            self._clients[key] = self._open(route, stage)
        return self._clients[key]

    def _open(self, route: ModelRoute, stage: str) -> Any:
        if not route.is_local(stage):
            target = route.stages[stage]
            channel = create_channel(target, security=self._security)
            return _REMOTE[stage](target, channel)
        path = route.local_path(stage)
        local: dict[str, Callable[[], Any]] = {
            "tokenizer": LocalTokenizer,
            "style": lambda: LocalStyle(_folder(path, route, stage), self._device),
            "diffusion": lambda: LocalGeneration(_folder(path, route, stage), self._device),
            "vocoder": lambda: LocalVocoder(_folder(path, route, stage), self._device),
        }
        return local[stage]()

    @property
    def default(self) -> RoutedModel:
        """The model used when a request names none."""
        return self.models[0]

    def get(self, name: str) -> RoutedModel:
        """The model called `name` ("" for the default); NOT_FOUND for a model not routed here."""
        if not name:
            return self.default
        model = next((model for model in self.models if model.name == name), None)
        if model is None:
            routed = ", ".join(model.name for model in self.models)
            raise NotFoundError(f"no model {name!r}; this gateway routes {routed}")
        return model

    def list_models(self) -> song_pb2.ListModelsResponse:
        """Every routed model with what each of its stages reports (or why it cannot say)."""
        response = song_pb2.ListModelsResponse()
        for model in self.models:
            entry = response.models.add(name=model.name, default=model is self.default)
            for stage, client in model.stages():
                route = entry.stages.add(stage=stage, target=client.target)
                try:
                    info = client.model_info(CancellationToken.with_timeout(INFO_TIMEOUT_S))
                except ServiceError as exc:
                    route.error = f"{exc.code.name}: {exc.message}"
                    continue
                route.model.CopyFrom(model_info_to_proto(info))
                if stage == "diffusion":
                    entry.model.CopyFrom(route.model)
            if self.chart is not None:
                self._list_chart_stage(entry.stages.add(stage="chart", target=self.chart.target))
        return response

    def _list_chart_stage(self, route: song_pb2.StageRoute) -> None:
        try:
            route.model.CopyFrom(
                model_info_to_proto(
                    self.chart_info(CancellationToken.with_timeout(INFO_TIMEOUT_S), refresh=True)
                )
            )
        except ServiceError as exc:
            route.error = f"{exc.code.name}: {exc.message}"

    def close(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            client.close()
        if self.chart is not None:
            self.chart.close()


def _folder(path: Path | None, route: ModelRoute, stage: str) -> Path:
    if path is None:
        raise ValueError(f"model {route.name!r}: the in-process {stage} stage needs local:PATH")
    return path
