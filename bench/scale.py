"""Scaling of one `refinery run` job on the Ray runner: wall time and memory vs document count.

The job is the same at every size: Parquet input from bench/dedup.py's generator (8-25 real
public-domain sentences per document, 15 % edited near-copies, 8 Parquet files), then the stages
normalize, rules, dedup (MinHash: 5-word shingles, 128 permutations, Jaccard 0.7) and tokenize
(the shipped models/tokenizer/refinery-demo-8k.model). Each size runs as `refinery run JOB
--out RUN --runner ray` in its own process group and session, with RAY_TMPDIR set to a fresh
folder under the work folder, so it starts a private embedded Ray (never an existing cluster).

Measured from outside, sampling /proc every 0.2 s over the whole process tree (descendants of
the driver by ppid, plus anything left in its session or process group):
  - wall time of the command;
  - peak RSS of the driver (the `refinery` process itself);
  - peak RSS of the largest single Ray worker (titled `ray::...` or running default_worker.py;
    the dashboard and runtime-env agents are not workers);
  - peak RSS of the Ray services (raylet + gcs_server, summed at each sample).
RSS counts shared object-store pages a process has touched; RssAnon is also kept in the JSON.

Peer/goal: the pipeline is meant to stream, so memory must not grow with the input and time
must grow linearly. Relative to the smallest size N0, at every size N:
  - driver peak RSS and largest-worker peak RSS within 1.2x of N0's;
  - wall time within 1.3x of proportional: wall_N / (wall_N0 * N / N0) <= 1.3.
Input is built once per size and cached in WORK/input-N/; results go to WORK/scale.json.

    python bench/scale.py --docs 250000 1000000 4000000 [--work /tmp/scale-bench] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import dedup as dedup_bench  # noqa: E402 - sibling benchmark module (its Parquet generator)

SHARED = dedup_bench.SHARED
TOKENIZER = ROOT / "models" / "tokenizer" / "refinery-demo-8k.model"
PAGE = os.sysconf("SC_PAGE_SIZE")
INTERVAL = 0.2
GOAL_RSS = 1.2
GOAL_WALL = 1.3
SERVICES = ("raylet", "gcs_server")
AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


# --- input ---------------------------------------------------------------------------------


def build_input(n: int, dup_rate: float, folder: Path) -> dict:
    """Builds (or reuses) the Parquet input of `n` documents; returns its metadata."""
    marker = folder / "BUILT.json"
    if marker.is_file():
        meta = json.loads(marker.read_text())
        if meta.get("docs") == n and meta.get("dup_rate") == dup_rate:
            return meta
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    # In a child process, so the generator's in-memory document list never stays in this one.
    subprocess.run([sys.executable, __file__, "--build-child", str(n), str(dup_rate), str(folder)], check=True)
    meta = json.loads(marker.read_text())
    print(
        f"built {n} documents ({meta['copies']} injected copies, {meta['mb']:.0f} MB) "
        f"in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    return meta


def build_child(n: int, dup_rate: float, folder: Path) -> None:
    copies = dedup_bench.build(n, dup_rate, folder)
    mb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e6
    meta = {"docs": n, "dup_rate": dup_rate, "copies": copies, "mb": mb, "files": dedup_bench.FILES}
    (folder / "BUILT.json").write_text(json.dumps(meta))


def write_job(path: Path, input_dir: Path, workers: int | None) -> None:
    lines = [
        f"input: {{paths: ['{input_dir}/*.parquet'], format: parquet}}",
        "stages:",
        "  - {stage: normalize}",
        "  - {stage: rules}",
        "  - {stage: dedup, method: minhash, ngram: 5, num_perm: 128, threshold: 0.7}",
        f"  - {{stage: tokenize, tokenizer: '{TOKENIZER}'}}",
        "runner: ray",
    ]
    if workers:
        lines.append(f"workers: {workers}")
    path.write_text("\n".join(lines) + "\n")


# --- /proc sampling ------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, sid, starttime) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                out[int(entry)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[19])
            except (OSError, ValueError, IndexError):
                pass
    return out


def tree(root: int, table: dict) -> set[int]:
    """`root`, its descendants by ppid, and every process in its session or process group."""
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _pgid, _sid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    members = {pid for pid, (_, pgid, sid, _) in table.items() if root in (pgid, sid)} | {root}
    frontier = list(members)
    while frontier:
        for kid in kids.get(frontier.pop(), ()):
            if kid not in members:
                members.add(kid)
                frontier.append(kid)
    return {p for p in members if p in table}


def _memory(pid: int) -> tuple[int, int] | None:
    """(RSS, RssAnon) bytes, or None when the process is gone."""
    try:
        rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        anon = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
                break
        return rss, anon
    except (OSError, ValueError, IndexError):
        return None


def _role(pid: int) -> tuple[str, str]:
    """('worker' | 'service' | 'agent' | 'other', short name), from the argv (not a substring of
    the whole cmdline: the raylet's own arguments name default_worker.py and ray:: agents)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return "other", "?"
    head = argv[0].strip()
    if head.startswith("ray::"):  # a Ray process titled by setproctitle: a task/actor worker or an agent
        name = head.split(" ")[0][:60]
        return ("agent" if name in AGENTS else "worker"), name
    base = os.path.basename(head)
    if base in SERVICES:
        return "service", base
    scripts = [os.path.basename(a) for a in argv[1:4] if a.endswith(".py")]
    if "default_worker.py" in scripts:
        return "worker", "default_worker"
    return "other", (scripts[0] if scripts else base or "?")


class Sampler(threading.Thread):
    """Samples the process tree of `root` until stopped; keeps the peaks and every pid it saw."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root = root
        self.stop = threading.Event()
        self.seen: dict[int, str] = {}  # pid -> starttime (to kill only those very processes)
        self.driver = self.worker = self.services = self.total = 0
        self.driver_anon = self.worker_anon = 0
        self.worker_name = ""
        self.by_name: dict[str, int] = {}
        self.max_workers = self.samples = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(INTERVAL)

    def sample(self) -> None:
        table = _proc_table()
        services = total = workers = 0
        for pid in tree(self.root, table):
            self.seen[pid] = table[pid][3]
            mem = _memory(pid)
            if mem is None:
                continue
            rss, anon = mem
            total += rss
            if pid == self.root:
                self.driver, self.driver_anon = max(self.driver, rss), max(self.driver_anon, anon)
                continue
            role, name = _role(pid)
            self.by_name[name] = max(self.by_name.get(name, 0), rss)
            if role == "worker":
                workers += 1
                self.worker_anon = max(self.worker_anon, anon)
                if rss > self.worker:
                    self.worker, self.worker_name = rss, name
            elif role == "service":
                services += rss
        self.services = max(self.services, services)
        self.total = max(self.total, total)
        self.max_workers = max(self.max_workers, workers)
        self.samples += 1

    def kill_leftovers(self) -> list[int]:
        """SIGTERM, then SIGKILL, every process seen in the tree that is still the same process."""

        def alive() -> list[int]:
            table = _proc_table()
            return [p for p, start in self.seen.items() if p in table and table[p][3] == start and p != os.getpid()]

        left = alive()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in alive():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            deadline = time.monotonic() + 5
            while alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        return left


def measured_run(cmd: list[str], env: dict, log: Path, timeout: float | None) -> dict:
    """Runs `cmd` in a new session; returns its exit code, wall time and memory peaks."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
        sampler = Sampler(proc.pid)
        sampler.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = "timeout"
        wall = time.perf_counter() - start
        sampler.stop.set()
        sampler.join()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group leader is gone; this takes the rest
        except OSError:
            pass
        leftovers = sampler.kill_leftovers()
        proc.wait()
    mib = 2**20
    return {
        "rc": code,
        "wall_s": wall,
        "samples": sampler.samples,
        "driver_rss_mib": sampler.driver / mib,
        "driver_anon_mib": sampler.driver_anon / mib,
        "worker_rss_mib": sampler.worker / mib,
        "worker_anon_mib": sampler.worker_anon / mib,
        "worker_name": sampler.worker_name,
        "max_workers": sampler.max_workers,
        "services_rss_mib": sampler.services / mib,
        "tree_rss_mib": sampler.total / mib,
        "peak_rss_by_name_mib": {k: round(v / mib, 1) for k, v in sorted(sampler.by_name.items())},
        "leftover_pids_killed": leftovers,
    }


def run_size(n: int, args) -> dict:
    meta = build_input(n, args.dup_rate, args.work / f"input-{n}")
    job = args.work / f"job-{n}.yaml"
    write_job(job, args.work / f"input-{n}", args.workers)
    out = args.work / f"run-{n}"
    shutil.rmtree(out, ignore_errors=True)
    ray_tmp = Path(tempfile.mkdtemp(prefix=f"ray-{n}-", dir=args.work))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmp)
    refinery = Path(sys.executable).with_name("refinery")
    cmd = [str(refinery) if refinery.exists() else "refinery", "run", str(job), "--out", str(out), "--runner", "ray"]
    print(f"{n}: {' '.join(cmd)}", flush=True)
    result = {
        "docs": n,
        "input_mb": meta["mb"],
        "copies": meta["copies"],
        "log": str(args.work / f"run-{n}.log"),
        **measured_run(cmd, env, args.work / f"run-{n}.log", args.timeout),
    }
    if result["rc"] == 0:
        result["kept"] = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "docs").rglob("*.parquet"))
        manifest = out / "shards" / "manifest.json"
        if manifest.is_file():
            data = json.loads(manifest.read_text())
            result["tokens"] = data.get("total_tokens", data.get("tokens"))
    else:
        tail = Path(result["log"]).read_text(errors="replace").strip().splitlines()[-15:]
        result["error_tail"] = tail
        print(f"{n}: FAILED ({result['rc']}); last lines of {result['log']}:", *tail, sep="\n  ", flush=True)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    return result


# --- report --------------------------------------------------------------------------------


def report(results: list[dict]) -> dict:
    print()
    print(
        f"{'docs':>9} {'input MB':>9} {'wall s':>8} {'docs/s':>8} {'driver MiB':>11} {'worker MiB':>11} "
        f"{'services MiB':>13} {'kept':>9}"
    )
    for r in results:
        ok = r["rc"] == 0
        print(
            f"{r['docs']:>9} {r['input_mb']:>9.1f} {r['wall_s']:>8.1f} "
            f"{(r['docs'] / r['wall_s'] if ok else 0):>8.0f} {r['driver_rss_mib']:>11.0f} "
            f"{r['worker_rss_mib']:>11.0f} {r['services_rss_mib']:>13.0f} "
            f"{(r.get('kept', 'FAILED')):>9}"
        )
    base = results[0]
    verdict = {"goal_rss": GOAL_RSS, "goal_wall": GOAL_WALL, "ratios": [], "pass": None}
    if base["rc"] != 0:
        print(f"\nno ratios: the smallest size ({base['docs']}) failed")
        verdict["pass"] = False
        return verdict
    print(f"\nrelative to {base['docs']} docs; goals: RSS <= {GOAL_RSS}x, wall <= {GOAL_WALL}x proportional")
    print(f"{'docs':>9} {'x docs':>7} {'wall/prop':>10} {'driver RSS':>11} {'worker RSS':>11} {'services':>9}  verdict")
    all_pass = True
    for r in results[1:]:
        if r["rc"] != 0:
            print(f"{r['docs']:>9} {'':>7} {'run failed':>10}{'':>34}  FAIL")
            verdict["ratios"].append({"docs": r["docs"], "pass": False, "error": "run failed"})
            all_pass = False
            continue
        scale = r["docs"] / base["docs"]
        wall = r["wall_s"] / (base["wall_s"] * scale)
        driver = r["driver_rss_mib"] / base["driver_rss_mib"]
        worker = r["worker_rss_mib"] / base["worker_rss_mib"] if base["worker_rss_mib"] else float("nan")
        services = r["services_rss_mib"] / base["services_rss_mib"] if base["services_rss_mib"] else float("nan")
        checks = {"wall": wall <= GOAL_WALL, "driver_rss": driver <= GOAL_RSS, "worker_rss": worker <= GOAL_RSS}
        ok = all(checks.values())
        all_pass &= ok
        failed = ",".join(k for k, v in checks.items() if not v)
        print(
            f"{r['docs']:>9} {scale:>6.1f}x {wall:>9.2f}x {driver:>10.2f}x {worker:>10.2f}x {services:>8.2f}x  "
            f"{'PASS' if ok else 'FAIL (' + failed + ')'}"
        )
        verdict["ratios"].append(
            {
                "docs": r["docs"],
                "scale": scale,
                "wall_vs_proportional": wall,
                "driver_rss": driver,
                "worker_rss": worker,
                "services_rss": services,
                "checks": checks,
                "pass": ok,
            }
        )
    verdict["pass"] = all_pass if len(results) > 1 else None
    if len(results) > 1:
        print(f"\noverall: {'PASS' if all_pass else 'FAIL'}")
    return verdict


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--build-child":
        build_child(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, nargs="+", default=[250_000, 1_000_000, 4_000_000])
    ap.add_argument("--dup-rate", type=float, default=0.15)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "scale-bench")
    ap.add_argument("--workers", type=int, help="the job's `workers:` (Ray CPUs); default: every CPU")
    ap.add_argument("--timeout", type=float, help="seconds per run before its process group is killed")
    ap.add_argument("--keep", action="store_true", help="keep each RUN folder (default: removed after counting)")
    args = ap.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if not TOKENIZER.is_file():
        raise SystemExit(f"no tokenizer model at {TOKENIZER}")
    if not SHARED.is_dir():
        raise SystemExit(f"no shared data at {SHARED}")
    sizes = sorted(set(args.docs))
    results = []
    for n in sizes:
        results.append(run_size(n, args))
        r = results[-1]
        print(
            f"{n}: rc {r['rc']}, {r['wall_s']:.1f} s, driver {r['driver_rss_mib']:.0f} MiB, "
            f"largest worker {r['worker_rss_mib']:.0f} MiB ({r['worker_name']}), "
            f"services {r['services_rss_mib']:.0f} MiB, tree {r['tree_rss_mib']:.0f} MiB",
            flush=True,
        )
    verdict = report(results)
    info = {"command": sys.argv, "workers": args.workers, "cpus": os.cpu_count(), "interval_s": INTERVAL}
    (args.work / "scale.json").write_text(json.dumps({**info, "results": results, **verdict}, indent=2))
    print(f"results: {args.work / 'scale.json'}")


if __name__ == "__main__":
    main()
