"""Stages by their YAML name. Packages register their stages here ("module:Class" strings, so a
module is imported only when a job uses its stage); the built-in ones, in `refinery.stages`,
register when that package is first imported, which every lookup makes sure of.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from refinery.pipeline.stage import Stage

STAGES: dict[str, str] = {}
BUILT_IN = "refinery.stages"


def register(stages: dict[str, str]) -> None:
    """Add `{kind: "module:Class"}` entries."""
    STAGES.update(stages)


def known_stages() -> dict[str, str]:
    importlib.import_module(BUILT_IN)  # registers the built-in stages the first time
    return STAGES


def stage_class(kind: str) -> type[Stage]:
    """The class registered under `kind`; KeyError names the known stages."""
    try:
        target = known_stages()[kind]
    except KeyError:
        raise KeyError(f"unknown stage {kind!r}; known stages: {', '.join(sorted(STAGES))}") from None
    module, _, attr = target.partition(":")
    cls: type[Stage] = getattr(importlib.import_module(module), attr)
    return cls
