"""The model families the generation stage can host; the model folder's files say which one."""

from __future__ import annotations

from services.diffusion.diffrhythm1 import FAMILY as DIFFRHYTHM1
from services.diffusion.diffrhythm2 import FAMILY as DIFFRHYTHM2
from services.diffusion.engine import GenerationEngine
from services.diffusion.musicgen import FAMILY as MUSICGEN
from services.runtime.families import FamilyRegistry

GENERATION_FAMILIES: FamilyRegistry[GenerationEngine] = FamilyRegistry("diffusion")
GENERATION_FAMILIES.register(DIFFRHYTHM2)
GENERATION_FAMILIES.register(DIFFRHYTHM1)
GENERATION_FAMILIES.register(MUSICGEN)
