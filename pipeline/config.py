"""Job configuration: YAML validated into typed models before any work starts.

Every problem becomes one `ConfigError` naming the file, the key and the reason.
"""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, NoReturn

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

# ConfigError is re-exported: every config problem of a job is raised as one.
from refinery.pipeline.core import ConfigError as ConfigError
from refinery.pipeline.core import Strict
from refinery.pipeline.registry import known_stages, stage_class
from refinery.pipeline.storage import expand, is_local

if TYPE_CHECKING:
    from refinery.pipeline.stage import Stage

ROUTE_NAME = re.compile(r"[A-Za-z0-9_-]+")


class InputConfig(Strict):
    paths: list[str] = Field(min_length=1)
    format: Literal["jsonl", "parquet", "warc", "html"]
    text_key: str = "text"
    id_key: str = "id"
    url_key: str = "url"
    # Documents are handed to stages in batches of about this many bytes.
    batch_bytes: int = Field(default=8 << 20, gt=0)
    # A larger document (its text, or its raw page) is dropped as `too_large` when read, or with
    # `oversize: truncate` cut to this size (counted as `truncated` in the read statistics), so
    # that no stage holds one document of unbounded size.
    max_doc_bytes: int = Field(default=5_000_000, gt=0)
    oversize: Literal["drop", "truncate"] = "drop"
    # Every path and glob must match a file, or the job is refused; true lets some match none.
    allow_missing: bool = False

    @field_validator("paths", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class RayConfig(Strict):
    address: str | None = None
    # Actors per model-holding stage; default: one per CPU the cluster has.
    actors: int | None = Field(default=None, gt=0)


class SparkConfig(Strict):
    master: str = "local[2]"
    conf: dict[str, str] = {}


class StageSpec(Strict):
    """One entry of `stages:` after validation: the class, its params and its options."""

    kind: str
    name: str
    annotate_only: bool = False
    route: str | None = None
    params: Any = None


class JobConfig(Strict):
    input: InputConfig
    stages: list[dict[str, Any]] = []
    runner: Literal["local", "ray", "spark"] = "ray"
    workers: int | None = Field(default=None, gt=0)
    ray: RayConfig = RayConfig()
    spark: SparkConfig = SparkConfig()
    output: str | None = None


class Job(BaseModel):
    """A validated job: the raw config, the resolved input files and the stage specs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    file: str
    config: JobConfig
    files: list[str]
    stages: list[StageSpec]

    def build_stages(self) -> list[Stage]:
        return [
            stage_class(s.kind)(s.params, name=s.name, annotate_only=s.annotate_only, route=s.route)
            for s in self.stages
        ]

    def resolved(self) -> dict[str, Any]:
        """The config as it will run: every default filled in (written to RUN/job.yaml)."""
        data = self.config.model_dump(mode="json")
        data["stages"] = [
            {
                "stage": s.kind,
                "name": s.name,
                "annotate_only": s.annotate_only,
                "route": s.route,
                **s.params.model_dump(mode="json"),
            }
            for s in self.stages
        ]
        data["input"]["files"] = self.files
        return data


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _raise_validation(file: str, prefix: str, err: ValidationError) -> NoReturn:
    first = err.errors()[0]
    key = _key(tuple(p for p in (prefix,) if p) + tuple(first["loc"]))
    reason = first["msg"]
    if first["type"] == "extra_forbidden":
        reason = "unknown key"
    raise ConfigError(file, key, reason) from None


def expand_paths(patterns: list[str], base: Path, allow_missing: bool = False) -> list[str]:
    """Local paths and globs (relative to the config's folder or the working dir) and URIs, as
    files; a pattern that matches none is a ValueError unless `allow_missing`."""
    files: list[str] = []
    for pattern in patterns:
        if not is_local(pattern):
            found = expand(pattern)
        else:
            local = pattern.removeprefix("file://")
            candidates = [local] if os.path.isabs(local) else [local, str(base / local)]
            found = []
            for candidate in candidates:
                found = sorted(p for p in glob.glob(candidate, recursive=True) if os.path.isfile(p))
                if found:
                    break
        if not found and not allow_missing:
            raise ValueError(f"{pattern!r} matches no file (set input.allow_missing: true to allow it)")
        files.extend(found)
    return sorted(dict.fromkeys(files))


def validate(data: Any, file: str = "<config>", base: Path | None = None) -> Job:
    if not isinstance(data, dict):
        raise ConfigError(file, "(top level)", "expected a mapping of keys to values")
    try:
        config = JobConfig.model_validate(data)
    except ValidationError as err:
        _raise_validation(file, "", err)
    specs: list[StageSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(config.stages):
        key = f"stages[{i}]"
        if not isinstance(entry, dict) or "stage" not in entry:
            raise ConfigError(file, key, "each stage needs a `stage:` name")
        entry = dict(entry)
        kind = entry.pop("stage")
        if kind not in known_stages():
            raise ConfigError(
                file, f"{key}.stage", f"unknown stage {kind!r}; known: {', '.join(sorted(known_stages()))}"
            )
        name = entry.pop("name", None)
        annotate_only = entry.pop("annotate_only", False)
        if not isinstance(annotate_only, bool):
            raise ConfigError(file, f"{key}.annotate_only", "expected true or false")
        route = entry.pop("route", None)
        if route is not None:
            if not isinstance(route, str) or not ROUTE_NAME.fullmatch(route):
                raise ConfigError(file, f"{key}.route", "expected a name of letters, digits, '-' or '_'")
            annotate_only = True
        if name is None:
            seen[kind] = seen.get(kind, 0) + 1
            name = kind if seen[kind] == 1 else f"{kind}_{seen[kind]}"
        if name in {s.name for s in specs} or name == "read":
            raise ConfigError(file, f"{key}.name", f"stage name {name!r} is used twice")
        cls = stage_class(kind)
        try:
            params = cls.Params.model_validate(entry)
        except ValidationError as err:
            _raise_validation(file, key, err)
        try:
            params = cls.check_params(params, base or Path("."))
        except ValueError as err:
            raise ConfigError(file, key, str(err)) from None
        if route is not None and cls.is_global:
            raise ConfigError(file, f"{key}.route", "a global stage cannot route documents")
        specs.append(StageSpec(kind=kind, name=name, annotate_only=annotate_only, route=route, params=params))
    if config.input.format in ("warc", "html") and (not specs or specs[0].kind != "extract"):
        raise ConfigError(file, "stages[0]", f"{config.input.format} input needs `extract` as the first stage")
    try:
        files = expand_paths(config.input.paths, base or Path("."), config.input.allow_missing)
    except (OSError, ValueError) as err:  # a StorageError is a ValueError
        raise ConfigError(file, "input.paths", str(err)) from None
    if not files:
        raise ConfigError(file, "input.paths", f"no input file matches {config.input.paths}")
    return Job(file=file, config=config, files=files, stages=specs)


def load_job(path: str | os.PathLike[str], overrides: Mapping[str, object] | None = None) -> Job:
    """Read and validate a job file; `overrides` (from the CLI) replace top-level keys."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "(file)", "no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "(syntax)", str(err).replace("\n", " ")) from None
    if isinstance(data, dict):
        for key, value in (overrides or {}).items():
            if value is not None:
                data[key] = value
    return validate(data, str(path), path.parent)
