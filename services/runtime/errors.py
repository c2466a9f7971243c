"""Typed errors that stages raise and the error interceptor turns into gRPC statuses.

Engines raise these (they carry no gRPC objects beyond the status code), so the same error reaches a
gRPC client as a real status with `google.rpc` details and an in-process caller as an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    """One bad field: `field` is a dotted path into the request, `description` says what is wrong."""

    field: str
    description: str


class ServiceError(Exception):
    """Base of every error a stage reports on purpose; `code` is the gRPC status it maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(ServiceError):
    """Bad input: carries one or more field violations (google.rpc.BadRequest)."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self,
        field: str | None = None,
        description: str | None = None,
        *,
        violations: list[FieldViolation] | None = None,
    ) -> None:
        found = list(violations or [])
        if field is not None:
            found.insert(0, FieldViolation(field, description or "invalid value"))
        if not found:
            raise ValueError("InvalidArgumentError needs at least one field violation")
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in found))
        self.violations = found


class ResourceExhaustedError(ServiceError):
    """Overload or a size limit: the caller may retry after `retry_after_s` (google.rpc.RetryInfo)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FailedPreconditionError(ServiceError):
    """The service cannot do this in its current state, typically because no model is installed."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class UnavailableError(ServiceError):
    """Temporarily unable to serve (loading, draining, a downstream stage down); retryable."""

    code = grpc.StatusCode.UNAVAILABLE


class CancelledError(ServiceError):
    """The caller went away or cancelled; work stops at the next check."""

    code = grpc.StatusCode.CANCELLED


class DeadlineExceededError(ServiceError):
    """The caller's deadline passed before the work finished."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(ServiceError):
    """A named thing (a job, a model) does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(ServiceError):
    """A client-chosen id is taken by a different request."""

    code = grpc.StatusCode.ALREADY_EXISTS


class UnauthenticatedError(ServiceError):
    """No credentials were presented where they are required."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(ServiceError):
    """Credentials were presented but are not accepted."""

    code = grpc.StatusCode.PERMISSION_DENIED


class InternalError(ServiceError):
    """A bug or an unexpected failure inside the service."""

    code = grpc.StatusCode.INTERNAL


_SIMPLE_ERRORS: dict[grpc.StatusCode, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        ResourceExhaustedError,
        FailedPreconditionError,
        UnavailableError,
        CancelledError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        UnauthenticatedError,
        PermissionDeniedError,
        InternalError,
    )
}


def error_for_code(code: grpc.StatusCode, message: str) -> ServiceError:
    """The typed error for a status code and its message, when nothing more is known about it
    (INVALID_ARGUMENT then names the field "request"; unknown codes become INTERNAL)."""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgumentError("request", message)
    return _SIMPLE_ERRORS.get(code, InternalError)(message)
