"""Several training runs side by side, each in its own worker process with a fixed number of threads.

A small model trains hardly faster on eight threads than on two (most of a step is too small to split), so a
machine with more cores is better used by training the seeds of a variant at the same time. Each worker
gets the same thread count a run in the notebook process has, so its numbers are identical to a run trained
in-process (``tests/test_workers.py``).

A worker is a fresh ``python -m sevlm_lib.engine.workers JOB RESULT`` process: it unpickles one job, runs
it and writes how it went to a small JSON file. Unlike ``multiprocessing``, this never re-imports the
caller's script (no ``if __name__ == "__main__"`` needed) and never forks a process that holds torch's
thread pools. What a job returns is not sent back: a training job writes its checkpoint, and the caller then
loads it as it loads any finished run.

    python -m sevlm_lib.engine.workers JOB.pkl RESULT.json    # what run_jobs starts; not for use by hand
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sevlm_lib.io import write_json

POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Job:
    """One call ``fn(*args, **kwargs)`` to run in a worker; ``label`` names it in errors and progress."""

    label: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Running:
    label: str
    process: subprocess.Popen
    result: Path
    log: Path


def run_jobs(jobs: Sequence[Job], workers: int, threads: int | None, *, quiet: bool = True) -> dict[str, float]:
    """Run ``jobs`` in up to ``workers`` worker processes; ``{label: seconds}`` once all have finished.

    ``threads`` is each worker's torch thread count (None: torch's choice). A failing job stops the others
    and raises a ``RuntimeError`` with its label, its error and the end of its output."""
    labels = [job.label for job in jobs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run_jobs: job labels must be unique, got {labels}")
    if workers < 1:
        raise ValueError(f"run_jobs: workers={workers}, expected at least 1")
    if not jobs:
        return {}
    seconds: dict[str, float] = {}
    pending = list(enumerate(jobs))
    running: list[_Running] = []
    progress = tqdm(total=len(jobs), desc=f"runs ({min(workers, len(jobs))} processes)", unit="run", disable=quiet)
    with tempfile.TemporaryDirectory(prefix="sevlm-workers-") as tmp:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    i, job = pending.pop(0)
                    running.append(_start(job, threads, Path(tmp) / f"job-{i}"))
                time.sleep(POLL_SECONDS)
                for run in [r for r in running if r.process.poll() is not None]:
                    running.remove(run)
                    seconds[run.label] = _outcome(run)
                    progress.update(1)
        finally:
            for run in running:  # an error or an interrupt: stop the others, leave no orphans
                run.process.kill()
                run.process.wait()
            progress.close()
    return seconds


def _start(job: Job, threads: int | None, stem: Path) -> _Running:
    job_file, result, log = stem.with_suffix(".pkl"), stem.with_suffix(".json"), stem.with_suffix(".log")
    job_file.write_bytes(pickle.dumps((job, threads), protocol=pickle.HIGHEST_PROTOCOL))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the caller's imports
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sevlm_lib.engine.workers", str(job_file), str(result)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return _Running(job.label, process, result, log)


def _outcome(run: _Running) -> float:
    """The job's seconds, or a ``RuntimeError`` saying what went wrong."""
    report = json.loads(run.result.read_text(encoding="utf-8")) if run.result.is_file() else {}
    if run.process.returncode == 0 and "seconds" in report:
        return float(report["seconds"])
    tail = run.log.read_text(encoding="utf-8", errors="replace")[-3000:] if run.log.is_file() else ""
    if "error" in report:
        raise RuntimeError(
            f"{run.label} failed in its worker process: {report['error']}\n{report['traceback']}"
            + (f"Its last output:\n{tail}" if tail.strip() else "")
        )
    code = run.process.returncode
    why = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    raise RuntimeError(
        f"the worker process training {run.label} {why} before finishing (a killed worker is often out of "
        f"memory: set SEVLM_WORKERS=1 to train one run at a time). Its last output:\n{tail}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The worker: run the pickled job in ``argv[0]``, report to the JSON file ``argv[1]``."""
    job_file, result = (sys.argv[1:] if argv is None else list(argv))[:2]
    job, threads = pickle.loads(Path(job_file).read_bytes())
    if threads is not None:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        job.fn(*job.args, **job.kwargs)
    except Exception as err:
        write_json(result, {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()})
        return 1
    write_json(result, {"seconds": time.perf_counter() - t0})
    return 0


__all__ = ["Job", "run_jobs"]

if __name__ == "__main__":
    raise SystemExit(main())
