"""The chart model families the chart stage can host; the model folder's files say which one."""

from __future__ import annotations

from services.chart.engine import ChartEngine
from services.chart.mug import FAMILY as MUG
from services.runtime.families import FamilyRegistry

CHART_FAMILIES: FamilyRegistry[ChartEngine] = FamilyRegistry("chart")
CHART_FAMILIES.register(MUG)
