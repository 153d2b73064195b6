"""Checks every test of a whole run makes of its statistics."""

from __future__ import annotations


def check_invariants(stats: list[dict]) -> None:
    """Per stage, in = kept + dropped + errored, and each stage reads what the one before kept."""
    previous = None
    for s in stats:
        assert s["docs_in"] == s["docs_kept"] + s["docs_dropped"] + s["docs_errored"], s["stage"]
        if previous is not None:
            assert s["docs_in"] == previous["docs_kept"], s["stage"]
        previous = s
