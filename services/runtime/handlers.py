"""Wrap the behaviour of a gRPC method handler, whatever its streaming kind.

Server interceptors in this package change how a call runs (map errors, hold an admission slot,
count metrics); this module applies such a wrapper to all four handler kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import grpc

# A wrapper receives the original behaviour, whether the response is a stream, and the method name,
# and returns a behaviour with the same signature.
BehaviorWrapper = Callable[[Callable[..., Any], bool, str], Callable[..., Any]]


def wrap_handler(handler: grpc.RpcMethodHandler | None, method: str, wrap: BehaviorWrapper):
    """A copy of `handler` whose behaviour is `wrap(behaviour, response_streaming, method)`."""
    if handler is None:
        return None
    if handler.unary_unary:
        factory, behavior, streaming = grpc.unary_unary_rpc_method_handler, handler.unary_unary, False
    elif handler.unary_stream:
        factory, behavior, streaming = grpc.unary_stream_rpc_method_handler, handler.unary_stream, True
    elif handler.stream_unary:
        factory, behavior, streaming = grpc.stream_unary_rpc_method_handler, handler.stream_unary, False
    else:
        factory, behavior, streaming = grpc.stream_stream_rpc_method_handler, handler.stream_stream, True
    return factory(
        wrap(behavior, streaming, method),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def is_infrastructure(method: str) -> bool:
    """True for health and reflection calls, which bypass admission control and metrics."""
    return method.startswith(("/grpc.health.", "/grpc.reflection."))


def guarded(
    behavior: Callable[..., Any],
    streaming: bool,
    guard: Callable[[grpc.ServicerContext], AbstractContextManager[Any]],
) -> Callable[..., Any]:
    """`behavior` run inside `guard(context)`, held until the last response of a stream is sent."""
    if streaming:

        def stream_behavior(request, context):
            with guard(context):
                yield from behavior(request, context)

        return stream_behavior

    def unary_behavior(request, context):
        with guard(context):
            return behavior(request, context)

    return unary_behavior


class ApplicationInterceptor(grpc.ServerInterceptor):
    """Wraps application calls with `wrap`; health and reflection calls pass straight through."""

    def intercept_service(self, continuation, handler_call_details):
        """Apply `wrap` to the handler of every application method."""
        handler = continuation(handler_call_details)
        if is_infrastructure(handler_call_details.method):
            return handler
        return wrap_handler(handler, handler_call_details.method, self.wrap)

    def wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        """The behaviour that runs instead of `behavior`."""
        raise NotImplementedError
