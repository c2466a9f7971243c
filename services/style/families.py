"""The style model families the style stage can host; the model folder's files say which one."""

from __future__ import annotations

from services.runtime.families import FamilyRegistry
from services.style.engine import StyleEngine
from services.style.muq_mulan import FAMILY as MUQ_MULAN
from services.style.musicgen import FAMILY as MUSICGEN

STYLE_FAMILIES: FamilyRegistry[StyleEngine] = FamilyRegistry("style")
STYLE_FAMILIES.register(MUQ_MULAN)
STYLE_FAMILIES.register(MUSICGEN)
