"""Resolve model and blocklist paths from config: absolute, or relative to the config's folder or
the working directory, else a bundled file of that name ("models/classifiers/quality.ftz")."""
from __future__ import annotations

from pathlib import Path

from refinery.pipeline.resources import BUNDLED, bundled, package_root


def resolve_path(path: str, base: Path | None = None) -> Path:
    """The first existing candidate, else the path as given (the caller reports it missing)."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        return candidate
    for root in (base, Path.cwd()):
        if root is not None and (Path(root) / candidate).exists():
            return (Path(root) / candidate).resolve()
    if candidate.parts and candidate.parts[0] in BUNDLED:
        try:
            return bundled(candidate.as_posix())
        except FileNotFoundError:
            pass
    return candidate


def __getattr__(name: str):
    # REPO_ROOT: the folder holding the bundled folders, kept for bench/ (run from a checkout).
    if name == "REPO_ROOT":
        return package_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
