"""Checkpoint folders: find, load and write them atomically; the random-generator state that makes resume exact.

A checkpoint is a folder ``{checkpoint_dir}/step-000200/`` with ``model.safetensors``, ``optimizer.pt``,
``scheduler.pt``, ``scaler.pt`` (fp16 only), ``rng.safetensors`` (python, numpy, torch CPU and CUDA
generators), ``history.json``, ``state.json`` (written last) and whatever ``save_extra(folder)`` adds. Every
folder is written under a ``.tmp-`` name, fsynced, then renamed into place; ``{checkpoint_dir}/latest`` is a
one-line text file naming the newest folder, replaced atomically. The best evaluation so far lives in
``{checkpoint_dir}/best/`` (weights, ``state.json`` with its metrics, extras; no optimizer). ``.pt`` files are
only ever read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

from sevlm_lib.engine.history import HISTORY_FILE, History
from sevlm_lib.io import (
    TMP_PREFIX,
    atomic_write_text,
    fsync_dir,
    fsync_tree,
    read_json,
    replace_dir,
    write_json,
)
from sevlm_lib.registry import file_sha256

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
LATEST_FILE = "latest"
BEST_DIR = "best"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
RNG_FILE = "rng.safetensors"
STATE_FILE = "state.json"
BEST_OLD = ".best-old"
CHECKSUMS_KEY = "checksums"  # in state.json: {relative path: sha256} of every other file of the folder


@dataclass
class RunState:
    """Where a run is: the step, the best evaluations so far, early stopping and saving bookkeeping."""

    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    best_tiebreak: float | None = None
    best_by: dict[str, float] = field(default_factory=dict)  # the best value of each ``select_metrics`` entry
    bad_evals: int = 0
    last_eval_step: int = 0
    last_saved_step: int = 0
    finished: bool = False
    stopped_early: bool = False
    train_seconds: float = 0.0

    @classmethod
    def from_saved(cls, saved: Mapping[str, Any]) -> RunState:
        """The state recorded in a checkpoint's ``state.json``."""
        return cls(
            step=int(saved["step"]),
            best_metric=saved.get("best_metric"),
            best_step=saved.get("best_step"),
            best_tiebreak=saved.get("best_tiebreak"),
            best_by=dict(saved.get("best_by") or {}),
            bad_evals=int(saved.get("bad_evals", 0)),
            last_eval_step=int(saved.get("last_eval_step", 0)),
            last_saved_step=int(saved["step"]),
            finished=bool(saved.get("finished", False)),
            stopped_early=bool(saved.get("stopped_early", False)),
            train_seconds=float(saved.get("train_seconds", 0.0)),
        )

    def record(self, finished: bool) -> dict[str, Any]:
        """The fields of ``state.json`` that come from this state."""
        return {
            "step": self.step, "best_metric": self.best_metric, "best_step": self.best_step,
            "best_tiebreak": self.best_tiebreak, "best_by": dict(self.best_by), "bad_evals": self.bad_evals,
            "last_eval_step": self.last_eval_step, "finished": finished, "stopped_early": self.stopped_early,
            "train_seconds": self.train_seconds,
        }  # fmt: skip

    def update_best(
        self,
        row: Mapping[str, float],
        *,
        monitor: str,
        mode: str = "max",
        patience: int | None = None,
        tiebreak: str | None = None,
        select_metrics: tuple[str, ...] = (),
    ) -> list[str]:
        """Count one evaluation ``row``; return the ``best*`` folders to write now: ``best`` when ``monitor``
        improved (or tied and ``tiebreak`` improved), ``best-{m}`` for each of ``select_metrics`` that improved.
        An evaluation with no gain adds one to ``bad_evals``; ``stopped_early`` after ``patience`` of them."""

        def better(new: float, old: float | None) -> bool:
            return math.isfinite(new) and (old is None or (new > old if mode == "max" else new < old))

        value, folders = row[monitor], []
        tie = row.get(tiebreak) if tiebreak else None
        tied = self.best_metric is not None and value == self.best_metric and tie is not None
        if better(value, self.best_metric) or (tied and better(tie, self.best_tiebreak)):  # type: ignore[arg-type]
            self.best_metric, self.best_step, self.best_tiebreak = value, self.step, tie
            folders.append(BEST_DIR)
        for metric in select_metrics:
            if better(row[metric], self.best_by.get(metric)):
                self.best_by[metric] = row[metric]
                folders.append(f"{BEST_DIR}-{metric}")
        if folders:
            self.bad_evals = 0
            return folders
        self.bad_evals += 1
        if patience is not None and self.bad_evals >= patience:
            self.stopped_early = True
        return folders


def torch_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with an error that names the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except Exception as err:  # an UnpicklingError, or a RuntimeError from a damaged zip
        raise ValueError(
            f"{path}: cannot be read as plain tensors/containers with torch.load(weights_only=True); "
            f"arbitrary pickled objects are refused ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from err


def step_of(folder: Path) -> int | None:
    name = folder.name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    digits = name[len(CHECKPOINT_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def is_complete(folder: Path) -> bool:
    return folder.is_dir() and (folder / STATE_FILE).is_file() and (folder / MODEL_FILE).is_file()


def step_folders(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """Complete ``step-*`` folders, oldest first; temporary folders are never listed."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for child in checkpoint_dir.iterdir():
        step = step_of(child)
        if step is not None and is_complete(child):
            found.append((step, child))
    return sorted(found)


def file_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder`` except ``state.json`` (which records them), by relative path."""
    return {
        path.relative_to(folder).as_posix(): file_sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != STATE_FILE
    }


def checkpoint_problems(folder: Path) -> list[str]:
    """What is wrong with a checkpoint folder: unreadable ``state.json``, missing or damaged files (by the
    checksums recorded when it was written; folders written before checksums existed are only checked for
    their files). Empty when it is intact."""
    try:
        recorded = read_json(folder / STATE_FILE).get(CHECKSUMS_KEY)
    except (FileNotFoundError, ValueError) as err:
        return [str(err)]
    if recorded is None:
        return [] if (folder / MODEL_FILE).is_file() else [f"{folder / MODEL_FILE}: missing"]
    problems = []
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif file_sha256(path) != digest:
            problems.append(f"{path}: damaged (its sha256 differs from the one recorded when it was saved)")
    return problems


def latest_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> Path | None:
    """The folder that ``{checkpoint_dir}/latest`` names, or else the newest intact ``step-*`` folder (a
    damaged one is reported and skipped); ``None`` when there is no checkpoint. ``.tmp-*`` folders are ignored."""
    checkpoint_dir = Path(checkpoint_dir)
    pointer = checkpoint_dir / LATEST_FILE
    name = pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else ""
    target = checkpoint_dir / name
    if name and not name.startswith(".") and "/" not in name and is_complete(target):
        problems = checkpoint_problems(target)
        if not problems:
            return target
        logger.warning("%s is damaged (%s); using the newest intact checkpoint", target, "; ".join(problems))
    elif pointer.is_file():
        logger.warning("%s names %r, which is not a complete checkpoint; using the newest folder", pointer, name)
    for _step, folder in reversed(step_folders(checkpoint_dir)):
        if folder == target and name:
            continue
        problems = checkpoint_problems(folder)
        if not problems:
            return folder
        logger.warning("%s is damaged (%s); trying an older one", folder, "; ".join(problems))
    return None


def is_finished(checkpoint_dir: str | os.PathLike[str]) -> bool:
    """Whether ``checkpoint_dir``'s latest checkpoint ends a finished run (its fingerprint is not checked)."""
    found = latest_checkpoint(checkpoint_dir)
    return found is not None and bool(read_json(found / STATE_FILE).get("finished", False))


def best_checkpoint(checkpoint_dir: str | os.PathLike[str], name: str = BEST_DIR) -> Path | None:
    """``{checkpoint_dir}/best`` (the best evaluation so far; ``name="best-bleu4"`` for a selection metric), or
    ``None`` if no evaluation was monitored."""
    checkpoint_dir = Path(checkpoint_dir)
    best = checkpoint_dir / name
    if (best / STATE_FILE).is_file():
        return best
    old = checkpoint_dir / f".{name}-old"  # a crash between the two renames of a best-swap leaves the old one
    if (old / STATE_FILE).is_file():
        return old
    return None


def resolve_checkpoint(path: str | os.PathLike[str], *, needs: Sequence[str] = (STATE_FILE,)) -> Path:
    """A checkpoint folder: ``path`` itself (``step-*`` or ``best``) when it holds every file in ``needs``,
    else the latest checkpoint of the checkpoint dir ``path``, or of the one run folder below it
    (``{name}/`` holding ``seed-0/latest``)."""
    path = Path(path)
    if all((path / name).is_file() for name in needs):
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None and all((found / name).is_file() for name in needs):
            return found
        nested = sorted(p.parent for p in path.glob("*/latest"))
        if len(nested) == 1:
            return resolve_checkpoint(nested[0], needs=needs)
    state = "does not exist" if not path.exists() else "holds no checkpoint"
    raise FileNotFoundError(
        f"{path}: {state}. Expected a checkpoint folder with {' and '.join(needs)} (e.g. "
        "{checkpoint_dir}/{name}/seed-0/step-000600) or a run folder with a 'latest' file; train one with "
        "`python -m sevlm_lib.train`"
    )


def load_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    *,
    strict: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` (on the device the model is on), and optionally the
    optimizer, scheduler and grad-scaler states. ``path`` is a checkpoint folder (``step-*`` or ``best``) or a
    checkpoint dir (its latest checkpoint is used). Returns the checkpoint's ``state.json``."""
    folder = resolve_checkpoint(path)
    state = read_json(folder / STATE_FILE)
    param = next(iter(model.parameters()), None)
    device = str(param.device) if param is not None else "cpu"
    try:
        load_model(model, folder / MODEL_FILE, strict=strict, device=device)
    except RuntimeError as err:
        raise ValueError(f"{folder / MODEL_FILE}: does not fit this model: {err}") from err
    except Exception as err:  # safetensors' SafetensorError for a truncated or damaged file, OSError
        raise ValueError(
            f"{folder / MODEL_FILE}: cannot be read ({type(err).__name__}: {err}); the file is damaged or "
            "incomplete. Delete this checkpoint folder to resume from the one before it."
        ) from err
    if optimizer is not None:
        optimizer.load_state_dict(torch_load(folder / OPTIMIZER_FILE))
    if scheduler is not None:
        scheduler.load_state_dict(torch_load(folder / SCHEDULER_FILE))
    if scaler is not None:
        scaler.load_state_dict(torch_load(folder / SCALER_FILE))
    state["path"] = str(folder)
    return state


def load_history(path: str | os.PathLike[str]) -> History:
    """The :class:`History` saved in a run folder, a checkpoint folder or (its latest) checkpoint dir."""
    path = Path(path)
    if (path / HISTORY_FILE).is_file() or path.suffix == ".json":
        return History.load(path)
    return History.load(resolve_checkpoint(path))


def capture_rng_state() -> dict[str, Any]:
    """The states of python's ``random``, numpy's global generator, torch CPU and every CUDA generator."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back what :func:`capture_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(state: Mapping[str, Any], path: Path) -> None:

    version, mt, gauss = state["python"]
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    tensors = {
        "python_mt": torch.tensor(mt, dtype=torch.int64),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "torch": state["torch"].clone(),
    }
    for i, cuda_state in enumerate(state.get("cuda", [])):
        tensors[f"cuda_{i}"] = cuda_state.cpu().clone()
    meta = {
        "python_version": version,
        "python_gauss": gauss,
        "numpy_name": np_name,
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "cuda_devices": len(state.get("cuda", [])),
    }
    save_file(tensors, str(path), metadata={"rng": json.dumps(meta)})


def load_rng(path: Path) -> dict[str, Any]:

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["rng"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no iter)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise ValueError(
            f"{path}: not a random-generator state written by sevlm_lib.engine ({err})"
        ) from err
    state: dict[str, Any] = {
        "python": (
            meta["python_version"],
            tuple(int(x) for x in tensors["python_mt"].tolist()),
            meta["python_gauss"],
        ),
        "numpy": (
            meta["numpy_name"],
            tensors["numpy_keys"].numpy().astype(np.uint32),
            meta["numpy_pos"],
            meta["numpy_has_gauss"],
            meta["numpy_gauss"],
        ),
        "torch": tensors["torch"],
    }
    if meta["cuda_devices"]:
        state["cuda"] = [tensors[f"cuda_{i}"] for i in range(meta["cuda_devices"])]
    return state


def rng_file(rank: int) -> str:
    return RNG_FILE if rank == 0 else f"rng-{rank}.safetensors"


def prepare_folders(run_dir: Path | None, ckpt: Path | None) -> None:
    """Create the run and checkpoint folders and clear what interrupted saves left in the latter."""
    for folder in (run_dir, ckpt):
        if folder is None:
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(f"{folder}: cannot create this folder ({err.strerror}); check SEVLM_RUNS_DIR") from None
    if ckpt is not None:
        remove_temp_entries(ckpt)


def remove_temp_entries(ckpt: Path) -> None:
    """Delete leftovers of interrupted saves (``.tmp-*``) and restore a half-swapped ``best/``."""
    for child in ckpt.iterdir():
        if child.name.startswith(TMP_PREFIX):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    for old in ckpt.glob(f".{BEST_DIR}*-old"):  # .best-old, .best-bleu4-old, ...
        best = ckpt / old.name[1 : -len("-old")]
        if best.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, best)


def clear_checkpoints(ckpt: Path) -> None:
    """Delete what a Trainer wrote in ``ckpt`` (``step-*``, ``best``, ``latest``, temporary entries) and
    nothing else."""
    if not ckpt.is_dir():
        return
    for child in ckpt.iterdir():
        if (
            step_of(child) is not None
            or child.name == BEST_DIR
            or child.name.startswith((f"{BEST_DIR}-", f".{BEST_DIR}", TMP_PREFIX))
        ):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    (ckpt / LATEST_FILE).unlink(missing_ok=True)


def save_checkpoint(
    ckpt: Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    history: History,
    state: Mapping[str, Any],
    save_extra: Callable[[Path], None] | None = None,
    keep_last: int = 2,
) -> Path:
    """Write ``step-XXXXXX/`` under a temporary name, fsync it, rename it into place, point ``latest`` at it
    and delete all but the ``keep_last`` newest step folders. The RNG files must already be in the temporary
    folder (see :func:`checkpoint_temp_dir`); ``state`` becomes ``state.json``, written last."""
    name = f"{CHECKPOINT_PREFIX}{step:06d}"
    tmp, final = checkpoint_temp_dir(ckpt, step), ckpt / name
    try:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
        torch.save(scheduler.state_dict(), tmp / SCHEDULER_FILE)
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / SCALER_FILE)
        history.save(tmp / HISTORY_FILE)
        if save_extra is not None:
            save_extra(tmp)
        write_json(tmp / STATE_FILE, {**state, CHECKSUMS_KEY: file_checksums(tmp)})
        fsync_tree(tmp)
        replace_dir(tmp, final)
        atomic_write_text(ckpt / LATEST_FILE, name + "\n")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    folders = step_folders(ckpt)
    for _step, folder in folders[: max(0, len(folders) - keep_last)]:
        if folder != final:  # renamed out of view first: a kill while deleting leaves no half step behind
            trash = ckpt / f"{TMP_PREFIX}trash-{folder.name}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
    return final


def checkpoint_temp_dir(ckpt: Path, step: int) -> Path:
    """The temporary folder a step's checkpoint is built in before it is renamed into place."""
    return ckpt / f"{TMP_PREFIX}{CHECKPOINT_PREFIX}{step:06d}"


def save_best(
    ckpt: Path,
    *,
    model: torch.nn.Module,
    state: Mapping[str, Any],
    save_extra: Callable[[Path], None] | None = None,
    name: str = BEST_DIR,
) -> Path:
    """Write ``best/`` (or ``best-{metric}/``: weights, ``state`` with the metrics, extras) by building it
    aside and swapping it in."""
    tmp = ckpt / f"{TMP_PREFIX}{name}"
    best, old = ckpt / name, ckpt / f".{name}-old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(model, str(tmp / MODEL_FILE))
        if save_extra is not None:
            save_extra(tmp)
        write_json(tmp / STATE_FILE, {**state, CHECKSUMS_KEY: file_checksums(tmp)})
        fsync_tree(tmp)
        if best.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(best, old)
        os.replace(tmp, best)
        fsync_dir(ckpt)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return best


def resume_from(
    folder: Path,
    saved: Mapping[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    *,
    rank: int = 0,
    num_processes: int = 1,
) -> RunState:
    """Load a checkpoint for an exact resume: weights, optimizer, scheduler, scaler and this process's
    random generators; returns the :class:`RunState` it recorded (``saved`` is its ``state.json``)."""
    if not saved.get("finished", False) and saved.get("num_processes", 1) != num_processes:
        raise ValueError(
            f"{folder}: written by {saved.get('num_processes')} process(es), resuming with {num_processes}; "
            "exact resume needs the same number"
        )
    load_checkpoint(folder, model, optimizer, scheduler, scaler)
    rng_path = folder / rng_file(rank)
    restore_rng_state(load_rng(rng_path if rng_path.is_file() else folder / RNG_FILE))
    return RunState.from_saved(saved)


class CheckpointWriter:
    """Writes one run's checkpoints from inside the training loop. Every process calls it: each saves its own
    random-generator state, the main process everything else, with barriers in between."""

    def __init__(
        self, ckpt: Path, accelerator: Any, *, save_extra: Callable[[Path], None] | None, keep_last: int
    ) -> None:
        self.ckpt, self.accelerator, self.save_extra, self.keep_last = (
            ckpt,
            accelerator,
            save_extra,
            keep_last,
        )

    def step(self, step: int, rng: Mapping[str, Any], *, state: Mapping[str, Any], **parts: Any) -> None:
        """Checkpoint ``step`` (``parts``: model, optimizer, scheduler, scaler, history; ``state``: state.json)."""
        acc = self.accelerator
        tmp = checkpoint_temp_dir(self.ckpt, step)
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        save_rng(rng, tmp / rng_file(acc.process_index))
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_checkpoint(
                self.ckpt, step, state=state, save_extra=self.save_extra, keep_last=self.keep_last, **parts
            )
        acc.wait_for_everyone()

    def best(self, model: torch.nn.Module, state: Mapping[str, Any], name: str = BEST_DIR) -> None:
        """Write ``best/`` or ``best-{metric}/`` (the main process only)."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_best(self.ckpt, model=model, state=state, save_extra=self.save_extra, name=name)
        self.accelerator.wait_for_everyone()
