"""The built-in stages, registered with the engine by their YAML name; each module is imported
only when a job uses its stage."""

from __future__ import annotations

from refinery.pipeline.registry import register

register(
    {
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
)
