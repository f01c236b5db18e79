"""The one training loop of the course: :class:`Trainer`, its :class:`TrainConfig` and checkpoints.

The model only has to follow one contract: ``model(batch) -> out`` with ``out.loss`` (a scalar tensor, the
one that is back-propagated) and ``out.losses`` (a dict of named scalar tensors, logged one column each).

Data comes from the caller as ``make_batches(epoch) -> Iterable[dict]`` that yields exactly
``steps_per_epoch`` batches, the same ones every time it is called with the same ``epoch``. It is called with
the global random generators seeded from ``(config.seed, epoch)`` and restored afterwards, so even a
``DataLoader(shuffle=True)`` without its own generator gives the same order on every call and does not
disturb the dropout stream of the model. If ``make_batches`` accepts a ``start`` keyword it is called as
``make_batches(epoch, start=k)`` on resume and must then yield the batches from index ``k`` on (a cheap skip);
otherwise a sequence is sliced and any other iterable is iterated past the ``k`` batches already used.

One optimizer step uses ``gradient_accumulation_steps`` batches (per process). Batches are read as one stream
over epochs, so optimizer step ``s`` (0-based) always uses the same batches, whatever was interrupted where.
Under ``accelerate launch`` with several processes, process ``r`` takes every ``r``-th batch of that stream
and ``accelerate`` averages the gradients (DDP).

A checkpoint is a folder ``{checkpoint_dir}/step-000200/`` with ``model.safetensors``, ``optimizer.pt``,
``scheduler.pt``, ``scaler.pt`` (fp16 only), ``rng.safetensors`` (python, numpy, torch CPU and CUDA
generators), ``history.json``, ``state.json`` (written last) and whatever ``save_extra(folder)`` adds. Every
folder is written under a ``.tmp-`` name, fsynced, then renamed into place; ``{checkpoint_dir}/latest`` is a
one-line text file naming the newest folder, replaced atomically. The best evaluation so far lives in
``{checkpoint_dir}/best/`` (weights, ``state.json`` with its metrics, extras; no optimizer). ``.pt`` files are
only ever read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import json
import logging
import math
import os
import random
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from sevlm_lib.settings import get_settings, seed_everything

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
HISTORY_FILE = "history.json"
LOG_FILE = "log.csv"
EVAL_FILE = "eval.csv"

_TMP_PREFIX = ".tmp-"
_BEST_OLD = ".best-old"
# Fields that change how a run is reported or stored, not what it computes: left out of the fingerprint.
_OPERATIONAL_FIELDS = frozenset({"log_every", "checkpoint_every", "keep_last", "device"})
_RESERVED_COLUMNS = frozenset({"step", "epoch", "loss", "lr", "grad_norm"})
_MIXED_PRECISION = ("no", "fp16", "bf16", "auto")

ResumeMode = Literal["auto"] | bool


# --------------------------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    """Everything that defines a training run (the data and the model are the caller's business).

    Give ``max_steps`` (optimizer steps) or ``epochs`` (passes over ``steps_per_epoch`` batches), not both.
    ``lr`` is the learning rate of parameters not in a named group. The schedule is linear decay to 0 at the
    last step after ``warmup_steps`` of linear warm-up. ``max_grad_norm=0`` disables clipping. Evaluation runs
    every ``eval_every`` steps (``None``: only at the end); ``monitor`` names the metric that picks the best
    checkpoint (``mode`` ``"max"`` or ``"min"``) and ``patience`` stops after that many evaluations without
    improvement (``None``: never). ``mixed_precision="auto"`` means fp16 on CUDA and none on CPU.
    """

    seed: int = 0
    max_steps: int | None = None
    epochs: int | None = None
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    gradient_accumulation_steps: int = 1
    eval_every: int | None = None
    monitor: str | None = None
    mode: str = "max"
    patience: int | None = None
    checkpoint_every: int | None = None
    keep_last: int = 2
    log_every: int = 1
    mixed_precision: str = "auto"
    device: str = "auto"

    def __post_init__(self) -> None:
        def positive(name: str, value: object, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name}={value!r}: expected a positive integer")

        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError(
                f"TrainConfig: give exactly one of max_steps and epochs "
                f"(got max_steps={self.max_steps!r}, epochs={self.epochs!r})"
            )
        positive("max_steps", self.max_steps, allow_none=True)
        positive("epochs", self.epochs, allow_none=True)
        positive("gradient_accumulation_steps", self.gradient_accumulation_steps)
        positive("eval_every", self.eval_every, allow_none=True)
        positive("patience", self.patience, allow_none=True)
        positive("checkpoint_every", self.checkpoint_every, allow_none=True)
        positive("keep_last", self.keep_last)
        positive("log_every", self.log_every)
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"TrainConfig.warmup_steps={self.warmup_steps!r}: expected an integer >= 0")
        for name in ("lr", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"TrainConfig.{name}={value!r}: expected a finite number >= 0")
        if self.mode not in ("max", "min"):
            raise ValueError(f"TrainConfig.mode={self.mode!r}: expected 'max' or 'min'")
        if self.patience is not None and self.monitor is None:
            raise ValueError("TrainConfig.patience needs TrainConfig.monitor (the metric to watch)")
        if self.mixed_precision not in _MIXED_PRECISION:
            raise ValueError(
                f"TrainConfig.mixed_precision={self.mixed_precision!r}: expected one of {', '.join(_MIXED_PRECISION)}"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(
                f"TrainConfig.device={self.device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
            )

    def total_steps(self, steps_per_epoch: int, num_processes: int = 1) -> int:
        """Optimizer steps of the whole run for ``steps_per_epoch`` batches per epoch."""
        if self.max_steps is not None:
            return self.max_steps
        per_step = self.gradient_accumulation_steps * num_processes
        total = (self.epochs or 0) * steps_per_epoch // per_step
        if total < 1:
            raise ValueError(
                f"TrainConfig.epochs={self.epochs} with steps_per_epoch={steps_per_epoch} gives no optimizer step "
                f"({per_step} batches per step)"
            )
        return total

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``dataclasses.asdict``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown field(s) {', '.join(unknown)}")
        return cls(**dict(values))


def config_fingerprint(
    config: TrainConfig,
    *,
    param_groups: Sequence[Mapping[str, Any]] = (),
    steps_per_epoch: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A short hash of what a run computes: the config (less log/checkpoint/device settings), the parameter
    groups' names, learning rates and sizes, ``steps_per_epoch`` and any JSON-able ``extra`` from the caller
    (e.g. the model config and data identity)."""
    return hashlib.sha256(
        json.dumps(
            _fingerprint_payload(config, param_groups, steps_per_epoch, extra), sort_keys=True
        ).encode()
    ).hexdigest()[:16]


def _fingerprint_payload(
    config: TrainConfig,
    param_groups: Sequence[Mapping[str, Any]],
    steps_per_epoch: int | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    cfg = {k: v for k, v in config.to_dict().items() if k not in _OPERATIONAL_FIELDS}
    return {
        "config": cfg,
        "param_groups": [dict(g) for g in param_groups],
        "steps_per_epoch": steps_per_epoch,
        "extra": json.loads(json.dumps(extra if extra is not None else {}, sort_keys=True, default=str)),
    }


# --------------------------------------------------------------------------------------------- history


@dataclass
class History:
    """What a run logged: per-step rows (``step``, ``epoch``, ``loss``, one column per loss component,
    ``lr`` and ``lr_{group}``, ``grad_norm``) and evaluation rows (``step``, ``epoch``, the metrics)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    monitor: str | None = None
    mode: str = "max"
    best_metric: float | None = None
    best_step: int | None = None
    stopped_early: bool = False
    finished: bool = False
    fingerprint: str | None = None

    def to_frame(self, which: Literal["steps", "evals"] = "steps") -> Any:
        """The step rows (or the evaluation rows) as a pandas ``DataFrame``."""
        import pandas as pd

        if which not in ("steps", "evals"):
            raise ValueError(f"History.to_frame: which={which!r}, expected 'steps' or 'evals'")
        return pd.DataFrame(self.steps if which == "steps" else self.evals)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``history.json`` (atomically)."""
        path = Path(path)
        _atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a ``history.json`` (or the one inside a checkpoint / run folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / HISTORY_FILE
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no history file") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown History field(s) {', '.join(unknown)}")
        return cls(**values)


# --------------------------------------------------------------------------------------------- files


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            _fsync_file(Path(folder) / name)
        _fsync_dir(Path(folder))


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, fsync it and ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{_TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_json(path: Path, values: Mapping[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=1)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None


def _torch_load(path: Path) -> Any:
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


def _step_of(folder: Path) -> int | None:
    name = folder.name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    digits = name[len(CHECKPOINT_PREFIX) :]
    return int(digits) if digits.isdigit() else None


def _is_complete(folder: Path) -> bool:
    return folder.is_dir() and (folder / STATE_FILE).is_file() and (folder / MODEL_FILE).is_file()


def _step_folders(checkpoint_dir: Path) -> list[tuple[int, Path]]:
    """Complete ``step-*`` folders, oldest first; temporary folders are never listed."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for child in checkpoint_dir.iterdir():
        step = _step_of(child)
        if step is not None and _is_complete(child):
            found.append((step, child))
    return sorted(found)


def latest_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> Path | None:
    """The folder that ``{checkpoint_dir}/latest`` names, or the newest complete ``step-*`` folder if that
    pointer is missing or stale; ``None`` when there is no checkpoint. ``.tmp-*`` folders are ignored."""
    checkpoint_dir = Path(checkpoint_dir)
    pointer = checkpoint_dir / LATEST_FILE
    if pointer.is_file():
        name = pointer.read_text(encoding="utf-8").strip()
        target = checkpoint_dir / name
        if name and not name.startswith(".") and "/" not in name and _is_complete(target):
            return target
        logger.warning(
            "%s names %r, which is not a complete checkpoint; using the newest folder", pointer, name
        )
    folders = _step_folders(checkpoint_dir)
    return folders[-1][1] if folders else None


def best_checkpoint(checkpoint_dir: str | os.PathLike[str]) -> Path | None:
    """``{checkpoint_dir}/best`` (the best evaluation so far), or ``None`` if no evaluation was monitored."""
    checkpoint_dir = Path(checkpoint_dir)
    best = checkpoint_dir / BEST_DIR
    if (best / STATE_FILE).is_file():
        return best
    old = checkpoint_dir / _BEST_OLD  # a crash between the two renames of a best-swap leaves the old one here
    if (old / STATE_FILE).is_file():
        return old
    return None


def _resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if (path / STATE_FILE).is_file():
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is not None:
            return found
    raise FileNotFoundError(
        f"{path}: not a checkpoint folder (no {STATE_FILE}) nor a folder holding checkpoints"
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
    from safetensors.torch import load_model

    folder = _resolve_checkpoint(path)
    state = _read_json(folder / STATE_FILE)
    param = next(iter(model.parameters()), None)
    device = str(param.device) if param is not None else "cpu"
    try:
        load_model(model, folder / MODEL_FILE, strict=strict, device=device)
    except RuntimeError as err:
        raise ValueError(f"{folder / MODEL_FILE}: does not fit this model: {err}") from err
    if optimizer is not None:
        optimizer.load_state_dict(_torch_load(folder / OPTIMIZER_FILE))
    if scheduler is not None:
        scheduler.load_state_dict(_torch_load(folder / SCHEDULER_FILE))
    if scaler is not None:
        scaler.load_state_dict(_torch_load(folder / SCALER_FILE))
    state["path"] = str(folder)
    return state


def load_history(path: str | os.PathLike[str]) -> History:
    """The :class:`History` saved in a run folder, a checkpoint folder or (its latest) checkpoint dir."""
    path = Path(path)
    if (path / HISTORY_FILE).is_file() or path.suffix == ".json":
        return History.load(path)
    return History.load(_resolve_checkpoint(path))


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder to ``final`` (moving any old ``final`` aside first)."""
    trash = None
    if final.exists():
        trash = final.parent / f"{_TMP_PREFIX}trash-{final.name}-{uuid.uuid4().hex[:8]}"
        os.replace(final, trash)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


# --------------------------------------------------------------------------------------------- RNG


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


@contextlib.contextmanager
def _seeded_rng(seed: int | None) -> Iterator[None]:
    """Run a block with the global generators seeded with ``seed`` (or untouched if None), then restore them."""
    saved = capture_rng_state()
    try:
        if seed is not None:
            seed_everything(seed)
        yield
    finally:
        restore_rng_state(saved)


def _save_rng(state: Mapping[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

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


def _load_rng(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = json.loads(handle.metadata()["rng"])
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no iter)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: missing") from None
    except (KeyError, TypeError, ValueError, OSError) as err:
        raise ValueError(
            f"{path}: not a random-generator state written by sevlm_lib.training ({err})"
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


def _rng_file(rank: int) -> str:
    return RNG_FILE if rank == 0 else f"rng-{rank}.safetensors"


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"sevlm-batches:{seed}:{epoch}".encode()).hexdigest()
    return int(digest[:12], 16)


# --------------------------------------------------------------------------------------------- helpers


def _resolve_mixed_precision(config: TrainConfig) -> str:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "fp16" if _resolve_device(config.device) != "cpu" else "no"


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _make_accelerator(config: TrainConfig) -> Any:
    """An ``accelerate.Accelerator`` for this config (``cpu=True`` on CPU)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    device = _resolve_device(config.device)
    precision = _resolve_mixed_precision(config)
    cpu = device == "cpu"
    if not cpu:
        if not torch.cuda.is_available():
            raise RuntimeError(f"TrainConfig.device={config.device!r}: CUDA is not available on this machine")
        if ":" in device:
            torch.cuda.set_device(torch.device(device))
    if precision == "fp16" and cpu:
        raise ValueError("TrainConfig.mixed_precision='fp16' needs CUDA; use 'bf16' or 'no' on CPU")
    # accelerate keeps one process-wide state. In a plain single process (a notebook building several
    # trainers) a trainer with other device/precision settings starts it afresh; launched runs keep theirs.
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        old_device = PartialState._shared_state.get("device")
        old_precision = AcceleratorState._shared_state.get("_mixed_precision", precision)
        device_changed = old_device is not None and (old_device.type == "cpu") != cpu
        if device_changed or old_precision != precision:
            AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=precision)


def _build_param_groups(
    model: torch.nn.Module, param_groups: Sequence[Mapping[str, Any]] | None, config: TrainConfig
) -> list[dict[str, Any]]:
    """Optimizer groups with a ``name`` each; every trainable parameter must be in exactly one group."""
    trainable = {id(p): name for name, p in model.named_parameters() if p.requires_grad}
    if param_groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("Trainer: the model has no parameter with requires_grad=True")
        return [dict(params=params, lr=config.lr, weight_decay=config.weight_decay, name="all")]
    groups: list[dict[str, Any]] = []
    seen: set[int] = set()
    names: set[str] = set()
    for i, group in enumerate(param_groups):
        if "params" not in group:
            raise ValueError(f"Trainer: param_groups[{i}] has no 'params'")
        params = list(group["params"])
        name = str(group.get("name", f"group{i}"))
        if name in names:
            raise ValueError(f"Trainer: param_groups[{i}]: the name {name!r} is used twice")
        names.add(name)
        if not params:
            raise ValueError(f"Trainer: param_groups[{i}] ({name!r}) has no parameters")
        for p in params:
            if not isinstance(p, torch.nn.Parameter):
                raise TypeError(
                    f"Trainer: param_groups[{i}] ({name!r}) holds a {type(p).__name__}, not a Parameter"
                )
            if id(p) in seen:
                raise ValueError(
                    f"Trainer: a parameter of param_groups[{i}] ({name!r}) is also in an earlier group"
                )
            if id(p) not in trainable:
                raise ValueError(
                    f"Trainer: param_groups[{i}] ({name!r}) holds a parameter that is frozen or not in the model"
                )
            seen.add(id(p))
        out = dict(group)
        out.update(params=params, name=name)
        out.setdefault("lr", config.lr)
        out.setdefault("weight_decay", config.weight_decay)
        groups.append(out)
    missing = [name for pid, name in trainable.items() if pid not in seen]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ValueError(
            f"Trainer: trainable parameter(s) in no param group: {shown}. Add them to a group, or freeze them "
            "with requires_grad_(False)."
        )
    return groups


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _as_scalar(value: Any, what: str) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float32)
    if tensor.numel() != 1:
        raise ValueError(f"model output: {what} has shape {tuple(tensor.shape)}, expected a scalar")
    return tensor.detach().float().reshape(())


class _CsvLog:
    """Rows appended to a CSV; a row with a new column rewrites the file with the wider header."""

    def __init__(self, path: Path, rows: list[dict[str, Any]]) -> None:
        self.path = path
        self.rows = rows
        self.header: list[str] = []
        self.rewrite()

    def rewrite(self) -> None:
        header: list[str] = []
        for row in self.rows:
            header.extend(k for k in row if k not in header)
        self.header = header
        tmp = self.path.parent / f"{_TMP_PREFIX}{self.path.name}-{uuid.uuid4().hex[:8]}"
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            if header:
                writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
                writer.writeheader()
                writer.writerows(self.rows)
        os.replace(tmp, self.path)

    def appended(self) -> None:
        """Write the last row of ``rows`` (already appended by the caller)."""
        row = self.rows[-1]
        if not self.header or any(k not in self.header for k in row):
            self.rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.header, lineterminator="\n").writerow(row)


@dataclass
class _RunState:
    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    bad_evals: int = 0
    last_eval_step: int = 0
    last_saved_step: int = 0
    finished: bool = False
    stopped_early: bool = False
    train_seconds: float = 0.0


# --------------------------------------------------------------------------------------------- trainer


class Trainer:
    """Train ``model`` with AdamW, a linear schedule, clipping, evaluation, early stopping and checkpoints.

    ``param_groups``: ``[dict(params=[...], lr=2e-5, name="decoder"), ...]`` (every trainable parameter in
    one group); ``None`` puts all trainable parameters in one group at ``config.lr``. ``save_extra(folder)``
    is called for every checkpoint folder before it is renamed into place (save a tokenizer or a model config
    there). ``fingerprint_extra`` (JSON-able) joins the config fingerprint, so that a finished run is reused
    only for the same model/data. ``quiet=None`` reads ``Settings.quiet``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        config: TrainConfig,
        make_batches: Callable[..., Iterable[Mapping[str, Any]]],
        steps_per_epoch: int,
        *,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        save_extra: Callable[[Path], None] | None = None,
        fingerprint_extra: Mapping[str, Any] | None = None,
        quiet: bool | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"Trainer: config must be a TrainConfig, got {type(config).__name__}")
        if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
            raise ValueError(f"Trainer: steps_per_epoch={steps_per_epoch!r}: expected a positive integer")
        self.config = config
        self.make_batches = make_batches
        self.steps_per_epoch = steps_per_epoch
        self.save_extra = save_extra
        self.quiet = get_settings().quiet if quiet is None else bool(quiet)
        self.accelerator = _make_accelerator(config)
        self.num_processes = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.total_steps = config.total_steps(steps_per_epoch, self.num_processes)
        if config.warmup_steps > self.total_steps:
            raise ValueError(
                f"TrainConfig.warmup_steps={config.warmup_steps} is more than the run's {self.total_steps} steps"
            )

        self.model = model  # the caller's module; ``_model`` is what accelerate wrapped (DDP, autocast)
        groups = _build_param_groups(model, param_groups, config)
        self.group_names = [g["name"] for g in groups]
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _linear_schedule(config.warmup_steps, self.total_steps)
        )
        self._model, self._optimizer = self.accelerator.prepare(model, self.optimizer)
        self._params = [p for g in groups for p in g["params"]]
        self.fingerprint = config_fingerprint(
            config,
            param_groups=[
                {
                    "name": g["name"],
                    "lr": g["lr"],
                    "weight_decay": g["weight_decay"],
                    "numel": sum(p.numel() for p in g["params"]),
                }
                for g in groups
            ],
            steps_per_epoch=steps_per_epoch,
            extra=fingerprint_extra,
        )
        self._fingerprint_payload = _fingerprint_payload(config, [], steps_per_epoch, fingerprint_extra)
        try:
            self._accepts_start = "start" in inspect.signature(make_batches).parameters
        except (TypeError, ValueError):
            self._accepts_start = False
        self._used = False

    # ------------------------------------------------------------------ public

    @property
    def device(self) -> torch.device:
        """Where the model and batches live."""
        return self.accelerator.device

    @property
    def scaler(self) -> Any:
        """The fp16 ``GradScaler`` (``None`` without fp16)."""
        return self.accelerator.scaler

    def fit(
        self,
        eval_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        resume: ResumeMode = "auto",
        *,
        stop_at: int | None = None,
    ) -> History:
        """Train to ``total_steps`` (or until early stopping) and return the :class:`History`.

        ``resume``: ``"auto"`` continues the run in ``checkpoint_dir`` if there is one; ``True`` requires one;
        ``False`` starts over and first deletes this trainer's files (``step-*``, ``best``, ``latest``) there.
        A finished run with the same fingerprint is loaded, not retrained. ``stop_at`` pauses after that global
        step (checkpointed, ``History.finished`` False); fit again later to continue. ``eval_fn(model)`` runs
        with the model in eval mode, under ``torch.no_grad()``, with the random generators restored after.
        On ``KeyboardInterrupt`` the last completed step is checkpointed before the interrupt is re-raised.
        The model is left in eval mode.
        """
        if self._used:
            raise RuntimeError(
                "Trainer.fit: this trainer has already run; build a new Trainer to train again"
            )
        if resume not in ("auto", True, False):
            raise ValueError(f"Trainer.fit: resume={resume!r}, expected True, False or 'auto'")
        if stop_at is not None and (not isinstance(stop_at, int) or stop_at < 1):
            raise ValueError(f"Trainer.fit: stop_at={stop_at!r}, expected a positive integer")
        self._used = True
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        run = Path(run_dir) if run_dir is not None else None
        if run is not None and self.accelerator.is_main_process:
            run.mkdir(parents=True, exist_ok=True)
        if ckpt is not None and self.accelerator.is_main_process:
            ckpt.mkdir(parents=True, exist_ok=True)
            _remove_temp_entries(ckpt)
        self.accelerator.wait_for_everyone()

        state, history = self._start(ckpt, resume)
        if state.finished:
            self._write_run_outputs(run, history, rewrite_logs=True)
            self.model.eval()
            return history
        return self._loop(state, history, eval_fn, run, ckpt, stop_at)

    def train_or_load(
        self,
        eval_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        checkpoint_dir: str | os.PathLike[str] | None = None,
        *,
        weights: Literal["latest", "best"] = "latest",
    ) -> History:
        """Load the finished run in ``checkpoint_dir`` if its fingerprint matches (no training), else train
        (resuming a matching partial run; a run with another fingerprint is replaced). ``weights="best"``
        then loads ``best/`` instead of the final weights."""
        if checkpoint_dir is None:
            raise ValueError("Trainer.train_or_load: needs a checkpoint_dir")
        if weights not in ("latest", "best"):
            raise ValueError(f"Trainer.train_or_load: weights={weights!r}, expected 'latest' or 'best'")
        found = latest_checkpoint(checkpoint_dir)
        resume: ResumeMode = "auto"
        if found is not None:
            saved = _read_json(found / STATE_FILE)
            if saved.get("fingerprint") != self.fingerprint:
                logger.warning(
                    "%s was trained with another configuration (%s); training afresh",
                    found,
                    self._describe_mismatch(saved) or "fingerprint differs",
                )
                resume = False
        history = self.fit(eval_fn=eval_fn, run_dir=run_dir, checkpoint_dir=checkpoint_dir, resume=resume)
        if weights == "best":
            best = best_checkpoint(checkpoint_dir)
            if best is None:
                raise FileNotFoundError(f"{checkpoint_dir}: no best/ checkpoint (was a metric monitored?)")
            load_checkpoint(best, self.model)
        return history

    # ------------------------------------------------------------------ start / resume

    def _start(self, ckpt: Path | None, resume: ResumeMode) -> tuple[_RunState, History]:
        history = History(monitor=self.config.monitor, mode=self.config.mode, fingerprint=self.fingerprint)
        found = latest_checkpoint(ckpt) if ckpt is not None else None
        if resume is True and found is None:
            where = "no checkpoint_dir given" if ckpt is None else f"no checkpoint in {ckpt}"
            raise FileNotFoundError(f"Trainer.fit(resume=True): {where}")
        if resume is False or found is None:
            if ckpt is not None and resume is False:
                self.accelerator.wait_for_everyone()
                if self.accelerator.is_main_process:
                    _clear_checkpoints(ckpt)
                self.accelerator.wait_for_everyone()
            seed_everything(self.config.seed + self.rank)
            return _RunState(), history
        return self._resume(found)

    def _describe_mismatch(self, saved: Mapping[str, Any]) -> str:
        old = saved.get("fingerprint_payload", {})
        new = self._fingerprint_payload
        diffs = []
        for key in sorted(set(old.get("config", {})) | set(new["config"])):
            a, b = old.get("config", {}).get(key), new["config"].get(key)
            if a != b:
                diffs.append(f"{key}: {a!r} -> {b!r}")
        for key in ("steps_per_epoch", "extra"):
            if old.get(key) != new.get(key):
                diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
        if old.get("param_groups") != self._group_summary():
            diffs.append(f"param_groups: {old.get('param_groups')!r} -> {self._group_summary()!r}")
        return "; ".join(diffs)

    def _group_summary(self) -> list[dict[str, Any]]:
        return [
            {
                "name": g["name"],
                "lr": g.get("initial_lr", g["lr"]),
                "weight_decay": g["weight_decay"],
                "numel": sum(p.numel() for p in g["params"]),
            }
            for g in self.optimizer.param_groups
        ]

    def _resume(self, folder: Path) -> tuple[_RunState, History]:
        saved = _read_json(folder / STATE_FILE)
        if saved.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"{folder}: this checkpoint was written by a run with another configuration "
                f"({self._describe_mismatch(saved) or 'fingerprint differs'}); use resume=False to start over "
                "or another checkpoint_dir"
            )
        if not saved.get("finished", False) and saved.get("num_processes", 1) != self.num_processes:
            raise ValueError(
                f"{folder}: written by {saved.get('num_processes')} process(es), resuming with {self.num_processes}; "
                "exact resume needs the same number"
            )
        load_checkpoint(folder, self.model, self.optimizer, self.scheduler, self.scaler)
        history = History.load(folder / HISTORY_FILE)
        state = _RunState(
            step=int(saved["step"]),
            best_metric=saved.get("best_metric"),
            best_step=saved.get("best_step"),
            bad_evals=int(saved.get("bad_evals", 0)),
            last_eval_step=int(saved.get("last_eval_step", 0)),
            last_saved_step=int(saved["step"]),
            finished=bool(saved.get("finished", False)),
            stopped_early=bool(saved.get("stopped_early", False)),
            train_seconds=float(saved.get("train_seconds", 0.0)),
        )
        rng_path = folder / _rng_file(self.rank)
        restore_rng_state(_load_rng(rng_path if rng_path.is_file() else folder / RNG_FILE))
        logger.info("resuming from %s (step %d of %d)", folder, state.step, self.total_steps)
        return state, history

    # ------------------------------------------------------------------ the loop

    def _loop(
        self,
        state: _RunState,
        history: History,
        eval_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None,
        run: Path | None,
        ckpt: Path | None,
        stop_at: int | None,
    ) -> History:
        main = self.accelerator.is_main_process
        logs = self._write_run_outputs(run, history, rewrite_logs=True)
        stream = self._batch_stream(state.step)
        keep_rng = (
            ckpt is not None
        )  # the RNG state after the last finished step, for an interrupt's checkpoint
        rng_after_step = capture_rng_state() if keep_rng else {}
        running: float | None = None
        bar = tqdm(total=self.total_steps, initial=state.step, disable=self.quiet or not main, desc="train")
        started = time.perf_counter()
        seconds_before = state.train_seconds
        self._model.train()
        try:
            while True:
                state.train_seconds = seconds_before + time.perf_counter() - started
                self._after_step(state, history, eval_fn, ckpt, stop_at, rng_after_step, logs)
                if state.finished or (stop_at is not None and state.step >= stop_at):
                    break
                values = self._train_step(stream)
                state.step += 1
                if keep_rng:
                    rng_after_step = capture_rng_state()
                bar.update(1)
                if state.step % self.config.log_every == 0 or state.step == self.total_steps:
                    row = self._log_row(state.step, values)
                    history.steps.append(row)
                    if logs is not None:
                        logs[0].appended()
                    running = row["loss"] if running is None else 0.9 * running + 0.1 * row["loss"]
                    bar.set_postfix(loss=f"{running:.4f}", lr=f"{row['lr']:.2e}")
        except KeyboardInterrupt:
            if ckpt is not None and state.step > state.last_saved_step:
                state.train_seconds = seconds_before + time.perf_counter() - started
                logger.warning("interrupted: saving step %d to %s", state.step, ckpt)
                self._save(ckpt, state, history, rng_after_step, finished=False)
            raise
        finally:
            bar.close()
        state.train_seconds = seconds_before + time.perf_counter() - started
        history.train_seconds = state.train_seconds
        history.finished = state.finished
        self._write_run_outputs(run, history, rewrite_logs=False)
        self.model.eval()
        return history

    def _after_step(
        self,
        state: _RunState,
        history: History,
        eval_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None,
        ckpt: Path | None,
        stop_at: int | None,
        rng: Mapping[str, Any],
        logs: tuple[_CsvLog, _CsvLog] | None,
    ) -> None:
        """Evaluate, early-stop and checkpoint for the step just done (each at most once per step)."""
        cfg = self.config
        step = state.step
        if step == 0:
            return
        at_end = step >= self.total_steps
        if (
            eval_fn is not None
            and state.last_eval_step != step
            and (at_end or (cfg.eval_every is not None and step % cfg.eval_every == 0))
        ):
            self._evaluate(state, history, eval_fn, ckpt, logs)
        finished = at_end or state.stopped_early
        due = finished or (cfg.checkpoint_every is not None and step % cfg.checkpoint_every == 0)
        due = due or (stop_at is not None and step >= stop_at)
        if ckpt is not None and due and state.last_saved_step != step:
            state.finished = finished
            history.train_seconds = state.train_seconds
            history.finished = finished
            self._save(ckpt, state, history, rng, finished=finished)
        state.finished = finished

    def _train_step(self, stream: Iterator[Mapping[str, Any]]) -> dict[str, Any]:
        """One optimizer step over ``gradient_accumulation_steps`` batches; returns detached values."""
        from accelerate.utils import send_to_device

        accum = self.config.gradient_accumulation_steps
        self._optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        for micro in range(accum):
            batch = send_to_device(next(stream), self.device)
            sync = contextlib.nullcontext() if micro == accum - 1 else self.accelerator.no_sync(self._model)
            with sync:
                out = self._model(batch)
                if not hasattr(out, "loss") or not hasattr(out, "losses"):
                    raise TypeError(
                        f"model output {type(out).__name__} lacks .loss/.losses; the Trainer needs "
                        "model(batch) -> object with .loss (scalar tensor) and .losses (dict of scalar tensors)"
                    )
                self.accelerator.backward(out.loss / accum)
            parts = {"loss": _as_scalar(out.loss, "loss")}
            for name, value in dict(out.losses).items():
                if name in _RESERVED_COLUMNS:
                    raise ValueError(
                        f"model output: a loss component is named {name!r}, a reserved log column"
                    )
                parts[name] = _as_scalar(value, f"losses[{name!r}]")
            for name, value in parts.items():
                sums[name] = sums[name] + value if name in sums else value
                counts[name] = counts.get(name, 0) + 1
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        grad_norm = self.accelerator.clip_grad_norm_(self._params, max_norm)
        self._optimizer.step()
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.scheduler.step()
        values: dict[str, Any] = {name: sums[name] / counts[name] for name in sums}
        values["grad_norm"] = _as_scalar(grad_norm, "grad_norm")
        values["_lrs"] = lrs
        return values

    def _log_row(self, step: int, values: Mapping[str, Any]) -> dict[str, float]:
        lrs = values["_lrs"]
        names = [k for k in values if k != "_lrs"]
        stacked = torch.stack([values[k].to(self.device) for k in names])
        if self.num_processes > 1:
            stacked = self.accelerator.reduce(stacked, reduction="mean")
        numbers = dict(zip(names, stacked.cpu().tolist(), strict=True))
        if not math.isfinite(numbers["loss"]):
            raise FloatingPointError(f"step {step}: the training loss is {numbers['loss']}")
        batches = step * self.config.gradient_accumulation_steps * self.num_processes
        row: dict[str, float] = {
            "step": step,
            "epoch": batches / self.steps_per_epoch,
            "loss": numbers.pop("loss"),
        }
        grad_norm = numbers.pop("grad_norm")
        row.update(numbers)
        row["lr"] = lrs[0]
        if len(lrs) > 1:
            row.update({f"lr_{name}": lr for name, lr in zip(self.group_names, lrs, strict=True)})
        row["grad_norm"] = grad_norm
        return row

    def _evaluate(
        self,
        state: _RunState,
        history: History,
        eval_fn: Callable[[torch.nn.Module], Mapping[str, float]],
        ckpt: Path | None,
        logs: tuple[_CsvLog, _CsvLog] | None,
    ) -> None:
        cfg = self.config
        step = state.step
        self.model.eval()
        try:
            with _seeded_rng(None), torch.no_grad():
                metrics = eval_fn(self.model)
        finally:
            self._model.train()
        if not isinstance(metrics, Mapping):
            raise TypeError(f"eval_fn returned {type(metrics).__name__}, expected a dict of metric -> number")
        batches = step * cfg.gradient_accumulation_steps * self.num_processes
        row: dict[str, float] = {"step": step, "epoch": batches / self.steps_per_epoch}
        for key, value in metrics.items():
            try:
                row[str(key)] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"eval_fn: metric {key!r} is {value!r}, not a number") from None
        history.evals.append(row)
        if logs is not None:
            logs[1].appended()
        state.last_eval_step = step
        if cfg.monitor is None:
            return
        if cfg.monitor not in row:
            raise KeyError(
                f"eval_fn returned {sorted(metrics)}, without the monitored metric {cfg.monitor!r}"
            )
        value = row[cfg.monitor]
        best = state.best_metric
        improved = math.isfinite(value) and (
            best is None or (value > best if cfg.mode == "max" else value < best)
        )
        if improved:
            state.best_metric, state.best_step, state.bad_evals = value, step, 0
            history.best_metric, history.best_step = value, step
            if ckpt is not None:
                self._save_best(ckpt, state, row)
        else:
            state.bad_evals += 1
            if cfg.patience is not None and state.bad_evals >= cfg.patience:
                state.stopped_early = True
                history.stopped_early = True
                logger.info(
                    "early stop at step %d: %d evaluations without a better %s",
                    step,
                    state.bad_evals,
                    cfg.monitor,
                )

    # ------------------------------------------------------------------ data

    def _batch_stream(self, start_step: int) -> Iterator[Mapping[str, Any]]:
        """This process's batches from optimizer step ``start_step`` on, across epochs, forever."""
        per_step = self.config.gradient_accumulation_steps * self.num_processes
        epoch, skip = divmod(start_step * per_step, self.steps_per_epoch)
        while True:
            for index, batch in self._epoch_batches(epoch, skip):
                if (epoch * self.steps_per_epoch + index) % self.num_processes == self.rank:
                    yield batch
            epoch, skip = epoch + 1, 0

    def _epoch_batches(self, epoch: int, skip: int) -> Iterator[tuple[int, Mapping[str, Any]]]:
        spe = self.steps_per_epoch
        what = f"make_batches({epoch})"
        with _seeded_rng(_epoch_seed(self.config.seed, epoch)):
            if self._accepts_start and skip:
                iterator = iter(self.make_batches(epoch, start=skip))
            else:
                batches = self.make_batches(epoch)
                if hasattr(batches, "__len__") and len(batches) != spe:  # type: ignore[arg-type]
                    raise ValueError(f"{what} has {len(batches)} batches, but steps_per_epoch={spe}")  # type: ignore[arg-type]
                if skip and isinstance(batches, Sequence):
                    iterator = iter(batches[skip:])
                else:
                    iterator = iter(batches)
                    if skip:
                        consumed = sum(1 for _ in islice(iterator, skip))
                        if consumed < skip:
                            raise ValueError(f"{what} yielded {consumed} batches, but steps_per_epoch={spe}")
            # The first batch of an epoch is fetched seeded too: a generator's set-up code or a DataLoader's
            # sampler runs at the first ``next``. Later batches are fetched in the training stream, in the
            # same place whether the run was resumed or not.
            first = [] if skip else list(islice(iterator, 1))
        index = skip
        while True:
            try:
                batch = first.pop() if first else next(iterator)
            except StopIteration:
                break
            if index >= spe:
                raise ValueError(f"{what} yielded more than steps_per_epoch={spe} batches")
            if not isinstance(batch, Mapping):
                raise TypeError(
                    f"{what}: batch {index + 1} is a {type(batch).__name__}, expected a dict of tensors"
                )
            yield index, batch
            index += 1
        if index < spe:
            raise ValueError(f"{what} yielded {index} batches, but steps_per_epoch={spe}")

    # ------------------------------------------------------------------ saving

    def _state_dict(self, state: _RunState, finished: bool) -> dict[str, Any]:
        per_step = self.config.gradient_accumulation_steps * self.num_processes
        epoch, step_in_epoch = divmod(state.step * per_step, self.steps_per_epoch)
        return {
            "step": state.step,
            "total_steps": self.total_steps,
            "epoch": epoch,
            "step_in_epoch": step_in_epoch,
            "best_metric": state.best_metric,
            "best_step": state.best_step,
            "bad_evals": state.bad_evals,
            "last_eval_step": state.last_eval_step,
            "finished": finished,
            "stopped_early": state.stopped_early,
            "train_seconds": state.train_seconds,
            "num_processes": self.num_processes,
            "monitor": self.config.monitor,
            "mode": self.config.mode,
            "fingerprint": self.fingerprint,
            "fingerprint_payload": {**self._fingerprint_payload, "param_groups": self._group_summary()},
            "config": self.config.to_dict(),
        }

    def _save(
        self, ckpt: Path, state: _RunState, history: History, rng: Mapping[str, Any], *, finished: bool
    ) -> Path:
        """Write ``step-XXXXXX/`` atomically, point ``latest`` at it, prune old ones."""
        from safetensors.torch import save_model

        name = f"{CHECKPOINT_PREFIX}{state.step:06d}"
        tmp = ckpt / f"{_TMP_PREFIX}{name}"
        final = ckpt / name
        main = self.accelerator.is_main_process
        self.accelerator.wait_for_everyone()
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.accelerator.wait_for_everyone()
        try:
            _save_rng(rng, tmp / _rng_file(self.rank))
            self.accelerator.wait_for_everyone()
            if main:
                save_model(self.accelerator.unwrap_model(self._model), str(tmp / MODEL_FILE))
                torch.save(self.optimizer.state_dict(), tmp / OPTIMIZER_FILE)
                torch.save(self.scheduler.state_dict(), tmp / SCHEDULER_FILE)
                if self.scaler is not None:
                    torch.save(self.scaler.state_dict(), tmp / SCALER_FILE)
                history.save(tmp / HISTORY_FILE)
                if self.save_extra is not None:
                    self.save_extra(tmp)
                _write_json(tmp / STATE_FILE, self._state_dict(state, finished))
                _fsync_tree(tmp)
                _replace_dir(tmp, final)
                _atomic_write_text(ckpt / LATEST_FILE, name + "\n")
        except BaseException:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        state.last_saved_step = state.step
        if main:
            self._prune(ckpt, keep=final)
        self.accelerator.wait_for_everyone()
        return final

    def _save_best(self, ckpt: Path, state: _RunState, metrics: Mapping[str, float]) -> None:
        """Write ``best/`` (weights, state with the metrics, extras) by building it aside and swapping it in."""
        from safetensors.torch import save_model

        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            tmp = ckpt / f"{_TMP_PREFIX}{BEST_DIR}"
            best, old = ckpt / BEST_DIR, ckpt / _BEST_OLD
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                save_model(self.accelerator.unwrap_model(self._model), str(tmp / MODEL_FILE))
                if self.save_extra is not None:
                    self.save_extra(tmp)
                values = self._state_dict(state, finished=False)
                values["metrics"] = dict(metrics)
                _write_json(tmp / STATE_FILE, values)
                _fsync_tree(tmp)
                if best.exists():
                    shutil.rmtree(old, ignore_errors=True)
                    os.replace(best, old)
                os.replace(tmp, best)
                _fsync_dir(ckpt)
                shutil.rmtree(old, ignore_errors=True)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        self.accelerator.wait_for_everyone()

    def _prune(self, ckpt: Path, keep: Path) -> None:
        folders = _step_folders(ckpt)
        for _step, folder in folders[: max(0, len(folders) - self.config.keep_last)]:
            if folder != keep:
                shutil.rmtree(folder, ignore_errors=True)

    def _write_run_outputs(
        self, run: Path | None, history: History, *, rewrite_logs: bool
    ) -> tuple[_CsvLog, _CsvLog] | None:
        """(Re)write ``log.csv``/``eval.csv`` from the history, or write ``history.json`` at the end."""
        if run is None or not self.accelerator.is_main_process:
            return None
        if rewrite_logs:
            logs = (_CsvLog(run / LOG_FILE, history.steps), _CsvLog(run / EVAL_FILE, history.evals))
            if history.finished:
                history.save(run / HISTORY_FILE)
            return logs
        history.save(run / HISTORY_FILE)
        return None


def _remove_temp_entries(ckpt: Path) -> None:
    """Delete leftovers of interrupted saves (``.tmp-*``) and restore a half-swapped ``best/``."""
    for child in ckpt.iterdir():
        if child.name.startswith(_TMP_PREFIX):
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    old, best = ckpt / _BEST_OLD, ckpt / BEST_DIR
    if old.exists():
        if best.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, best)


def _clear_checkpoints(ckpt: Path) -> None:
    """Delete what a Trainer wrote in ``ckpt`` (and nothing else)."""
    for child in ckpt.iterdir():
        if (
            _step_of(child) is not None
            or child.name in (BEST_DIR, _BEST_OLD)
            or child.name.startswith(_TMP_PREFIX)
        ):
            shutil.rmtree(child, ignore_errors=True)
    (ckpt / LATEST_FILE).unlink(missing_ok=True)


def train_or_load(
    model: torch.nn.Module,
    config: TrainConfig,
    make_batches: Callable[..., Iterable[Mapping[str, Any]]],
    steps_per_epoch: int,
    *,
    checkpoint_dir: str | os.PathLike[str],
    eval_fn: Callable[[torch.nn.Module], Mapping[str, float]] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
    save_extra: Callable[[Path], None] | None = None,
    fingerprint_extra: Mapping[str, Any] | None = None,
    quiet: bool | None = None,
    weights: Literal["latest", "best"] = "latest",
) -> History:
    """Load the finished run in ``checkpoint_dir`` when its config fingerprint matches, else train
    (see :meth:`Trainer.train_or_load`). The model ends on the trainer's device, in eval mode."""
    trainer = Trainer(
        model,
        config,
        make_batches,
        steps_per_epoch,
        param_groups=param_groups,
        save_extra=save_extra,
        fingerprint_extra=fingerprint_extra,
        quiet=quiet,
    )
    return trainer.train_or_load(
        eval_fn=eval_fn, run_dir=run_dir, checkpoint_dir=checkpoint_dir, weights=weights
    )
