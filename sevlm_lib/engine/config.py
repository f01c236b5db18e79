"""What defines a training run: :class:`TrainConfig`, its fingerprint, the optimizer groups and schedule.

A run's *fingerprint* hashes everything that changes what it computes (the config less its log/checkpoint/
device settings, the parameter groups, the batches per epoch and the caller's ``extra``: model config, data
identity, recipe). A finished run is reused only when the fingerprint matches.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from sevlm_lib.engine.optim import OPTIMIZERS

OPERATIONAL_FIELDS = frozenset({"log_every", "checkpoint_every", "keep_last", "device"})


MIXED_PRECISION = ("no", "fp16", "bf16", "auto")
# Fields added after runs were fingerprinted: ``TrainConfig.to_dict`` leaves them out at these defaults.
NEW_FIELD_DEFAULTS: dict[str, Any] = {"clip_groups": False}


@dataclass
class TrainConfig:
    """Everything that defines a training run (the data and the model are the caller's business).

    Give ``max_steps`` (optimizer steps) or ``epochs`` (passes over ``steps_per_epoch`` batches), not both.
    ``lr`` is the learning rate of parameters not in a named group. The schedule is linear decay to 0 at the
    last step after ``warmup_steps`` of linear warm-up. ``max_grad_norm=0`` disables clipping;
    ``clip_groups=True`` clips each optimizer group to ``max_grad_norm`` separately (and logs
    ``grad_norm_{group}``, each group's norm before clipping). Evaluation runs
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
    optimizer: str = "adamw"  # "adamw" (torch) or "adamw_hf" (transformers' old AdamW, the reference's)
    adam_eps: float = 1e-8  # torch's default; the reference's transformers AdamW used 1e-6
    tiebreak: str | None = None  # a second metric that decides between evaluations equal in ``monitor``
    select_metrics: tuple[str, ...] = ()  # also keep ``best-{metric}/`` for each; a gain in any resets patience
    clip_groups: bool = False  # clip each optimizer group to ``max_grad_norm`` on its own (not one global norm)

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
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer={self.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")
        if isinstance(self.adam_eps, bool) or not isinstance(self.adam_eps, (int, float)) or not self.adam_eps > 0:
            raise ValueError(f"TrainConfig.adam_eps={self.adam_eps!r}: expected a number > 0")
        self.select_metrics = tuple(self.select_metrics)
        if not isinstance(self.clip_groups, bool):
            raise ValueError(f"TrainConfig.clip_groups={self.clip_groups!r}: expected True or False")
        if (self.tiebreak or self.select_metrics) and self.monitor is None:
            raise ValueError("TrainConfig.tiebreak and select_metrics need TrainConfig.monitor")
        if self.mode not in ("max", "min"):
            raise ValueError(f"TrainConfig.mode={self.mode!r}: expected 'max' or 'min'")
        if self.patience is not None and self.monitor is None:
            raise ValueError("TrainConfig.patience needs TrainConfig.monitor (the metric to watch)")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(
                f"TrainConfig.mixed_precision={self.mixed_precision!r}: expected one of {', '.join(MIXED_PRECISION)}"
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
        """A JSON-ready dict (``dataclasses.asdict``), less the fields of ``NEW_FIELD_DEFAULTS`` while they have
        their default, so the fingerprints of runs trained before those fields existed do not change."""
        d = asdict(self)
        for name, default in NEW_FIELD_DEFAULTS.items():
            if d[name] == default:
                del d[name]
        return d

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
        json.dumps(fingerprint_payload(config, param_groups, steps_per_epoch, extra), sort_keys=True).encode()
    ).hexdigest()[:16]


def fingerprint_payload(
    config: TrainConfig,
    param_groups: Sequence[Mapping[str, Any]],
    steps_per_epoch: int | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    cfg = {k: v for k, v in config.to_dict().items() if k not in OPERATIONAL_FIELDS}
    return {
        "config": cfg,
        "param_groups": [dict(g) for g in param_groups],
        "steps_per_epoch": steps_per_epoch,
        "extra": json.loads(json.dumps(extra if extra is not None else {}, sort_keys=True, default=str)),
    }


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_mixed_precision(config: TrainConfig) -> str:
    if config.mixed_precision != "auto":
        return config.mixed_precision
    return "fp16" if resolve_device(config.device) != "cpu" else "no"


def make_accelerator(config: TrainConfig) -> Any:
    """An ``accelerate.Accelerator`` for this config (``cpu=True`` on CPU)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    device = resolve_device(config.device)
    precision = resolve_mixed_precision(config)
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


def build_param_groups(
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


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def describe_mismatch(saved_payload: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    """How a saved run's fingerprint payload differs from ``payload`` ("" when they agree)."""
    old, new = saved_payload, payload
    diffs = []
    for key in sorted(set(old.get("config", {})) | set(new.get("config", {}))):
        a, b = old.get("config", {}).get(key), new.get("config", {}).get(key)
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    for key in ("steps_per_epoch", "extra", "param_groups"):
        if old.get(key) != new.get(key):
            diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return "; ".join(diffs)


def group_summary(param_groups: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Name, learning rate, weight decay and size of each optimizer group (part of the fingerprint)."""
    return [
        {
            "name": g["name"],
            "lr": g.get("initial_lr", g["lr"]),
            "weight_decay": g["weight_decay"],
            "numel": sum(p.numel() for p in g["params"]),
        }
        for g in param_groups
    ]


def run_identity(
    config: TrainConfig,
    groups: Sequence[Mapping[str, Any]],
    steps_per_epoch: int,
    extra: Mapping[str, Any] | None,
    total_steps: int,
    num_processes: int,
) -> tuple[str, dict[str, Any]]:
    """A run's fingerprint and the facts every ``state.json`` records besides the run state (the totals,
    the monitored metric, the fingerprint and what it hashed, the config)."""
    summary = group_summary(groups)
    fingerprint = config_fingerprint(
        config, param_groups=summary, steps_per_epoch=steps_per_epoch, extra=extra
    )
    return fingerprint, {
        "total_steps": total_steps,
        "num_processes": num_processes,
        "monitor": config.monitor,
        "mode": config.mode,
        "fingerprint": fingerprint,
        "fingerprint_payload": fingerprint_payload(config, summary, steps_per_epoch, extra),
        "config": config.to_dict(),
    }
