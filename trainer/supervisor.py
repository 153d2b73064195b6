"""Run training as a child process, diagnose each failure from its log, restart from the latest checkpoint.

After the Acme datacenter study (Hu et al., NSDI 2024): most failures of long LLM runs are
infrastructure (lost nodes, collective/network errors, out of memory) and a restart from the
last checkpoint fixes them, while data and code errors repeat and need a person. Each failure
becomes one JSON line in `DIR/failures.jsonl` with its class, the log line that decided it and
whether a restart followed; `DIR/supervisor.json` holds the summary, and every attempt's full
output is kept in `DIR/logs/`.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from refinery.trainer.checkpoint import atomic_write_text, complete_steps, folder_of

# Failure classes, and whether a restart from the latest checkpoint can help.
RETRY = {
    "killed": True,  # SIGKILL/SIGTERM: preemption, a lost node, the host's OOM killer
    "collective_error": True,  # NCCL/gloo/c10d errors, peers gone, network resets, watchdog timeouts
    "out_of_memory": True,  # device or host allocation failure (fragmentation, a noisy neighbour)
    "nan_loss": True,  # non-finite loss
    "data_error": False,  # corrupt or missing shards, manifest or loader-state mismatch
    "user_code_error": False,  # a Python exception in our code or the config
    "unknown": True,
}

_PATTERNS = [
    ("nan_loss", re.compile(r"non-finite (loss|gradient)|NonFiniteLoss|loss is nan|FloatingPointError", re.I)),
    (
        "out_of_memory",
        re.compile(
            r"CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|std::bad_alloc"
            r"|\bMemoryError\b|Cannot allocate memory"
        ),
    ),
    (
        "data_error",
        re.compile(
            r"ShardCorrupt|ArrowInvalid|ArrowIOError|does not match the manifest"
            r"|not a token shard manifest|unsupported token shard version|loader state has"
            r"|FileNotFoundError: .*(\.arrow|manifest\.json)"
        ),
    ),
    (
        "collective_error",
        re.compile(
            r"NCCL error|ncclInternalError|ncclSystemError|ncclRemoteError|DistBackendError"
            r"|DistNetworkError|ProcessGroupNCCL|ProcessGroupGloo|\[c10d\]|gloo/transport"
            r"|Connection reset by peer|Connection closed by peer|Connection refused"
            r"|Watchdog caught collective operation timeout"
        ),
    ),
    (
        "user_code_error",
        re.compile(
            r"^\s*(\w+\.)*(TypeError|NameError|AttributeError|KeyError|IndexError|ValueError"
            r"|AssertionError|ImportError|ModuleNotFoundError|SyntaxError|ZeroDivisionError"
            r"|NotImplementedError|RuntimeError|ConfigError)\b.*$",
            re.M,
        ),
    ),
]
_SIGNALS = {signal.SIGKILL: "SIGKILL", signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}
_ROOT_CAUSE_EXIT = re.compile(r"Root Cause.*?exitcode\s*:\s*(-?\d+)", re.S)


def _signal_of(returncode: int, log: str) -> int | None:
    """The signal that ended the run: ours (negative code, or 128+n from a shell) or, under
    torchrun, the first failed worker's ("Root Cause" block)."""
    if returncode < 0:
        return -returncode
    if returncode - 128 in _SIGNALS:
        return returncode - 128
    m = _ROOT_CAUSE_EXIT.search(log)
    if m and int(m.group(1)) < 0:
        return -int(m.group(1))
    return None


def classify(log: str, returncode: int) -> dict:
    """{"class", "evidence", "retry"} for a failed run's output and exit status."""
    sig = _signal_of(returncode, log)
    if sig in _SIGNALS:
        return {
            "class": "killed",
            "evidence": f"terminated by signal {sig} ({_SIGNALS[sig]})",
            "retry": RETRY["killed"],
        }
    for name, pattern in _PATTERNS:
        hits = list(pattern.finditer(log))
        if hits:
            line_start = log.rfind("\n", 0, hits[-1].start()) + 1
            line_end = log.find("\n", hits[-1].end())
            evidence = log[line_start : None if line_end < 0 else line_end].strip()
            return {"class": name, "evidence": evidence[:500], "retry": RETRY[name]}
    return {"class": "unknown", "evidence": f"exit status {returncode}", "retry": RETRY["unknown"]}


class Supervisor:
    def __init__(
        self, command: list[str], out: str | Path, max_restarts: int, *, restart_command: list[str] | None = None
    ):
        self.command = command
        self.restart_command = restart_command or command
        self.out = Path(out)
        self.max_restarts = max_restarts
        self.child: subprocess.Popen | None = None
        self.summary = {"command": command, "attempts": 0, "status": "running", "failures": []}

    def _write_summary(self) -> None:
        atomic_write_text(self.out / "supervisor.json", json.dumps(self.summary, indent=1) + "\n")

    def _forward(self, signum, _frame) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)
        self.summary["status"] = f"stopped by {signal.Signals(signum).name}"

    def run(self) -> int:
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        previous = {s: signal.signal(s, self._forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._loop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _loop(self) -> int:
        attempt = 0
        while True:
            log_path = self.out / "logs" / f"attempt-{attempt:03d}.log"
            started = time.time()
            with open(log_path, "wb") as log:
                command = self.command if attempt == 0 else self.restart_command
                self.child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                self.summary.update(attempts=attempt + 1, child_pid=self.child.pid)
                self._write_summary()
                returncode = self.child.wait()
            self.summary["child_pid"] = None
            if returncode == 0:
                self.summary["status"] = "succeeded"
                self._write_summary()
                return 0
            text = log_path.read_text(errors="replace")
            verdict = classify(text, returncode)
            stopped = self.summary["status"] != "running"
            restart = verdict["retry"] and attempt < self.max_restarts and not stopped
            record = {
                "attempt": attempt,
                "time": started,
                "duration_s": round(time.time() - started, 3),
                "returncode": returncode,
                **verdict,
                "restarted": restart,
                "resume_step": _latest_step(self.out),
                "log": str(log_path),
            }
            with open(self.out / "failures.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            self.summary["failures"].append(record)
            print(
                f"attempt {attempt} failed: {verdict['class']}: {verdict['evidence']}"
                + (f"; restarting from step {record['resume_step'] or 0}" if restart else ""),
                flush=True,
            )
            if not restart:
                if not stopped:
                    self.summary["status"] = f"failed: {verdict['class']}"
                self._write_summary()
                return 1
            attempt += 1


def _latest_step(out: Path) -> int | None:
    steps = complete_steps(folder_of(out))
    return steps[-1] if steps else None
