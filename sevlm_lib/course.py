"""The course itself: the first-cell environment check and ``make course`` (run every notebook in order).

``python -m sevlm_lib.course run`` executes ``notebooks/NN_*.ipynb`` headless, in order, into
``{runs_dir}/executed/`` (the committed notebooks keep their outputs) and records each notebook's minutes in
``docs/timings.json``, from which the README's notebook table, each notebook's "Time on a CPU" paragraph and
the student copies are rewritten (minutes measured, never typed), so the repository stays consistent.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nbclient import NotebookClient

from sevlm_lib.settings import (
    COURSE_THREADS,
    Settings,
    apply_threads,
    find_course_root,
    get_settings,
    run_workers,
)
from sevlm_lib.student import record_timings, update_readme, update_time_headers, write_student_copies

PACKAGES = ("torch", "transformers", "accelerate", "tokenizers", "pandas", "seaborn", "lemminflect", "pycocoevalcap")
MIN_PYTHON = (3, 10)


def check_environment(settings: Settings | None = None, verbose: bool = False) -> str:
    """Check the kernel has what the course needs, apply ``SEVLM_THREADS`` and return (and print) one
    friendly line.

    Raises ``RuntimeError`` naming what is missing and the one command that fixes it.
    """
    settings = settings or get_settings()
    if sys.version_info < MIN_PYTHON:
        raise RuntimeError(f"Python {platform.python_version()} is too old: the course needs 3.10+ (run `make setup`)")
    missing, versions = [], {}
    for name in PACKAGES:
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise RuntimeError(
            f"this kernel lacks {', '.join(missing)}: pick the 'SEVLM course (.venv)' kernel, "
            "or run `make setup` (or `pip install -e .`) in the course folder"
        )
    device = settings.resolved_device()
    threads = apply_threads(settings)
    line = (
        f"SEVLM course ready: profile={settings.profile}, device={device}, seed={settings.seed}, "
        f"torch {versions['torch']}, transformers {versions['transformers']}"
    )
    if settings.threads != COURSE_THREADS:  # (the course's own 2 goes unsaid)
        line += f", {threads} CPU thread{'s' if threads != 1 else ''} (SEVLM_THREADS)"
    if device == "cpu" and (workers := run_workers(settings)) > 1:
        line += f", {workers} seeds trained side by side (SEVLM_WORKERS)"
    print(line)
    if verbose:
        for k, v in versions.items():
            print(f"  {k} {v}")
    return line


def notebooks(root: Path | None = None) -> list[Path]:
    """The course notebooks, in order."""
    root = root or find_course_root() or Path.cwd()
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def run_course(settings: Settings | None = None, only: Sequence[str] = (), timeout: int = 7200) -> dict[str, float]:
    """Execute every notebook in order into ``{runs_dir}/executed``; return minutes per notebook. A whole run
    records its minutes (``docs/timings.json``, the README table, the time headers, ``student/``); ``only``
    runs a part and records nothing.

    ``timeout`` (seconds per cell) only guards against a hung kernel: a slow laptop must never hit it."""
    import nbformat

    settings = settings or get_settings()
    out_dir = settings.run_dir("executed")
    timings: dict[str, float] = {}
    for nb_path in notebooks():
        if only and not any(nb_path.name.startswith(o) for o in only):
            continue
        print(f"running {nb_path.name} ...", flush=True)
        nb = nbformat.read(nb_path, as_version=4)
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(nb_path.parent)}})
        try:
            client.execute()
        finally:
            nbformat.write(nb, out_dir / nb_path.name)
        timings[nb_path.stem] = round((time.perf_counter() - t0) / 60, 2)
        print(f"  done in {timings[nb_path.stem]:.1f} min", flush=True)

    if only:  # the recorded minutes are those of a whole course run (the headers say so): a part is not one
        print("minutes not recorded: --only runs part of the course, often with earlier runs already trained")
        return timings
    root = find_course_root() or Path.cwd()
    path = record_timings(root, timings, _machine())
    update_readme(root)
    update_time_headers(root)  # the notebooks' "Time on a CPU" and the student copies' estimate follow the run
    write_student_copies(root)
    print(f"timings written to {path}, the README's notebook table, the notebooks' time headers and student/")
    return timings


def _machine() -> str:

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sevlm_lib.course", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="execute every notebook in order (make course)")
    run.add_argument("--only", nargs="*", default=(), help="notebook prefixes, e.g. 01 02")
    sub.add_parser("check", help="check the environment")
    args = parser.parse_args(argv)
    if args.cmd == "check":
        check_environment(verbose=True)
        return 0
    check_environment()
    run_course(only=args.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
