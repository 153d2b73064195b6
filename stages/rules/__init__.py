"""Heuristic quality rules: Gopher quality and repetition, C4 (+ paragraph, bad words), FineWeb
and the InternLM2 report's format rules, compiled over each Arrow batch; one module per family."""

from refinery.stages.rules.stage import FAMILIES, Rules, RulesParams, rule_names

__all__ = ["FAMILIES", "Rules", "RulesParams", "rule_names"]
