"""What every package of refinery may import: the config error and the strict config base.

It imports nothing of refinery, so the trainer, the loaders and the tokenizer can use it without
pulling in the pipeline (whose config module knows every stage).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ConfigError(ValueError):
    """A bad config: the file, the key and the reason, said before any work starts."""

    def __init__(self, file: str, key: str, reason: str):
        super().__init__(f"{file}: {key}: {reason}")
        self.file, self.key, self.reason = file, key, reason


class Strict(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
