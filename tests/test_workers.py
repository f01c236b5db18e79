"""Training runs side by side in worker processes (``SEVLM_WORKERS``), and the thread setting they rely on.

The promise checked here: a seed trained in a worker gives exactly the numbers it gives in the notebook's
own process (the same thread count computes it), so a machine with more cores only finishes sooner.
"""

from __future__ import annotations

import functools
import json
import os
import signal
from dataclasses import replace

import pytest
import torch

from sevlm_lib import pipeline, recipes
from sevlm_lib.engine.trainer import Trainer
from sevlm_lib.engine.workers import Job, run_jobs
from sevlm_lib.settings import Settings, run_workers
from tests.model_fixtures import small_course_data


def write_marker(path: str, text: str) -> None:
    """A job for the pool: write ``text`` and the worker's thread count to ``path``."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"text": text, "threads": torch.get_num_threads(), "pid": os.getpid()}, handle)


def fail(message: str) -> None:
    raise ValueError(message)


def test_run_jobs_runs_each_job_in_a_worker_with_the_threads(tmp_path):
    jobs = [Job(f"job {i}", write_marker, (str(tmp_path / f"{i}.json"), f"hello {i}")) for i in range(3)]
    seconds = run_jobs(jobs, workers=2, threads=1)
    assert set(seconds) == {"job 0", "job 1", "job 2"} and all(s >= 0 for s in seconds.values())
    written = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(3)]
    assert [w["text"] for w in written] == ["hello 0", "hello 1", "hello 2"]
    assert {w["threads"] for w in written} == {1}
    assert os.getpid() not in {w["pid"] for w in written}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # what the operating system does to a process out of memory


def test_run_jobs_names_the_failing_job():
    with pytest.raises(RuntimeError, match=r"broken seed failed in its worker process: ValueError: no data here"):
        run_jobs([Job("broken seed", fail, ("no data here",))], workers=2, threads=1)


def test_run_jobs_reports_a_killed_worker_and_its_remedy():
    with pytest.raises(RuntimeError, match=r"training lost seed was killed by signal 9.*SEVLM_WORKERS=1"):
        run_jobs([Job("lost seed", die)], workers=1, threads=1)


def test_run_jobs_checks_its_arguments():
    assert run_jobs([], workers=2, threads=1) == {}
    with pytest.raises(ValueError, match="unique"):
        run_jobs([Job("a", fail), Job("a", fail)], workers=2, threads=1)
    with pytest.raises(ValueError, match="workers=0"):
        run_jobs([Job("a", fail)], workers=0, threads=1)


def test_workers_settings():
    assert Settings.from_env({"SEVLM_WORKERS": "3"}).workers == 3
    assert run_workers(Settings.from_env({"SEVLM_WORKERS": "3"})) == 3
    auto = Settings.from_env({"SEVLM_WORKERS": "auto", "SEVLM_DEVICE": "cpu", "SEVLM_THREADS": "1"})
    assert auto.workers is None and run_workers(auto) == max(1, len(os.sched_getaffinity(0)))
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match=r"SEVLM_WORKERS=.*positive integer or auto"):
            Settings.from_env({"SEVLM_WORKERS": bad})


REAL_TRAIN_MODEL = pipeline.train_model


def train_with_tower(tower, *args, **kwargs):
    """``pipeline.train_model`` with ``tower`` as the course tower's pre-training: a worker process does not
    inherit conftest.py's quick tower, so the test hands it over with the job."""
    pipeline.COURSE_TOWER = tower
    return REAL_TRAIN_MODEL(*args, **kwargs)


def refuse_to_train(self, run) -> None:
    raise AssertionError("the notebook process trained a seed that a worker should have trained")


def run_rows(tmp_path, workers: int) -> tuple[list[dict], list[str]]:
    data = small_course_data(tmp_path)
    data = replace(data, settings=data.settings.with_(workers=workers, threads=1))
    recipe = recipes.recipe_for("tiny", max_steps=6, batch_size=8, max_new_tokens=6, eval_every=3)
    cfg = recipes.model_config_for("tiny")
    rows = pipeline.train_and_evaluate(data, cfg, seeds=(0, 1), recipe=recipe, name="side-by-side")
    logs = [
        (data.settings.runs_dir / "train" / "side-by-side" / f"seed-{s}" / "log.csv").read_text()
        for s in (0, 1)
    ]
    return rows, logs


def test_seeds_trained_side_by_side_equal_seeds_trained_in_process(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "train_model", functools.partial(train_with_tower, pipeline.COURSE_TOWER))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the in-process run computes with the workers' thread count
    try:
        alone_rows, alone_logs = run_rows(tmp_path / "alone", workers=1)
        monkeypatch.setattr(Trainer, "_loop", refuse_to_train)  # here, not in the workers: they must train
        side_rows, side_logs = run_rows(tmp_path / "side", workers=2)
    finally:
        torch.set_num_threads(before)
    assert side_logs == alone_logs  # every step's losses, bit for bit
    for a, b in zip(alone_rows, side_rows, strict=True):
        for key in ("emo_acc", "bleu4", "vad_err"):
            assert a[key] == pytest.approx(b[key], abs=0, nan_ok=True), key
