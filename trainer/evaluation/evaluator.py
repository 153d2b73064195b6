"""The evaluator: a process beside the training that scores each checkpoint as it appears.

After the Acme datacenter study's decoupled evaluation: the training never waits for it. The
evaluator reads `TRAIN_OUT/checkpoints/` read-only and writes only under `TRAIN_OUT/eval/`:

    eval/trials/step_00000040/<task>/<trial>.json   one finished trial's partial sums
    eval/results.jsonl                              {"step", "task", "metric", "value"}, merged from trials
    eval/failures.jsonl                             trials that failed, classified like the trainer's failures
    eval/status.json                                trials run, found done, failed; checkpoints gone
    eval/tensorboard/                               the metrics as TensorBoard scalars

Each (checkpoint, task) is cut into trials (`tasks.plan`) that run on a pool of worker processes
or as Ray tasks, newest checkpoint first and longest trial first. A trial's file is its record of
completion, so a killed evaluator started again runs only the trials without one. A failed trial
is retried, then recorded and left, and never stops the others; a checkpoint that the trainer's
keep-N policy removed before its trials ran is skipped.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from refinery.trainer.checkpoint import atomic_write_text, complete_steps, folder_of, step_dir_name
from refinery.trainer.evaluation.suite import Suite
from refinery.trainer.evaluation.tasks import Part, merge, plan, run_trial
from refinery.trainer.loop import FINISHED
from refinery.trainer.supervisor import classify

log = logging.getLogger("refinery.eval")


def _trial(suite: Suite, checkpoints: str, step: int, part: Part) -> dict:
    """A trial in a worker: its partials, or the failure as text (tracebacks do not pickle)."""
    try:
        return {"partial": run_trial(suite, checkpoints, step, part)}
    except FileNotFoundError as err:
        if step not in complete_steps(checkpoints):
            return {"gone": str(err)}
        return {"error": traceback.format_exc()}
    except Exception:  # noqa: BLE001 - a failed trial is classified and retried by the evaluator
        return {"error": traceback.format_exc()}


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class _Pool:
    """Worker processes on this machine."""

    def __init__(self, workers: int, threads: int):
        import multiprocessing

        self.executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_set_threads, initargs=(threads,)
        )

    def submit(self, *args):
        return self.executor.submit(_trial, *args)

    def ready(self, handles: list, timeout: float) -> list:
        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)[0]) if handles else []

    def result(self, handle) -> dict:
        return handle.result()

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)


class _Ray:
    """Ray tasks, one CPU each, on the cluster at `address` (whose nodes must see TRAIN_OUT at the
    same path) or a private embedded Ray started here, as the pipeline's Ray runner does."""

    def __init__(self, address: str | None, workers: int):
        import ray

        from refinery.pipeline.cluster import connect

        self.ray = ray
        self.started_here = connect(address, workers)
        self.remote = ray.remote(num_cpus=1, max_retries=0)(_trial)

    def submit(self, *args):
        return self.remote.remote(*args)

    def ready(self, handles: list, timeout: float) -> list:
        return self.ray.wait(handles, num_returns=1, timeout=timeout)[0] if handles else []

    def result(self, handle) -> dict:
        return self.ray.get(handle)

    def close(self) -> None:
        if self.started_here:
            self.ray.shutdown()


class Evaluator:
    def __init__(
        self,
        train_out: str | Path,
        suite: Suite,
        *,
        workers: int = 1,
        runner: str = "local",
        address: str | None = None,
        watch: bool = False,
        poll_s: float = 2.0,
        idle_timeout_s: float | None = None,
    ):
        self.root = Path(train_out)
        self.checkpoints = folder_of(self.root)
        self.out = self.root / "eval"
        self.suite = suite
        self.tasks = {t.name: t for t in suite.tasks}
        self.parts = plan(suite)
        self.workers, self.runner, self.address = workers, runner, address
        self.watch, self.poll_s, self.idle_timeout_s = watch, poll_s, idle_timeout_s
        # (step, task) -> trial key -> partial sums, from the records
        self.partials: dict[tuple[int, str], dict[str, dict]] = {}
        self.status = {
            "trials_found_done": 0,
            "trials_run": 0,
            "trials_failed": 0,
            "retries": 0,
            "checkpoints_evaluated": [],
            "checkpoints_gone": [],
            "state": "running",
        }
        self.gone: set[int] = set()
        self.failed: set[tuple[int, str, str]] = set()
        self.tensorboard = None

    # --- records ---------------------------------------------------------------------------

    def _trial_file(self, step: int, part: Part) -> Path:
        return self.out / "trials" / step_dir_name(step) / part.task / f"{part.key}.json"

    def _load_records(self) -> None:
        for part_file in sorted((self.out / "trials").glob("step_*/*/*.json")):
            step = int(part_file.parent.parent.name.removeprefix("step_"))
            self.partials.setdefault((step, part_file.parent.name), {})[part_file.stem] = json.loads(
                part_file.read_text()
            )
        self.status["trials_found_done"] = sum(map(len, self.partials.values()))

    def _done(self, step: int, part: Part) -> bool:
        return part.key in self.partials.get((step, part.task), {})

    def _complete(self, step: int, task: str) -> bool:
        return all(self._done(step, p) for p in self.parts if p.task == task)

    def _write_results(self) -> None:
        lines = []
        for (step, task), found in sorted(self.partials.items()):
            if task in self.tasks and self._complete(step, task):
                metrics = merge(self.tasks[task], [found[p.key] for p in self.parts if p.task == task])
                lines += [json.dumps({"step": step, "task": task, "metric": m, "value": v}) for m, v in metrics.items()]
        atomic_write_text(self.out / "results.jsonl", "".join(f"{line}\n" for line in lines))

    def _scalars(self, step: int, task: str) -> None:
        if self.tensorboard is None:
            return
        found = self.partials[(step, task)]
        for metric, value in merge(self.tasks[task], [found[p.key] for p in self.parts if p.task == task]).items():
            self.tensorboard.add_scalar(f"eval/{task}/{metric}", value, step)
        self.tensorboard.flush()

    def _write_status(self) -> None:
        atomic_write_text(self.out / "status.json", json.dumps(self.status, indent=1) + "\n")

    def _record_failure(self, step: int, part: Part, attempt: int, error: str) -> None:
        verdict = classify(error, 1)
        record = {
            "step": step,
            "task": part.task,
            "trial": part.key,
            "attempt": attempt,
            "time": time.time(),
            **verdict,
            "error": error[-2000:],
        }
        with open(self.out / "failures.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        log.warning(
            "trial %s/%s of step %d failed (%s): %s", part.task, part.key, step, verdict["class"], verdict["evidence"]
        )

    # --- the loop --------------------------------------------------------------------------

    def _pending(self, steps: list[int], running: set) -> list[tuple[int, Part]]:
        """Trials to run, newest checkpoint first, longest first within one."""
        order = sorted(self.parts, key=lambda p: -p.cost)
        return [
            (step, p)
            for step in sorted(steps, reverse=True)
            if step not in self.gone
            for p in order
            if not self._done(step, p) and (step, p.task, p.key) not in running | self.failed
        ]

    def _finished(self) -> bool:
        """The training ended: it wrote its finished marker, or its supervisor gave up."""
        if (self.root / FINISHED).exists():
            return True
        supervisor = self.root / "supervisor.json"
        if supervisor.exists():
            try:
                state = json.loads(supervisor.read_text()).get("status", "running")
            except json.JSONDecodeError:
                return False
            return state not in ("running", "succeeded")
        return False

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        self._load_records()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.out / "tensorboard"))
        except ImportError:
            pass
        threads = 1 if self.runner == "ray" else max(1, (os.cpu_count() or 1) // self.workers)
        backend = _Ray(self.address, self.workers) if self.runner == "ray" else _Pool(self.workers, threads)
        running: dict = {}  # handle -> (step, part, attempt)
        last_new = time.monotonic()
        known: set[int] = set()
        try:
            while True:
                finished = self._finished()  # read before listing: no checkpoint can come after
                steps = complete_steps(self.checkpoints)
                if set(steps) - known:
                    known |= set(steps)
                    last_new = time.monotonic()
                busy = {(s, p.task, p.key) for s, p, _ in running.values()}
                for step, part in self._pending(steps, busy)[: max(0, self.workers - len(running))]:
                    running[backend.submit(self.suite, self.checkpoints, step, part)] = (step, part, 0)
                if not running:
                    idle = self.idle_timeout_s is not None and time.monotonic() - last_new > self.idle_timeout_s
                    if not self.watch or finished or idle:
                        break
                    time.sleep(self.poll_s)
                    continue
                for handle in backend.ready(list(running), self.poll_s):
                    step, part, attempt = running.pop(handle)
                    self._finish(backend, running, step, part, attempt, backend.result(handle))
        finally:
            backend.close()
            self.status["state"] = "finished"
            self._write_status()
            if self.tensorboard is not None:
                self.tensorboard.close()
        return self.status

    def _finish(self, backend, running: dict, step: int, part: Part, attempt: int, outcome: dict) -> None:
        if "partial" in outcome:
            record = self._trial_file(step, part)
            record.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(record, json.dumps(outcome["partial"]) + "\n")
            self.partials.setdefault((step, part.task), {})[part.key] = outcome["partial"]
            self.status["trials_run"] += 1
            if self._complete(step, part.task):
                self._write_results()
                self._scalars(step, part.task)
                if all(self._complete(step, t) for t in self.tasks):
                    self.status["checkpoints_evaluated"].append(step)
                    log.info("checkpoint %d evaluated", step)
        elif "gone" in outcome:
            if step not in self.gone:
                self.gone.add(step)
                self.status["checkpoints_gone"].append(step)
                log.info("checkpoint %d was removed before its trials ran; skipped", step)
        elif attempt < self.suite.retries:
            self.status["retries"] += 1
            self._record_failure(step, part, attempt, outcome["error"])
            running[backend.submit(self.suite, self.checkpoints, step, part)] = (step, part, attempt + 1)
        else:
            self._record_failure(step, part, attempt, outcome["error"])
            self.failed.add((step, part.task, part.key))
            self.status["trials_failed"] += 1
        self._write_status()
