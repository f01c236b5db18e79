"""What a run logged: :class:`History` (steps and evaluations) and the CSV logs written while it trains."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sevlm_lib.io import atomic_write_text, temp_path

HISTORY_FILE = "history.json"
LOG_FILE = "log.csv"
GROUP_NORM_PREFIX = "grad_norm_"  # a step-log column per optimizer group with TrainConfig.clip_groups
EVAL_FILE = "eval.csv"


@dataclass
class History:
    """What a run logged: per-step rows (``step``, ``epoch``, ``loss``, one column per loss component,
    ``lr`` and ``lr_{group}``, ``grad_norm`` and, with ``TrainConfig.clip_groups``, ``grad_norm_{group}``) and
    evaluation rows (``step``, ``epoch``, the metrics)."""

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
        if which not in ("steps", "evals"):
            raise ValueError(f"History.to_frame: which={which!r}, expected 'steps' or 'evals'")
        return pd.DataFrame(self.steps if which == "steps" else self.evals)

    def add_eval(self, step: int, epoch: float, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Append (and return) the evaluation row of ``metrics`` at ``step``; every value must be a number."""
        if not isinstance(metrics, Mapping):
            raise TypeError(f"eval_fn returned {type(metrics).__name__}, expected a dict of metric -> number")
        row: dict[str, float] = {"step": step, "epoch": epoch}
        for key, value in metrics.items():
            try:
                row[str(key)] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"eval_fn: metric {key!r} is {value!r}, not a number") from None
        self.evals.append(row)
        return row

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``history.json`` (atomically)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
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


class CsvLog:
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
        tmp = temp_path(self.path)
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


class RunLogs:
    """``log.csv`` and ``eval.csv`` in a run folder, kept in step with a :class:`History`."""

    def __init__(self, run_dir: Path, history: History) -> None:
        self.run_dir = run_dir
        self.steps = CsvLog(run_dir / LOG_FILE, history.steps)
        self.evals = CsvLog(run_dir / EVAL_FILE, history.evals)
        if history.finished:
            history.save(run_dir / HISTORY_FILE)

    def finish(self, history: History) -> None:
        """Write ``history.json`` at the end of a run."""
        history.save(self.run_dir / HISTORY_FILE)


def step_row(
    step: int, epoch: float, numbers: dict[str, float], lrs: Mapping[str, float]
) -> dict[str, float]:
    """The log row of one optimizer step: ``step``, ``epoch``, ``loss``, each loss component, ``lr`` (the first
    group's) and ``lr_{group}`` when there are several groups, ``grad_norm``, then ``grad_norm_{group}`` (each
    group's norm before clipping) when the trainer clips per group. A non-finite loss is an error."""
    numbers = dict(numbers)
    if not math.isfinite(numbers["loss"]):
        raise FloatingPointError(f"step {step}: the training loss is {numbers['loss']}")
    row: dict[str, float] = {"step": step, "epoch": epoch, "loss": numbers.pop("loss")}
    grad_norm = numbers.pop("grad_norm")
    group_norms = {k: numbers.pop(k) for k in list(numbers) if k.startswith(GROUP_NORM_PREFIX)}
    row.update(numbers)
    row["lr"] = next(iter(lrs.values()))
    if len(lrs) > 1:
        row.update({f"lr_{name}": lr for name, lr in lrs.items()})
    row["grad_norm"] = grad_norm
    row.update(group_norms)
    return row


def clipped_shares(steps: Any, max_grad_norm: float) -> dict[str, float]:
    """The share of logged steps whose gradient norm was clipped, per norm column of a step log.

    ``steps``: a :class:`History`, its step rows, or a ``DataFrame`` of them (``log.csv``). Returns
    ``{"grad_norm": ..., "grad_norm_{group}": ...}``: with one global clip (the default) ``grad_norm`` is the
    share that counts; with ``TrainConfig.clip_groups`` each ``grad_norm_{group}`` is its group's share
    (``grad_norm`` is then the norm of all parameters, not a clipping threshold's input).
    """
    if isinstance(steps, History):
        steps = steps.steps
    frame = steps if isinstance(steps, pd.DataFrame) else pd.DataFrame(list(steps))
    if not max_grad_norm > 0:
        raise ValueError(f"clipped_shares: max_grad_norm={max_grad_norm!r}, expected a number > 0 (0: no clipping)")
    columns = [c for c in frame.columns if c == "grad_norm" or str(c).startswith(GROUP_NORM_PREFIX)]
    if not columns or frame.empty:
        raise ValueError("clipped_shares: the log has no step rows with a grad_norm column")
    return {str(c): float((frame[c] > max_grad_norm).mean()) for c in columns}
