"""A gRPC proxy on 127.0.0.1 in front of a real stage that turns calls away: the first calls of the
methods it is told to refuse get RESOURCE_EXHAUSTED with a retry delay (as a stage at capacity
answers); every other call is forwarded as raw bytes, streams included."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
from grpc_status import rpc_status

from services.runtime.errors import ResourceExhaustedError
from services.runtime.interceptor import status_for


class RefusingProxy(grpc.GenericRpcHandler):
    """Forwards every call to `target`, refusing the first `refusals` calls of each of `methods`."""

    def __init__(self, target: str, methods: set[str], refusals: int = 1, retry_after_s: float = 0.2) -> None:
        """Listen on a free port of 127.0.0.1 (`address`) until `close`."""
        self._methods = methods
        self._refusals = refusals
        self._retry_after_s = retry_after_s
        self._channel = grpc.insecure_channel(target)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self._server.add_generic_rpc_handlers((self,))
        self.address = f"127.0.0.1:{self._server.add_insecure_port('127.0.0.1:0')}"
        self._server.start()

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        """Every method is relayed as a stream of raw messages."""
        method = handler_call_details.method
        return grpc.stream_stream_rpc_method_handler(
            lambda requests, context: self._relay(method, requests, context)
        )

    def _relay(
        self, method: str, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Iterator[bytes]:
        with self._lock:
            self.calls[method] += 1
            refuse = method in self._methods and self.refused[method] < self._refusals
            if refuse:
                self.refused[method] += 1
        if refuse:
            busy = ResourceExhaustedError("the stage is at capacity", retry_after_s=self._retry_after_s)
            context.abort_with_status(rpc_status.to_status(status_for(busy, "proxy")))
        call = self._channel.stream_stream(method)(requests, timeout=context.time_remaining())
        context.add_callback(call.cancel)
        try:
            yield from call
        except grpc.RpcError as exc:
            status = rpc_status.from_call(exc)
            if status is not None:
                context.abort_with_status(rpc_status.to_status(status))
            context.abort(exc.code(), exc.details() or "")

    def close(self) -> None:
        """Stop listening."""
        self._server.stop(0)
        self._channel.close()
