"""What a rule family is (`Family`: its config key, typed parameters, its table of rules and its
judge) and what every family reads (`Texts`: a batch decoded once, its words and lines found once)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from refinery.pipeline.core import Strict
from refinery.stages.rules.kernels import splitlines
from refinery.stages.words import char_classes, cjk_documents, code_points, tokens

NAN = float("nan")


def off(value) -> float:
    """An optional threshold for the kernels: NaN when the rule is off."""
    return NAN if value is None else float(value)


def codes(words: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([ord(c) for c in "".join(words)], dtype=np.uint32),
        np.cumsum([0] + [len(w) for w in words]).astype(np.int64),
    )


class Texts:
    """A batch's text as the families read it: code points, each document's offsets, whether its
    words are characters, and its word tokens and lines, each computed on first use."""

    def __init__(self, column: pa.Array, langs: pa.Array | None):
        self.column = column
        self.langs = langs
        self.cp, self.starts = code_points(column)
        self.cjk = cjk_documents(self.cp, self.starts, langs)
        self.cls = char_classes()

    @cached_property
    def tokens(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tokens(self.cp, self.starts, self.cjk)

    @cached_property
    def lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """str.splitlines of every document: line starts, ends and each document's first line."""
        return splitlines(self.cp, self.starts, self.cls)


# A family's verdict on a batch: one boolean column per rule, in the order of its `rules`, and
# the batch's text reduced by the family (C4 with `remove_lines`), or None.
Judgment = tuple[np.ndarray, pa.Array | None]


@dataclass(frozen=True)
class Family:
    """A rule family, one module each: `key` names it in the config, `Params` are its typed
    thresholds, `rules(params)` its table of rule names (each a drop reason) and `judge(params,
    texts)` its compiled verdict. Adding a rule touches the family's module only."""

    key: str
    Params: type[Strict]
    rules: Callable[[Any], list[str]]
    judge: Callable[[Any, Texts], Judgment]
