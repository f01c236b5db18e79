"""Three seeds of the tiny baseline trained one after another, and side by side in worker processes.

The course trains every variant with three seeds (``pipeline.train_and_evaluate``). With ``SEVLM_WORKERS``
above 1 the seeds train at once in spawned worker processes (``sevlm_lib.engine.workers``), each with the
same thread count as the notebook process, so the numbers do not change. Each side here is a fresh
subprocess that loads the course data, trains ``--steps`` steps of each seed (validation every ``--steps``
steps, as the recipe selects its checkpoint) into its own empty runs folder, and reports its wall time; the
sides run in alternating order. Checked: every seed's step log (losses and gradient norms) is identical on
the two sides with the same threads.

Sides: ``in_process_threadsT`` (workers 1) and ``side_by_side_threadsT`` (workers = cores // T), for
T = 1 and the course's 2. On a 2-core machine only T = 1 can go side by side; the course default (T = 2)
then trains in-process, as before.

    python benchmarks/side_by_side.py [--steps 600] [--repeats 1]    # ~6 minutes on 2 idle cores
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import base_parser, log, setup_run, write_result  # noqa: E402

TRAIN = textwrap.dedent(
    """
    import json, sys, time
    from sevlm_lib import pipeline, recipes
    from sevlm_lib.settings import apply_threads, get_settings, run_workers
    settings = get_settings()
    apply_threads(settings)
    data = pipeline.load_course_data(settings, progress=False)
    recipe = recipes.recipe_for("tiny", max_steps={steps}, eval_every={steps})
    config = recipes.model_config_for("tiny")
    t0 = time.perf_counter()
    pipeline.train_side_by_side(data, config, recipe, (0, 1, 2), "bench")
    for seed in (0, 1, 2):
        pipeline.train_model(data, config, recipe, seed=seed, name="bench")
    print("RESULT", json.dumps({{"seconds": time.perf_counter() - t0, "workers": run_workers(settings)}}))
    """
)


def run_side(steps: int, threads: int, workers: int, cache_dir: Path) -> tuple[float, int, list[str]]:
    """Train the three seeds in a fresh process; its seconds, its workers and the seeds' step logs."""
    with tempfile.TemporaryDirectory(prefix="sevlm-bench-") as tmp:
        env = {
            **os.environ,
            "SEVLM_RUNS_DIR": tmp,
            "SEVLM_CACHE_DIR": str(cache_dir),
            "SEVLM_THREADS": str(threads),
            "SEVLM_WORKERS": str(workers),
            "SEVLM_QUIET": "1",
        }
        proc = subprocess.run(
            [sys.executable, "-c", TRAIN.format(steps=steps)],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"the training subprocess failed:\n{proc.stderr[-3000:]}")
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        result = json.loads(line[7:])
        logs = [(Path(tmp) / "train" / "bench" / f"seed-{s}" / "log.csv").read_text() for s in (0, 1, 2)]
    return float(result["seconds"]), int(result["workers"]), logs


def main(argv: Sequence[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)  # the tiny recipe's length
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    run = setup_run(args)
    steps, repeats = (4, 1) if args.quick else (args.steps, args.repeats)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    cache_dir = Path(os.environ.get("SEVLM_CACHE_DIR", ROOT / "data" / "cache"))
    sides = {}
    for threads in (1, 2):
        sides[f"in_process_threads{threads}"] = (threads, 1)
        if cores // threads >= 2:
            sides[f"side_by_side_threads{threads}"] = (threads, cores // threads)
    seconds: dict[str, list[float]] = {name: [] for name in sides}
    workers_used: dict[str, int] = {}
    logs: dict[str, list[str]] = {}
    order = list(sides)
    for r in range(repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            threads, workers = sides[name]
            t, used, logs[name] = run_side(steps, threads, workers, cache_dir)
            seconds[name].append(t)
            workers_used[name] = used
            log(f"repeat {r + 1}: {name} ({used} workers): {t:.1f} s")
    median = {name: statistics.median(v) for name, v in seconds.items()}
    identical = {
        f"threads{t}": logs[f"side_by_side_threads{t}"] == logs[f"in_process_threads{t}"]
        for t in (1, 2)
        if f"side_by_side_threads{t}" in logs
    }
    if not all(identical.values()):
        raise SystemExit(f"the step logs differ between in-process and side-by-side training: {identical}")
    ratios = {
        f"speedup_threads{t}": median[f"in_process_threads{t}"] / median[f"side_by_side_threads{t}"]
        for t in (1, 2)
        if f"side_by_side_threads{t}" in median
    }
    ratios["side_by_side_threads1_vs_course_default"] = (
        median["in_process_threads2"] / median["side_by_side_threads1"]
        if "side_by_side_threads1" in median
        else None
    )
    for k, v in ratios.items():
        log(f"{k}: {v if v is None else round(v, 2)}")
    write_result(
        "side_by_side",
        {
            "steps": steps,
            "seeds": 3,
            "repeats": repeats,
            "cores": cores,
            "workers": workers_used,
            "seconds": seconds,
            "median": median,
            "ratios": ratios,
            "step_logs_identical": identical,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        run,
        Path(args.out_dir),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
