"""What a handler knows about its call: the caller's deadline and whether it went away."""

from __future__ import annotations

import grpc

from services.runtime.cancellation import CancellationToken


def call_token(context: grpc.ServicerContext) -> CancellationToken:
    """A token carrying the call's deadline that is cancelled when the call ends or is cancelled.

    Engines poll it, so work stops soon after the caller cancels, disconnects or runs out of time.
    """
    token = CancellationToken.with_timeout(context.time_remaining())
    if not context.add_callback(lambda: token.cancel("the call was cancelled or has ended")):
        token.cancel("the call had already ended")
    return token
