"""The one training loop of the course: :class:`Trainer`.

The model only has to follow one contract: ``model(batch) -> out`` with ``out.loss`` (a scalar tensor, the
one that is back-propagated) and ``out.losses`` (a dict of named scalar tensors, logged one column each).
Batches come from ``make_batches(epoch)`` (see :mod:`sevlm_lib.engine.batches`). One optimizer step uses
``gradient_accumulation_steps`` batches per process; under ``accelerate launch`` with several processes,
``accelerate`` averages the gradients (DDP). Checkpoints: :mod:`sevlm_lib.engine.checkpoint`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from accelerate.utils import send_to_device
from tqdm.auto import tqdm

from sevlm_lib.engine import checkpoint as ck
from sevlm_lib.engine.batches import batch_stream, seeded_rng
from sevlm_lib.engine.checkpoint import RunState
from sevlm_lib.engine.config import (
    TrainConfig,
    build_param_groups,
    describe_mismatch,
    linear_schedule,
    make_accelerator,
    run_identity,
)
from sevlm_lib.engine.history import History, RunLogs, step_row
from sevlm_lib.engine.lock import RunLock
from sevlm_lib.engine.optim import make_optimizer
from sevlm_lib.io import read_json
from sevlm_lib.settings import get_settings, seed_everything

logger = logging.getLogger(__name__)

RESERVED_COLUMNS = frozenset({"step", "epoch", "loss", "lr", "grad_norm"})
RESERVED_PREFIXES = ("grad_norm_",)  # the per-group norm columns of clip_groups
ResumeMode = Literal["auto"] | bool
EvalFn = Callable[[torch.nn.Module], Mapping[str, float]]


def as_scalar(value: Any, what: str) -> torch.Tensor:
    """A detached float scalar, or an error naming ``what`` when ``value`` is not one number."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float32)
    if tensor.numel() != 1:
        raise ValueError(f"model output: {what} has shape {tuple(tensor.shape)}, expected a scalar")
    return tensor.detach().float().reshape(())


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (a scheduler's or ``kill``'s stop) acts like Ctrl-C, so the trainer saves the
    last finished step before it stops. Only the main thread can install signal handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def loss_parts(out: Any) -> dict[str, torch.Tensor]:
    """``loss`` and each named loss component of a model output, as detached scalars (checked)."""
    if not hasattr(out, "loss") or not hasattr(out, "losses"):
        raise TypeError(
            f"model output {type(out).__name__} lacks .loss/.losses; the Trainer needs "
            "model(batch) -> object with .loss (scalar tensor) and .losses (dict of scalar tensors)"
        )
    parts = {"loss": as_scalar(out.loss, "loss")}
    for name, value in dict(out.losses).items():
        if name in RESERVED_COLUMNS or name.startswith(RESERVED_PREFIXES):
            raise ValueError(f"model output: a loss component is named {name!r}, a reserved log column (or prefix)")
        parts[name] = as_scalar(value, f"losses[{name!r}]")
    return parts


def clip_gradients(
    accelerator: Any, groups: Sequence[tuple[str, list[torch.Tensor]]], max_norm: float, per_group: bool
) -> dict[str, torch.Tensor]:
    """Clip the gradients of the optimizer ``groups`` (``(name, params)``): all with one norm, or each group by
    its own norm (``per_group``). Returns the norms before clipping: ``grad_norm`` (all parameters) and, per
    group, ``grad_norm_{name}``."""
    if not per_group:
        params = [p for _, group in groups for p in group]
        return {"grad_norm": as_scalar(accelerator.clip_grad_norm_(params, max_norm), "grad_norm")}
    accelerator.unscale_gradients()  # once per step (fp16); then plain torch clipping group by group
    norms = {
        f"grad_norm_{name}": as_scalar(torch.nn.utils.clip_grad_norm_(params, max_norm), f"grad_norm_{name}")
        for name, params in groups
    }
    total = torch.stack(list(norms.values())).square().sum().sqrt()
    return {"grad_norm": total, **norms}


@dataclass
class _Run:
    """One call of :meth:`Trainer.fit`: its state and history, where it writes, and when it pauses."""

    state: RunState
    history: History
    eval_fn: EvalFn | None
    logs: RunLogs | None
    ckpt: Path | None
    stop_at: int | None
    rng: Mapping[str, Any] = field(default_factory=dict)  # the generators after the last finished step


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
        self.config, self.make_batches, self.steps_per_epoch = config, make_batches, steps_per_epoch
        self.save_extra = save_extra
        self.quiet = get_settings().quiet if quiet is None else bool(quiet)
        self.accelerator = make_accelerator(config)
        self.num_processes, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.total_steps = config.total_steps(steps_per_epoch, self.num_processes)
        if config.warmup_steps > self.total_steps:
            raise ValueError(
                f"TrainConfig.warmup_steps={config.warmup_steps} is more than the run's {self.total_steps} steps"
            )
        self.model = model  # the caller's module; ``_model`` is what accelerate wrapped (DDP, autocast)
        groups = build_param_groups(model, param_groups, config)
        self.group_names = [g["name"] for g in groups]
        self.optimizer = make_optimizer(groups, config.optimizer, config.lr, config.weight_decay, config.adam_eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, linear_schedule(config.warmup_steps, self.total_steps)
        )
        self._model, self._optimizer = self.accelerator.prepare(model, self.optimizer)
        self._group_params = [(g["name"], list(g["params"])) for g in groups]
        self.fingerprint, self._facts = run_identity(
            config, groups, steps_per_epoch, fingerprint_extra, self.total_steps, self.num_processes
        )
        self._used, self._writer = False, None

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
        eval_fn: EvalFn | None = None,
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
        main = self.accelerator.is_main_process
        with RunLock(ckpt) if ckpt is not None and main else contextlib.nullcontext():
            if main:
                ck.prepare_folders(run, ckpt)
            self.accelerator.wait_for_everyone()
            if ckpt is not None:
                keep = self.config.keep_last
                self._writer = ck.CheckpointWriter(ckpt, self.accelerator, save_extra=self.save_extra, keep_last=keep)
            state, history = self._start(ckpt, resume)
            logs = RunLogs(run, history) if run is not None and main else None
            if not state.finished:
                with sigterm_as_interrupt():  # a SIGTERM saves the last finished step, as Ctrl-C does
                    self._loop(_Run(state, history, eval_fn, logs, ckpt, stop_at))
        self.model.eval()
        return history

    def _mismatch(self, saved: Mapping[str, Any]) -> str:
        return describe_mismatch(saved.get("fingerprint_payload", {}), self._facts["fingerprint_payload"])

    def _start(self, ckpt: Path | None, resume: ResumeMode) -> tuple[RunState, History]:
        found = ck.latest_checkpoint(ckpt) if ckpt is not None else None
        if resume is True and found is None:
            where = "no checkpoint_dir given" if ckpt is None else f"no checkpoint in {ckpt}"
            raise FileNotFoundError(f"Trainer.fit(resume=True): {where}")
        if resume is False or found is None:
            if ckpt is not None and resume is False:
                self.accelerator.wait_for_everyone()
                if self.accelerator.is_main_process:
                    ck.clear_checkpoints(ckpt)
                self.accelerator.wait_for_everyone()
            seed_everything(self.config.seed + self.rank)
            return RunState(), History(
                monitor=self.config.monitor, mode=self.config.mode, fingerprint=self.fingerprint
            )
        saved = read_json(found / ck.STATE_FILE)
        if saved.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"{found}: this checkpoint was written by a run with another configuration "
                f"({self._mismatch(saved) or 'fingerprint differs'}); use resume=False to start over "
                "or another checkpoint_dir"
            )
        state = ck.resume_from(
            found,
            saved,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            rank=self.rank,
            num_processes=self.num_processes,
        )
        logger.info("resuming from %s (step %d of %d)", found, state.step, self.total_steps)
        return state, ck.load_history(found)

    # ------------------------------------------------------------------ the loop

    def _loop(self, run: _Run) -> None:
        """The training loop: step, log, evaluate, checkpoint; an interrupt saves the last finished step."""
        state, history, logs = run.state, run.history, run.logs
        per_step = self.config.gradient_accumulation_steps * self.num_processes
        stream = batch_stream(
            self.make_batches, self.steps_per_epoch, seed=self.config.seed, start_batch=state.step * per_step,
            rank=self.rank, num_processes=self.num_processes,
        )  # fmt: skip
        run.rng = ck.capture_rng_state() if run.ckpt is not None else {}
        running: float | None = None
        quiet = self.quiet or not self.accelerator.is_main_process
        bar = tqdm(total=self.total_steps, initial=state.step, disable=quiet, desc="train")
        started, before = time.perf_counter(), state.train_seconds
        self._model.train()
        try:
            while True:
                state.train_seconds = before + time.perf_counter() - started
                self._after_step(run)
                if state.finished or (run.stop_at is not None and state.step >= run.stop_at):
                    break
                values = self._train_step(stream)
                state.step += 1
                run.rng = ck.capture_rng_state() if run.ckpt is not None else {}
                bar.update(1)
                if state.step % self.config.log_every == 0 or state.step == self.total_steps:
                    history.steps.append(self._log_row(state.step, values))
                    if logs is not None:
                        logs.steps.appended()
                    loss = history.steps[-1]["loss"]
                    running = loss if running is None else 0.9 * running + 0.1 * loss
                    bar.set_postfix(loss=f"{running:.4f}", lr=f"{history.steps[-1]['lr']:.2e}")
        except KeyboardInterrupt:
            if run.ckpt is not None and state.step > state.last_saved_step:
                state.train_seconds = before + time.perf_counter() - started
                logger.warning("interrupted: saving step %d to %s", state.step, run.ckpt)
                self._save(run, finished=False)
            raise
        finally:
            bar.close()
        history.train_seconds = state.train_seconds = before + time.perf_counter() - started
        history.finished = state.finished
        if logs is not None:
            logs.finish(history)

    def _after_step(self, run: _Run) -> None:
        """Evaluate, early-stop and checkpoint for the step just done (each at most once per step)."""
        cfg, state, step = self.config, run.state, run.state.step
        if step == 0:
            return
        at_end = step >= self.total_steps
        periodic = cfg.eval_every is not None and step % cfg.eval_every == 0
        if run.eval_fn is not None and state.last_eval_step != step and (at_end or periodic):
            self._evaluate(run)
        finished = at_end or state.stopped_early
        due = finished or (cfg.checkpoint_every is not None and step % cfg.checkpoint_every == 0)
        due = due or (run.stop_at is not None and step >= run.stop_at)
        if run.ckpt is not None and due and state.last_saved_step != step:
            state.finished = run.history.finished = finished
            run.history.train_seconds = state.train_seconds
            self._save(run, finished=finished)
        state.finished = finished

    def _train_step(self, stream: Iterator[Mapping[str, Any]]) -> dict[str, Any]:
        """One optimizer step over ``gradient_accumulation_steps`` batches; returns detached values."""
        accum = self.config.gradient_accumulation_steps
        self._optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        counts: dict[str, int] = {}
        for micro in range(accum):
            batch = send_to_device(next(stream), self.device)
            sync = contextlib.nullcontext() if micro == accum - 1 else self.accelerator.no_sync(self._model)
            with sync:
                out = self._model(batch)
                parts = loss_parts(out)
                self.accelerator.backward(out.loss / accum)
            for name, value in parts.items():
                sums[name] = sums[name] + value if name in sums else value
                counts[name] = counts.get(name, 0) + 1
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm > 0 else float("inf")
        group_norms = clip_gradients(self.accelerator, self._group_params, max_norm, self.config.clip_groups)
        self._optimizer.step()
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.scheduler.step()
        values: dict[str, Any] = {name: total / counts[name] for name, total in sums.items()}
        values.update(group_norms)
        values["_lrs"] = lrs
        return values

    def _log_row(self, step: int, values: Mapping[str, Any]) -> dict[str, float]:
        names = [k for k in values if k != "_lrs"]
        stacked = torch.stack([values[k].to(self.device) for k in names])
        if self.num_processes > 1:
            stacked = self.accelerator.reduce(stacked, reduction="mean")
        numbers = dict(zip(names, stacked.cpu().tolist(), strict=True))
        return step_row(
            step, self._epoch(step), numbers, dict(zip(self.group_names, values["_lrs"], strict=True))
        )

    def _epoch(self, step: int) -> float:
        return step * self.config.gradient_accumulation_steps * self.num_processes / self.steps_per_epoch

    def _evaluate(self, run: _Run) -> None:
        """Run ``eval_fn``, log its row, keep ``best/`` and count evaluations without improvement."""
        cfg, state, history, step = self.config, run.state, run.history, run.state.step
        self.model.eval()
        try:
            with seeded_rng(None), torch.no_grad():
                metrics = run.eval_fn(self.model)  # type: ignore[misc]
        finally:
            self._model.train()
        row = history.add_eval(step, self._epoch(step), metrics)
        if run.logs is not None:
            run.logs.evals.appended()
        state.last_eval_step = step
        if cfg.monitor is None:
            return
        if cfg.monitor not in row:
            raise KeyError(
                f"eval_fn returned {sorted(metrics)}, without the monitored metric {cfg.monitor!r}"
            )
        missing = [m for m in (cfg.tiebreak, *cfg.select_metrics) if m and m not in row]
        if missing:
            raise KeyError(f"eval_fn returned {sorted(metrics)}, without the selection metric(s) {missing}")
        folders = state.update_best(
            row, monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience, tiebreak=cfg.tiebreak,
            select_metrics=cfg.select_metrics,
        )  # fmt: skip
        history.best_metric, history.best_step = state.best_metric, state.best_step
        for name in folders if self._writer is not None else ():
            values = {**self._state_dict(state, finished=False), "metrics": dict(row)}
            self._writer.best(self._unwrapped(), values, name=name)  # type: ignore[union-attr]
        if state.stopped_early:
            history.stopped_early = True
            logger.info("early stop at step %d: %d evaluations without a gain", step, state.bad_evals)

    # ------------------------------------------------------------------ saving

    def _unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self._model)

    def _state_dict(self, state: RunState, finished: bool) -> dict[str, Any]:
        per_step = self.config.gradient_accumulation_steps * self.num_processes
        epoch, step_in_epoch = divmod(state.step * per_step, self.steps_per_epoch)
        return {**state.record(finished), "epoch": epoch, "step_in_epoch": step_in_epoch, **self._facts}

    def _save(self, run: _Run, *, finished: bool) -> None:
        assert self._writer is not None
        self._writer.step(
            run.state.step, run.rng, state=self._state_dict(run.state, finished), model=self._unwrapped(),
            optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler, history=run.history,
        )  # fmt: skip
        run.state.last_saved_step = run.state.step

def train_or_load(
    model: torch.nn.Module,
    config: TrainConfig,
    make_batches: Callable[..., Iterable[Mapping[str, Any]]],
    steps_per_epoch: int,
    *,
    checkpoint_dir: str | os.PathLike[str],
    eval_fn: EvalFn | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
    save_extra: Callable[[Path], None] | None = None,
    fingerprint_extra: Mapping[str, Any] | None = None,
    quiet: bool | None = None,
    weights: Literal["latest", "best"] = "latest",
) -> History:
    """Load the finished run in ``checkpoint_dir`` if its fingerprint matches (no training), else train
    (resuming a matching partial run; a run with another fingerprint is replaced). ``weights="best"`` then
    loads ``best/`` instead of the final weights. The model ends on the trainer's device, in eval mode."""
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
    if weights not in ("latest", "best"):
        raise ValueError(f"train_or_load: weights={weights!r}, expected 'latest' or 'best'")
    found = ck.latest_checkpoint(checkpoint_dir)
    resume: ResumeMode = "auto"
    if found is not None:
        saved = read_json(found / ck.STATE_FILE)
        if saved.get("fingerprint") != trainer.fingerprint:
            why = trainer._mismatch(saved) or "fingerprint differs"
            logger.warning("%s was trained with another configuration (%s); training afresh", found, why)
            resume = False
    history = trainer.fit(eval_fn=eval_fn, run_dir=run_dir, checkpoint_dir=checkpoint_dir, resume=resume)
    if weights == "best":
        best = ck.best_checkpoint(checkpoint_dir)
        if best is None:
            raise FileNotFoundError(f"{checkpoint_dir}: no best/ checkpoint (was a metric monitored?)")
        ck.load_checkpoint(best, model)
    return history
