"""Jobs on a Ray cluster through the Ray Jobs API (`refinery submit`, `refinery jobs ...`) and the
statistics report (`refinery report`).

A submitted job runs `refinery run CONF --out RUN --runner ray` as the job's driver on the
cluster; Ray sets RAY_ADDRESS for job drivers, so the driver joins that cluster's Ray.

What travels with the job (its runtime environment):
- the config, always: a copy in the job's working_dir, with relative input paths and
  stage files that exist here made absolute (the cluster reads the same paths: a shared
  filesystem, a local head, or URIs, which pass unchanged);
- the project's code, with `--code ship`: the package folders and bundled files (models,
  blocklists, conf) staged as one `refinery` module in `py_modules`, for clusters whose image
  lacks lm-refinery. Then stage files under the project are kept relative, so they resolve
  against the shipped copy (also placed in the job's working directory). `--code installed` (the
  default) relies on the cluster's own install: nothing is uploaded but the config, and no
  editable checkout is shadowed.

Authentication: Ray's token authentication stays on. The token is sent as an
`Authorization: Bearer` header, taken from --token-file, else RAY_AUTH_TOKEN, else the file named
by RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token (where `ray start` and `ray get-auth-token
--generate` keep it): the same sources, in the same order, as Ray's own token loader.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from refinery.pipeline.resources import BUNDLED, bundled, package_root

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

PACKAGES = ("pipeline", "stages", "classifiers", "tokenize", "loaders", "trainer")
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class ServiceError(RuntimeError):
    """A problem reaching or using the cluster, reported as one line."""


def read_token(token_file: str | None = None) -> str | None:
    """The cluster's authentication token from the first source that has one."""
    candidates: list[str | None] = [token_file] if token_file else []
    if not token_file:
        if os.environ.get("RAY_AUTH_TOKEN", "").strip():
            return os.environ["RAY_AUTH_TOKEN"].strip()
        candidates += [os.environ.get("RAY_AUTH_TOKEN_PATH"), str(Path.home() / ".ray" / "auth_token")]
    for path in filter(None, candidates):
        try:
            token = Path(path).expanduser().read_text().strip()
        except FileNotFoundError:
            if token_file:
                raise ServiceError(f"{token_file}: no such token file") from None
            continue
        if token:
            return token
    return None


def _address(address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise ServiceError("give --address http://HOST:8265 (or set RAY_API_SERVER_ADDRESS)")
    return address if "://" in address else f"http://{address}"


def client(address: str | None = None, token_file: str | None = None) -> JobSubmissionClient:
    """A JobSubmissionClient for the cluster's dashboard, authenticated when a token is known."""
    from ray.job_submission import JobSubmissionClient

    token = read_token(token_file)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return JobSubmissionClient(_address(address), headers=headers)
    except (ConnectionError, RuntimeError) as err:
        raise ServiceError(f"cannot reach the Ray Jobs API at {_address(address)}: {err}") from None


def project_root() -> Path:
    """The folder that holds the package's source and bundled folders (the checkout, site-packages'
    `refinery/`, or a shipped copy)."""
    return package_root()


def stage_code(into: Path) -> Path:
    """Copy the package folders and bundled files into `into/refinery`, the layout imports expect."""
    target = into / "refinery"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    for name in PACKAGES:
        spec = importlib.util.find_spec(f"refinery.{name}")
        if spec is None or spec.submodule_search_locations is None:
            raise ModuleNotFoundError(f"refinery.{name} is not a package here", name=f"refinery.{name}")
        shutil.copytree(list(spec.submodule_search_locations)[0], target / name, ignore=ignore)
    copy_bundled(target)
    return target


def copy_bundled(target: Path) -> None:
    """The project's bundled files (models, blocklists, conf) under `target`, same relative paths;
    FileNotFoundError when this install lacks one (the job would fail on the cluster)."""
    for name in BUNDLED:
        shutil.copytree(bundled(name), target / name, ignore=shutil.ignore_patterns("__pycache__", ".*"))


def _portable(value: str, bases: list[Path], keep_under: Path | None) -> str:
    """A relative path that exists here, made absolute (or kept relative to the shipped project)."""
    if "://" in value or os.path.isabs(value) or not value.strip():
        return value
    for base in bases:
        candidate = base / value
        if candidate.exists() or (glob.has_magic(value) and glob.glob(str(candidate), recursive=True)):
            absolute = Path(os.path.abspath(candidate))
            if keep_under is not None and absolute.is_relative_to(keep_under):
                return str(absolute.relative_to(keep_under))
            return str(absolute)
    return value


def portable_config(conf: Path, ship_code: bool) -> dict[str, Any]:
    """The config as the cluster should read it: paths that exist here made absolute."""
    data = yaml.safe_load(conf.read_text())
    if not isinstance(data, dict):
        raise ServiceError(f"{conf}: expected a mapping of keys to values")
    bases = [conf.parent.resolve(), Path.cwd()]
    keep = project_root() if ship_code else None
    inputs = data.get("input") or {}
    paths = inputs.get("paths")
    if isinstance(paths, str):
        inputs["paths"] = [_portable(paths, bases, None)]
    elif isinstance(paths, list):
        inputs["paths"] = [_portable(p, bases, None) if isinstance(p, str) else p for p in paths]
    for entry in data.get("stages") or []:
        if not isinstance(entry, dict):
            continue
        for key, value in entry.items():
            if key not in ("stage", "name"):
                entry[key] = _portable_values(value, bases, keep)
    data.pop("output", None)
    return data


def _portable_values(value: object, bases: list[Path], keep: Path | None) -> object:
    """Every string inside a stage parameter, nested mappings and lists included (a classifier's
    `path` sits two levels down), made portable."""
    if isinstance(value, str):
        return _portable(value, bases, keep)
    if isinstance(value, list):
        return [_portable_values(v, bases, keep) for v in value]
    if isinstance(value, dict):
        return {k: _portable_values(v, bases, keep) for k, v in value.items()}
    return value


def check_config(conf: Path, runner: str) -> None:
    """Fail before submitting on config errors; missing inputs only warn (the cluster may have them)."""
    from refinery.pipeline.config import ConfigError, load_job

    try:
        load_job(conf, {"runner": runner})
    except ConfigError as err:
        if err.key != "input.paths":
            raise
        print(f"warning: {err} here; the cluster must be able to read them", file=sys.stderr)


def submit(
    conf: str | Path,
    out: str,
    address: str | None = None,
    *,
    runner: str = "ray",
    code: str = "installed",
    pip: list[str] | None = None,
    token_file: str | None = None,
    submission_id: str | None = None,
) -> str:
    """Submit a job to the cluster; returns its submission id."""
    conf = Path(conf)
    check_config(conf, runner)
    ship = code == "ship"
    if "://" not in out:
        out = os.path.abspath(out)
    jobs = client(address, token_file)
    with tempfile.TemporaryDirectory(prefix="refinery-submit-") as tmp:
        workdir = Path(tmp) / "job"
        workdir.mkdir()
        (workdir / conf.name).write_text(yaml.safe_dump(portable_config(conf, ship), sort_keys=False))
        runtime_env: dict[str, object] = {"working_dir": str(workdir), "env_vars": {"RAY_DISABLE_USAGE_STATS": "1"}}
        command = "refinery"
        if ship:
            # bundled files twice: under the module for the package's own defaults, and in the
            # working directory, where every stage resolves relative paths from the config
            runtime_env["py_modules"] = [str(stage_code(Path(tmp)))]
            copy_bundled(workdir)
            command = "python -m refinery.pipeline.cli"
        if pip:
            runtime_env["pip"] = list(pip)
        entrypoint = f"{command} run {shlex.quote(conf.name)} --out {shlex.quote(out)} --runner {runner}"
        return jobs.submit_job(
            entrypoint=entrypoint,
            runtime_env=runtime_env,
            submission_id=submission_id,
            metadata={"refinery_config": str(conf), "refinery_out": out},
        )


def wait(jobs: JobSubmissionClient, job_id: str, timeout: float | None = None, poll: float = 1.0) -> str:
    """Poll until the job is finished (or the timeout passes); returns the last status seen."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = str(jobs.get_job_status(job_id).value)
        if status in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
            return status
        time.sleep(poll)


def _submit_cmd(args: argparse.Namespace) -> int:
    conf = Path(args.conf)
    out = args.out
    if out is None and conf.is_file():
        out = (yaml.safe_load(conf.read_text()) or {}).get("output")
    if not out:
        print(f"{conf}: output: give --out RUN (a path or URI the cluster can write)", file=sys.stderr)
        return 2
    job_id = submit(
        conf,
        out,
        args.address,
        runner=args.runner,
        code=args.code,
        pip=args.pip,
        token_file=args.token_file,
        submission_id=args.job_id,
    )
    print(f"submitted {conf} to {_address(args.address)}; output in {out}", file=sys.stderr)
    print(job_id)
    return 0


def _jobs_cmd(args: argparse.Namespace) -> int:
    jobs = client(args.address, args.token_file)
    if args.action == "list":
        rows = sorted(jobs.list_jobs(), key=lambda j: j.start_time or 0)
        if args.json:
            print(json.dumps([j.dict() if hasattr(j, "dict") else vars(j) for j in rows], default=str, indent=2))
            return 0
        print(f"{'job id':<32}{'status':<11}{'started (UTC)':<21}entrypoint")
        for j in rows:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(j.start_time / 1000)) if j.start_time else "-"
            print(f"{(j.submission_id or j.job_id or '-'):<32}{str(j.status.value):<11}{started:<21}{j.entrypoint}")
        return 0
    if args.action == "status":
        status = wait(jobs, args.job_id, args.timeout) if args.wait else str(jobs.get_job_status(args.job_id).value)
        info = jobs.get_job_info(args.job_id)
        if info.message:
            print(info.message)
        print(status)
        return 0 if not args.wait or status == "SUCCEEDED" else 1
    if args.action == "logs":
        if args.follow:
            import asyncio

            async def follow() -> None:
                async for lines in jobs.tail_job_logs(args.job_id):
                    print(lines, end="", flush=True)

            asyncio.run(follow())
        else:
            print(jobs.get_job_logs(args.job_id), end="")
        return 0
    stopped = jobs.stop_job(args.job_id)
    print("stop requested" if stopped else "job was already finished", file=sys.stderr)
    print(wait(jobs, args.job_id, timeout=args.timeout))
    return 0


Command = Callable[[argparse.Namespace], int]


def _guard(func: Command) -> Command:
    """Cluster and HTTP failures (the Jobs SDK raises RuntimeError, ConnectionError and RayError) become one line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except Exception as err:
            from ray.exceptions import RayError  # AuthenticationError among them

            if not isinstance(err, (RuntimeError, OSError, RayError)):
                raise
            print(f"error: {err}", file=sys.stderr)
            return 1

    return run


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address", help="Ray dashboard / Jobs API, http://HOST:8265 (default: RAY_API_SERVER_ADDRESS, RAY_ADDRESS)"
    )
    p.add_argument(
        "--token-file",
        help="file with the cluster's auth token (default: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)",
    )


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    submit_p = subparsers.add_parser("submit", help="submit a job to a Ray cluster (Ray Jobs API); prints the job id")
    submit_p.add_argument("conf")
    _connection_args(submit_p)
    submit_p.add_argument("--out", help="run directory as the cluster sees it (default: the config's `output:`)")
    submit_p.add_argument(
        "--runner", choices=("ray", "local", "spark"), default="ray", help="runner the driver uses on the cluster"
    )
    submit_p.add_argument(
        "--code",
        choices=("installed", "ship"),
        default="installed",
        help="installed: the cluster has lm-refinery; ship: upload this project's code and bundled files",
    )
    submit_p.add_argument(
        "--pip", action="append", help="extra requirement installed in the job's environment (repeatable)"
    )
    submit_p.add_argument("--job-id", help="submission id to use (default: generated by Ray)")
    submit_p.set_defaults(func=_guard(_submit_cmd))

    jobs_p = subparsers.add_parser("jobs", help="list, inspect, follow or stop jobs on a Ray cluster")
    actions = jobs_p.add_subparsers(dest="action", required=True)
    list_p = actions.add_parser("list", help="all jobs of the cluster")
    list_p.add_argument("--json", action="store_true")
    status_p = actions.add_parser(
        "status", help="a job's status (last line: PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED)"
    )
    status_p.add_argument("job_id")
    status_p.add_argument("--wait", action="store_true", help="wait until the job finishes; exit 1 unless it succeeded")
    status_p.add_argument("--timeout", type=float, help="seconds to wait at most")
    logs_p = actions.add_parser("logs", help="a job's driver log")
    logs_p.add_argument("job_id")
    logs_p.add_argument("--follow", "-f", action="store_true")
    stop_p = actions.add_parser("stop", help="stop a job; prints its status once stopped")
    stop_p.add_argument("job_id")
    stop_p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the job to stop")
    for p in (list_p, status_p, logs_p, stop_p):
        _connection_args(p)
        p.set_defaults(func=_guard(_jobs_cmd))
