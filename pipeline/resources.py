"""Bundled files (models, blocklists, word lists, configs), found through the import system.

The checkout's models/, blocklists/ and conf/ are installed as the data-only packages
`refinery.models`, `refinery.blocklists` and `refinery.conf` (pyproject's package-dir), so in a
checkout, an installed wheel and the copy that `refinery submit --code ship` uploads alike they
sit beside the code packages. Looking them up from the imported `refinery.pipeline` rather than
from `__file__` paths follows wherever `refinery` was imported from.

The anchor is the regular package `refinery.pipeline`, not the data packages themselves: those
are namespace packages, for which `importlib.resources.files` gives a MultiplexedPath (no real
path for a folder) and, on Python 3.11 under setuptools' editable finder, raises
NotADirectoryError.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePosixPath

BUNDLED = ("models", "blocklists", "conf")


def package_root() -> Path:
    """The folder holding the package's code and bundled folders: the checkout, site-packages'
    `refinery/`, or a shipped copy. Wheels install unzipped, so this is a real directory."""
    anchor = resources.files("refinery.pipeline")
    if not isinstance(anchor, Path):
        raise FileNotFoundError(f"refinery is not installed as files on disk ({anchor!r}); bundled files need it")
    return anchor.parent.resolve()


def resolve_path(path: str, base: Path | None = None) -> Path:
    """A path from a config: absolute, or relative to the config's folder or the working
    directory, else a bundled file of that name ("models/classifiers/quality.ftz"); the first
    existing candidate, else the path as given (the caller reports it missing)."""
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


def bundled(relative: str) -> Path:
    """The real path of a bundled file or folder, named as in the checkout ("models/lid.176.ftz",
    "conf/rules/badwords"); FileNotFoundError naming it when the install lacks it."""
    parts = PurePosixPath(relative).parts
    if not parts or parts[0] not in BUNDLED or ".." in parts:
        raise ValueError(f"{relative!r}: not a bundled file (those are under {', '.join(BUNDLED)})")
    path = package_root().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bundled file {relative} not found (looked at {path})")
    return path
