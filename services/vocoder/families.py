"""The decoder families the vocoder stage can host; the model folder's files say which one."""

from __future__ import annotations

from services.runtime.families import FamilyRegistry
from services.vocoder.diffrhythm1 import FAMILY as DIFFRHYTHM1
from services.vocoder.diffrhythm2 import FAMILY as DIFFRHYTHM2
from services.vocoder.engine import VocoderEngine
from services.vocoder.musicgen import FAMILY as MUSICGEN

VOCODER_FAMILIES: FamilyRegistry[VocoderEngine] = FamilyRegistry("vocoder")
VOCODER_FAMILIES.register(DIFFRHYTHM2)
VOCODER_FAMILIES.register(DIFFRHYTHM1)
VOCODER_FAMILIES.register(MUSICGEN)
