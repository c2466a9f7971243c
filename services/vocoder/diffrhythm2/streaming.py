"""The names the vocoder servicer imported from here before the streaming decoder became the
stage's (services/vocoder/streaming.py); nothing else uses this module, and it goes once the
family-agnostic servicer imports from services.vocoder.engine."""

from __future__ import annotations

from services.vocoder.engine import PcmPiece
from services.vocoder.streaming import StreamingDecoder

__all__ = ["PcmPiece", "StreamingDecoder"]
