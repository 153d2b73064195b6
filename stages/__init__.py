"""Registry of stages by their YAML name; modules are imported only when a job uses them."""
from __future__ import annotations

import importlib

STAGES: dict[str, str] = {
    "classify": "refinery.stages.classify:Classify",
    "longctx": "refinery.stages.longctx:LongContext",
    "normalize": "refinery.stages.normalize:Normalize",
    "extract": "refinery.stages.extract:Extract",
    "langid": "refinery.stages.langid:LangId",
    "rules": "refinery.stages.rules:Rules",
    "length": "refinery.stages.length:LengthFilter",
    "pii": "refinery.stages.pii:Pii",
    "decontaminate": "refinery.stages.decontaminate:Decontaminate",
    "dedup": "refinery.stages.dedup:Dedup",
    "tokenize": "refinery.stages.tokenize_stage:Tokenize",
}


def stage_class(kind: str):
    """The class registered under `kind`; KeyError names the known stages."""
    try:
        target = STAGES[kind]
    except KeyError:
        raise KeyError(f"unknown stage {kind!r}; known stages: {', '.join(sorted(STAGES))}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
