"""Selection on validation: the best checkpoint by a monitored metric with a tie-break, the reference's
best-per-metric checkpoints and its patience rule, the run folder's best checkpoint as the default for
evaluation, and transformers' AdamW (the reference's optimizer) written out by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from sevlm_lib.engine import TrainConfig, Trainer, best_checkpoint
from sevlm_lib.engine.checkpoint import RunState
from sevlm_lib.engine.optim import AdamWHF, make_optimizer
from sevlm_lib.pipeline import resolve_sevlm_checkpoint
from tests.test_training import STEPS_PER_EPOCH, ToyLM, make_batches


def test_ties_in_the_monitored_metric_go_to_the_tiebreak() -> None:
    state = RunState()
    rows = [{"emo_acc": 0.5, "bleu4": 0.10}, {"emo_acc": 0.5, "bleu4": 0.20}, {"emo_acc": 0.5, "bleu4": 0.15}]
    written = []
    for step, row in enumerate(rows, start=1):
        state.step = step
        written.append(state.update_best(row, monitor="emo_acc", tiebreak="bleu4"))
    assert written == [["best"], ["best"], []]
    assert (state.best_step, state.best_metric, state.best_tiebreak, state.bad_evals) == (2, 0.5, 0.20, 1)


def test_reference_selection_keeps_a_best_checkpoint_per_metric_and_counts_evaluations_without_any_gain() -> None:
    state = RunState()
    rows = [
        {"emo_acc": 0.3, "bleu4": 0.10},  # both new
        {"emo_acc": 0.2, "bleu4": 0.12},  # BLEU-4 gains: the counter resets
        {"emo_acc": 0.2, "bleu4": 0.11},  # no gain: 1
        {"emo_acc": 0.3, "bleu4": 0.12},  # equal is no gain: 2 -> stop with patience 2
    ]
    written = []
    for step, row in enumerate(rows, start=1):
        state.step = step
        written.append(state.update_best(row, monitor="emo_acc", patience=2, select_metrics=("emo_acc", "bleu4")))
    assert written == [["best", "best-emo_acc", "best-bleu4"], ["best-bleu4"], [], []]
    assert state.stopped_early and state.bad_evals == 2
    assert state.best_by == {"emo_acc": 0.3, "bleu4": 0.12}


def test_the_trainer_writes_each_best_folder_and_stops(tmp_path: Path) -> None:
    script = iter([{"emo_acc": 0.3, "bleu4": 0.1}, {"emo_acc": 0.2, "bleu4": 0.2}, {"emo_acc": 0.1, "bleu4": 0.1}])
    config = TrainConfig(
        max_steps=10, lr=1e-2, seed=0, eval_every=2, monitor="emo_acc", tiebreak="bleu4", patience=1,
        select_metrics=("bleu4",),
    )  # fmt: skip
    history = Trainer(ToyLM(), config, make_batches, STEPS_PER_EPOCH, quiet=True).fit(
        eval_fn=lambda model: next(script), checkpoint_dir=tmp_path
    )
    assert history.stopped_early and [row["step"] for row in history.evals] == [2, 4, 6]
    best, best_bleu = best_checkpoint(tmp_path), best_checkpoint(tmp_path, "best-bleu4")
    assert best is not None and best_bleu is not None
    assert json.loads(best.joinpath("state.json").read_text())["step"] == 2
    assert json.loads(best_bleu.joinpath("state.json").read_text())["step"] == 4


def test_selection_settings_need_a_monitor() -> None:
    with pytest.raises(ValueError, match="tiebreak and select_metrics need TrainConfig.monitor"):
        TrainConfig(max_steps=2, tiebreak="bleu4")
    with pytest.raises(ValueError, match="optimizer='sgd'"):
        TrainConfig(max_steps=2, optimizer="sgd")


def test_a_run_folder_resolves_to_its_best_checkpoint(tmp_path: Path) -> None:
    for name in ("step-000004", "best"):
        folder = tmp_path / name
        folder.mkdir()
        for file in ("model.safetensors", "model_config.json", "state.json"):
            (folder / file).write_text("{}")
    (tmp_path / "latest").write_text("step-000004\n")
    assert resolve_sevlm_checkpoint(tmp_path) == tmp_path / "best"
    assert resolve_sevlm_checkpoint(tmp_path / "step-000004") == tmp_path / "step-000004"
    (tmp_path / "best" / "model_config.json").unlink()  # an incomplete best/ is not chosen
    assert resolve_sevlm_checkpoint(tmp_path) == tmp_path / "step-000004"


def test_transformers_adamw_by_hand() -> None:
    """Two steps of transformers' (<= 4.x) AdamW, from its equations, on a 3-vector."""
    lr, b1, b2, eps, wd = 0.1, 0.9, 0.999, 1e-6, 0.01
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = AdamWHF([p], lr=lr, eps=eps, weight_decay=wd)
    x = p.detach().clone()
    m, v = torch.zeros(3), torch.zeros(3)
    for t, g in enumerate([torch.tensor([0.3, -0.1, 2.0]), torch.tensor([-0.2, 0.4, 1.0])], start=1):
        p.grad = g.clone()
        opt.step()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        x = x - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (v.sqrt() + eps)
        x = x - lr * wd * x
        torch.testing.assert_close(p.detach(), x, rtol=0, atol=1e-6)
    torch_p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    torch_opt = make_optimizer([{"params": [torch_p]}], "adamw", lr, wd, eps)
    torch_p.grad = torch.tensor([0.3, -0.1, 2.0])
    torch_opt.step()
    assert not torch.allclose(torch_p.detach(), torch.tensor([1.0, -2.0, 0.5]) - 0)  # it moved
