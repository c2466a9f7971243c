"""The error interceptor: typed exceptions become real gRPC statuses with google.rpc details.

INVALID_ARGUMENT carries a BadRequest with one FieldViolation per bad field; RESOURCE_EXHAUSTED
carries RetryInfo; every status carries an ErrorInfo naming the stage. An unexpected exception is
logged with its traceback and becomes INTERNAL, never UNKNOWN.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.runtime.errors import (
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    ResourceExhaustedError,
    ServiceError,
    error_for_code,
)
from services.runtime.handlers import wrap_handler

log = logging.getLogger(__name__)
ERROR_DOMAIN = "songsmith.dev"


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_for(error: ServiceError, stage: str) -> status_pb2.Status:
    """The google.rpc.Status (code, message, details) that `error` is reported as."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=type(error).__name__, domain=ERROR_DOMAIN, metadata={"stage": stage}
            )
        )
    ]
    if isinstance(error, InvalidArgumentError):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    if isinstance(error, ResourceExhaustedError):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    code = getattr(code_pb2, error.code.name)
    return status_pb2.Status(code=code, message=error.message, details=details)


def field_violations(error: grpc.RpcError) -> list[FieldViolation]:
    """The BadRequest field violations a failed call carries (empty when there are none)."""
    status = rpc_status.from_call(error)
    found: list[FieldViolation] = []
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            detail.Unpack(request)
            found += [FieldViolation(v.field, v.description) for v in request.field_violations]
    return found


def retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay in seconds a failed call carries, or None."""
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None


def error_from_call(error: grpc.RpcError, stage: str) -> ServiceError:
    """The typed error a failed call to `stage` stands for, keeping field violations and retry
    delays, so a caller can pass a stage's status on with its details intact."""
    code, details = error.code(), error.details() or ""
    message = f"{stage}: {details}" if details else f"{stage} failed with {code.name}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations = field_violations(error)
        return InvalidArgumentError(violations=violations or [FieldViolation("request", details)])
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhaustedError(message, retry_after_s=retry_delay(error) or 1.0)
    return error_for_code(code, message)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns exceptions raised by handlers (or their streams) into gRPC statuses."""

    def __init__(self, stage: str) -> None:
        """`stage` names the service in each status's ErrorInfo."""
        self._stage = stage

    def intercept_service(self, continuation, handler_call_details):
        """Wrap every handler so its exceptions abort the call with a proper status."""
        return wrap_handler(continuation(handler_call_details), handler_call_details.method, self._wrap)

    def _abort(self, context: grpc.ServicerContext, exc: Exception, method: str) -> None:
        if context.code() not in (None, grpc.StatusCode.OK):
            raise exc  # already aborted by grpc itself; keep its status
        if isinstance(exc, grpc.RpcError) and not context.is_active():
            # Reading the request stream of a call its caller cancelled, dropped or let expire:
            # not a fault of this service. grpc knows its own error and ends the call quietly.
            log.debug("%s ended by its caller", method)
            raise exc
        if not isinstance(exc, ServiceError):
            log.exception("unexpected error in %s", method)
            exc = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        context.abort_with_status(rpc_status.to_status(status_for(exc, self._stage)))

    def _wrap(self, behavior: Callable[..., Any], streaming: bool, method: str) -> Callable[..., Any]:
        if streaming:

            def stream_behavior(request, context):
                try:
                    yield from behavior(request, context)
                except Exception as exc:
                    self._abort(context, exc, method)

            return stream_behavior

        def unary_behavior(request, context):
            try:
                return behavior(request, context)
            except Exception as exc:
                self._abort(context, exc, method)

        return unary_behavior
