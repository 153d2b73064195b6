"""Resolve model and blocklist paths from config: absolute, or relative to the config's folder,
the working directory or the repository (where the shipped files live)."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def resolve_path(path: str, base: Path | None = None) -> Path:
    """The first existing candidate, else the path as given (the caller reports it missing)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    for root in (base, Path.cwd(), REPO_ROOT):
        if root is not None and (Path(root) / candidate).exists():
            return (Path(root) / candidate).resolve()
    return candidate
