"""The training engine: exact resume, atomic checkpoints, safe loading, early stopping, schedule, clipping,
train-or-load, logs and the loss-curve plot. A tiny toy model with dropout and tied weights stands in for SEVLM.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sevlm_lib.engine import (
    History,
    TrainConfig,
    Trainer,
    best_checkpoint,
    clipped_shares,
    config_fingerprint,
    latest_checkpoint,
    load_checkpoint,
    train_or_load,
)

VOCAB, WIDTH, N_ITEMS, BATCH = 12, 16, 40, 8  # 5 batches per epoch


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """The toy model is tiny: one thread is faster and leaves the other cores alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ToyLM(nn.Module):
    """Embedding -> dropout -> hidden layer -> tied output; returns ``.loss`` and ``.losses`` like SEVLM."""

    def __init__(self, seed: int = 0, loss_scale: float = 1.0) -> None:
        super().__init__()
        generator_state = torch.get_rng_state()
        torch.manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.hidden = nn.Linear(WIDTH, WIDTH)
        self.drop = nn.Dropout(0.3)
        self.out = nn.Linear(WIDTH, VOCAB, bias=False)
        self.out.weight = self.embed.weight  # tied, like GPT-2's lm_head
        self.aux_head = nn.Linear(WIDTH, 1)
        torch.set_rng_state(generator_state)
        self.loss_scale = loss_scale
        self.calls = 0
        self.interrupt_at: int | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> SimpleNamespace:
        self.calls += 1
        h = torch.tanh(self.hidden(self.drop(self.embed(batch["x"]).mean(1))))
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt  # after dropout drew random numbers for this (lost) step
        xe = F.cross_entropy(self.out(h), batch["y"]) * self.loss_scale
        aux = F.mse_loss(self.aux_head(h).squeeze(-1), batch["t"])
        return SimpleNamespace(loss=xe + 0.5 * aux, losses={"xe": xe, "aux": aux})


def toy_items() -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(123)
    x = torch.randint(0, VOCAB, (N_ITEMS, 5), generator=gen)
    y = (x.sum(1) % VOCAB).long()
    t = torch.randn(N_ITEMS, generator=gen)
    return [{"x": x[i], "y": y[i], "t": t[i]} for i in range(N_ITEMS)]


def make_batches(epoch: int) -> torch.utils.data.DataLoader:
    """A shuffled loader with no generator of its own: the trainer seeds it per epoch."""
    return torch.utils.data.DataLoader(toy_items(), batch_size=BATCH, shuffle=True)


STEPS_PER_EPOCH = N_ITEMS // BATCH


def make_trainer(model: nn.Module, **overrides: Any) -> Trainer:
    values: dict[str, Any] = dict(seed=3, max_steps=12, lr=1e-2, device="cpu", mixed_precision="no")
    extra = {k: overrides.pop(k) for k in ("param_groups", "save_extra") if k in overrides}
    values.update(overrides)
    return Trainer(model, TrainConfig(**values), make_batches, STEPS_PER_EPOCH, quiet=True, **extra)


def losses(history: History) -> list[float]:
    """Every logged loss value (total and components), step after step."""
    return [row[key] for row in history.steps for key in ("loss", "xe", "aux")]


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-7, msg=key)


# ----------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("accum", [1, 2])
def test_resume_after_stop_matches_a_straight_run(tmp_path: Path, accum: int) -> None:
    straight_model = ToyLM()
    straight = make_trainer(straight_model, gradient_accumulation_steps=accum).fit(
        checkpoint_dir=tmp_path / "a", run_dir=tmp_path / "run_a"
    )
    assert len(straight.steps) == 12 and straight.finished

    first = ToyLM()
    paused = make_trainer(first, gradient_accumulation_steps=accum).fit(
        checkpoint_dir=tmp_path / "b", stop_at=7
    )
    assert not paused.finished and len(paused.steps) == 7
    assert latest_checkpoint(tmp_path / "b").name == "step-000007"

    torch.manual_seed(2024)  # as in a fresh process: the checkpoint must bring the generators back
    second = ToyLM(seed=99)  # other initial weights: the checkpoint must overwrite them
    resumed = make_trainer(second, gradient_accumulation_steps=accum).fit(
        checkpoint_dir=tmp_path / "b", run_dir=tmp_path / "run_b", resume=True
    )
    assert second.calls == 5 * accum  # only the missing steps ran
    assert [r["step"] for r in resumed.steps] == list(range(1, 13))
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6, abs=1e-7)
    assert_same_weights(weights(second), weights(straight_model))
    # The per-run log is rebuilt from the checkpoint's history, so it holds each step once.
    log_lines = (tmp_path / "run_b" / "log.csv").read_text().splitlines()
    assert len(log_lines) == 13 and log_lines[0].startswith("step,epoch,loss,xe,aux,lr")


def test_interrupt_saves_the_last_step_and_resumes_exactly(tmp_path: Path) -> None:
    straight = make_trainer(ToyLM()).fit()
    model = ToyLM()
    model.interrupt_at = 10  # inside step 10: steps 1-9 are done, none checkpointed yet
    with pytest.raises(KeyboardInterrupt):
        make_trainer(model, checkpoint_every=100).fit(checkpoint_dir=tmp_path)
    assert latest_checkpoint(tmp_path).name == "step-000009"
    torch.manual_seed(2024)
    resumed = make_trainer(ToyLM(seed=5)).fit(checkpoint_dir=tmp_path)
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6, abs=1e-7)


def test_resume_uses_a_cheap_skip_when_make_batches_takes_start(tmp_path: Path) -> None:
    items = toy_items()
    starts: list[tuple[int, int]] = []

    def batches_from(epoch: int, start: int = 0) -> list[dict[str, torch.Tensor]]:
        starts.append((epoch, start))
        order = torch.randperm(N_ITEMS, generator=torch.Generator().manual_seed(epoch)).tolist()
        chunks = [order[i : i + BATCH] for i in range(0, N_ITEMS, BATCH)][start:]
        return [torch.utils.data.default_collate([items[j] for j in chunk]) for chunk in chunks]

    config = TrainConfig(seed=3, max_steps=8, lr=1e-2, device="cpu", mixed_precision="no")
    straight = Trainer(ToyLM(), config, batches_from, STEPS_PER_EPOCH, quiet=True).fit()
    Trainer(ToyLM(), config, batches_from, STEPS_PER_EPOCH, quiet=True).fit(
        checkpoint_dir=tmp_path, stop_at=7
    )
    starts.clear()
    torch.manual_seed(7)
    resumed = Trainer(ToyLM(), config, batches_from, STEPS_PER_EPOCH, quiet=True).fit(checkpoint_dir=tmp_path)
    assert starts == [(1, 2)]  # step 8 is batch 3 of epoch 1: two batches skipped without building them
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-6, abs=1e-7)


def test_same_seed_same_run_and_other_seed_differs() -> None:
    a = losses(make_trainer(ToyLM(), max_steps=6).fit())
    b = losses(make_trainer(ToyLM(), max_steps=6).fit())
    c = losses(make_trainer(ToyLM(), max_steps=6, seed=4).fit())
    assert a == b
    assert a != c


# ----------------------------------------------------------------------------------------- checkpoints


def test_crash_mid_save_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_trainer(ToyLM(), checkpoint_every=2).fit(checkpoint_dir=tmp_path, stop_at=4)
    assert (tmp_path / "latest").read_text().strip() == "step-000004"

    def crash(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full (simulated)")

    # model.safetensors, optimizer.pt and the RNG state are written by now; history.json is not.
    monkeypatch.setattr(History, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        make_trainer(ToyLM(), checkpoint_every=2).fit(checkpoint_dir=tmp_path)
    monkeypatch.undo()

    assert (tmp_path / "latest").read_text().strip() == "step-000004"
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000004"
    assert not (tmp_path / "step-000006").exists()
    # A stray half-written folder from a killed process, and a stale pointer target, are both ignored.
    stray = tmp_path / ".tmp-step-000010"
    stray.mkdir()
    (stray / "model.safetensors").write_bytes(b"\x00garbage")
    (stray / "state.json").write_text('{"step": 10')
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000004"
    state = load_checkpoint(tmp_path, ToyLM(seed=8))
    assert state["step"] == 4 and not state["finished"]

    model = ToyLM()
    history = make_trainer(model, checkpoint_every=2).fit(checkpoint_dir=tmp_path, resume=True)
    assert model.calls == 8 and history.finished
    assert not stray.exists()  # cleaned when a run starts
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "latest",
        "step-000010",
        "step-000012",
    ]  # keep_last=2


def test_latest_pointer_to_a_missing_folder_falls_back(tmp_path: Path) -> None:
    make_trainer(ToyLM(), checkpoint_every=3, keep_last=5).fit(checkpoint_dir=tmp_path, stop_at=6)
    (tmp_path / "latest").write_text("step-000099\n")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-000006"
    assert latest_checkpoint(tmp_path / "nothing-here") is None


def test_tied_weights_round_trip(tmp_path: Path) -> None:
    model = ToyLM()
    make_trainer(model, max_steps=3).fit(checkpoint_dir=tmp_path)
    loaded = ToyLM(seed=42)
    load_checkpoint(tmp_path / "step-000003", loaded)
    assert loaded.out.weight is loaded.embed.weight
    assert_same_weights(weights(loaded), weights(model))


class _Evil:
    """Unpickling this would call ``_record_unpickle``: it must never happen."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_record_unpickle, ("ran",))


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoints_are_only_loaded_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_trainer(ToyLM(), max_steps=4, checkpoint_every=2).fit(checkpoint_dir=tmp_path, stop_at=2)
    real_load = torch.load
    calls: list[Any] = []

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    make_trainer(ToyLM(), max_steps=4, checkpoint_every=2).fit(checkpoint_dir=tmp_path)
    assert len(calls) >= 2 and all(flag is True for flag in calls)

    folder = latest_checkpoint(tmp_path)
    with open(folder / "optimizer.pt", "wb") as handle:
        pickle.dump({"state": _Evil()}, handle)
    model = ToyLM()
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(ValueError, match="optimizer.pt.*weights_only"):
        load_checkpoint(folder, model, optimizer)
    assert _UNPICKLED == []


# ----------------------------------------------------------------------------------------- eval / early stop


def test_early_stopping_and_best_checkpoint(tmp_path: Path) -> None:
    scores = iter([0.1, 0.5, 0.4, 0.45, 0.3, 0.9, 0.9])
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    model = ToyLM()

    def eval_fn(m: nn.Module) -> dict[str, float]:
        assert not m.training
        snapshots[len(snapshots) + 1] = weights(m)
        torch.rand(3)  # eval may use randomness without disturbing training
        return {"acc": next(scores), "other": 1.0}

    trainer = make_trainer(model, max_steps=100, eval_every=2, monitor="acc", mode="max", patience=3)
    history = trainer.fit(eval_fn=eval_fn, checkpoint_dir=tmp_path, run_dir=tmp_path / "run")
    # Evaluations at steps 2, 4, ...: best 0.5 at step 4, then 3 without a gain (6, 8, 10) -> stop at 10.
    assert [e["step"] for e in history.evals] == [2, 4, 6, 8, 10]
    assert history.stopped_early and history.finished
    assert history.best_step == 4 and history.best_metric == 0.5
    assert history.steps[-1]["step"] == 10 and model.calls == 10
    best = best_checkpoint(tmp_path)
    assert best == tmp_path / "best"
    assert json.loads((best / "state.json").read_text())["metrics"]["acc"] == 0.5
    reloaded = ToyLM(seed=1)
    load_checkpoint(best, reloaded)
    assert_same_weights(weights(reloaded), snapshots[2])
    eval_lines = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    assert eval_lines[0] == "step,epoch,acc,other" and len(eval_lines) == 6


def test_min_mode_and_final_eval() -> None:
    scores = iter([3.0, 2.0, 2.5, 1.0])
    history = make_trainer(ToyLM(), max_steps=7, eval_every=3, monitor="val_loss", mode="min").fit(
        eval_fn=lambda m: {"val_loss": next(scores)}
    )
    assert [e["step"] for e in history.evals] == [3, 6, 7]  # and once more at the end
    assert history.best_metric == 2.0 and history.best_step == 6


def test_eval_does_not_change_the_training_run() -> None:
    plain = losses(make_trainer(ToyLM(), max_steps=8).fit())
    with_eval = losses(
        make_trainer(ToyLM(), max_steps=8, eval_every=2).fit(eval_fn=lambda m: {"x": float(torch.rand(()))})
    )
    assert with_eval == plain


# ----------------------------------------------------------------------------------------- optimizer


def test_param_groups_own_lrs_and_linear_decay_to_zero() -> None:
    model = ToyLM()
    head = [model.aux_head.weight, model.aux_head.bias]
    body = [p for n, p in model.named_parameters() if not n.startswith("aux_head")]
    groups = [dict(params=body, lr=2e-3, name="decoder"), dict(params=head, lr=4e-3, name="vad")]
    before = weights(model)
    trainer = make_trainer(model, max_steps=10, max_grad_norm=0.0, param_groups=groups)
    first: dict[str, torch.Tensor] = {}
    trainer.optimizer.register_step_post_hook(
        lambda opt, args, kwargs: first or first.update(weights(model))  # weights after step 1
    )
    history = trainer.fit()
    for row in history.steps:
        factor = (10 - (row["step"] - 1)) / 10
        assert row["lr_decoder"] == pytest.approx(2e-3 * factor)
        assert row["lr_vad"] == pytest.approx(4e-3 * factor)
        assert row["lr"] == row["lr_decoder"]
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [0.0, 0.0]
    # Adam's first update moves every parameter with a gradient by about its group's lr.
    assert (first["aux_head.weight"] - before["aux_head.weight"]).abs().max() == pytest.approx(4e-3, rel=1e-3)
    assert (first["hidden.weight"] - before["hidden.weight"]).abs().max() == pytest.approx(2e-3, rel=1e-3)


def test_warmup_then_decay() -> None:
    history = make_trainer(ToyLM(), max_steps=8, warmup_steps=4, lr=1.0e-2).fit()
    expected = [0.0, 0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25]
    assert [row["lr"] for row in history.steps] == pytest.approx([1e-2 * f for f in expected])


def test_trainable_parameter_left_out_of_the_groups_is_an_error() -> None:
    model = ToyLM()
    with pytest.raises(ValueError, match="aux_head.weight"):
        make_trainer(model, param_groups=[dict(params=[model.hidden.weight], name="only")])


@pytest.mark.parametrize("max_norm", [0.5, 0.0])
def test_gradient_clipping(max_norm: float) -> None:
    model = ToyLM(loss_scale=1000.0)
    trainer = make_trainer(model, max_steps=3, max_grad_norm=max_norm)
    seen: list[float] = []

    def record(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(
            float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))
        )

    trainer.optimizer.register_step_pre_hook(record)
    history = trainer.fit()
    logged = [row["grad_norm"] for row in history.steps]
    assert all(n > 5.0 for n in logged)  # the raw gradients are big
    if max_norm:
        assert all(n <= max_norm * (1 + 1e-4) for n in seen)
    else:
        assert seen == pytest.approx(logged, rel=1e-5)


def test_clip_groups_clips_each_group_on_its_own() -> None:
    model = ToyLM(loss_scale=1000.0)
    head = [model.aux_head.weight, model.aux_head.bias]
    body = [p for n, p in model.named_parameters() if not n.startswith("aux_head")]
    groups = [dict(params=body, name="decoder"), dict(params=head, name="heads")]
    trainer = make_trainer(model, max_steps=3, max_grad_norm=0.1, clip_groups=True, param_groups=groups)
    seen: list[dict[str, float]] = []

    def record(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        norms = {}
        for g in opt.param_groups:
            grads = [p.grad for p in g["params"] if p.grad is not None]
            norms[g["name"]] = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in grads])))
        seen.append(norms)

    trainer.optimizer.register_step_pre_hook(record)
    history = trainer.fit()
    for row, after in zip(history.steps, seen, strict=True):
        assert list(row)[-3:] == ["grad_norm", "grad_norm_decoder", "grad_norm_heads"]
        assert row["grad_norm"] == pytest.approx((row["grad_norm_decoder"] ** 2 + row["grad_norm_heads"] ** 2) ** 0.5)
        for name in ("decoder", "heads"):  # each group clipped to 0.1 by its own norm, not by the total's
            assert after[name] == pytest.approx(min(0.1, row[f"grad_norm_{name}"]), rel=1e-4)
    # the decoder's huge gradient (xe x 1000) does not shrink the head's: one global clip would scale it by
    # 0.1 / grad_norm (~3e-5)
    assert history.steps[0]["grad_norm_decoder"] > 100 and history.steps[0]["grad_norm_heads"] > 0.1
    assert clipped_shares(history, 0.1) == {"grad_norm": 1.0, "grad_norm_decoder": 1.0, "grad_norm_heads": 1.0}
    assert clipped_shares(history.to_frame(), 1e9)["grad_norm_heads"] == 0.0


def test_clip_gradients_unscales_once_per_step() -> None:
    """fp16 (CUDA only) unscales the gradients once per step: per-group clipping must not unscale twice."""
    from sevlm_lib.engine.trainer import clip_gradients

    calls: list[str] = []
    accelerator = SimpleNamespace(unscale_gradients=lambda: calls.append("unscale"))
    a, b = nn.Parameter(torch.ones(4)), nn.Parameter(torch.ones(9))
    a.grad, b.grad = torch.full((4,), 3.0), torch.full((9,), 4.0)
    norms = clip_gradients(accelerator, [("a", [a]), ("b", [b])], 1.0, per_group=True)
    assert calls == ["unscale"]
    assert float(norms["grad_norm_a"]) == pytest.approx(6.0) and float(norms["grad_norm_b"]) == pytest.approx(12.0)
    assert float(norms["grad_norm"]) == pytest.approx((36 + 144) ** 0.5)
    assert float(a.grad.norm()) == pytest.approx(1.0, rel=1e-5) and float(b.grad.norm()) == pytest.approx(1.0, rel=1e-5)


def test_one_global_clip_logs_no_group_norms() -> None:
    history = make_trainer(ToyLM(), max_steps=2).fit()
    assert not [k for k in history.steps[0] if k.startswith("grad_norm_")]
    assert set(clipped_shares(history.steps, 1.0)) == {"grad_norm"}
    with pytest.raises(ValueError, match="reserved"):
        from sevlm_lib.engine.trainer import loss_parts

        loss_parts(SimpleNamespace(loss=torch.tensor(1.0), losses={"grad_norm_x": torch.tensor(1.0)}))


def test_clip_groups_is_left_out_of_the_fingerprint_at_its_default() -> None:
    plain = TrainConfig(max_steps=3)
    assert "clip_groups" not in plain.to_dict() and TrainConfig.from_dict(plain.to_dict()) == plain
    grouped = TrainConfig(max_steps=3, clip_groups=True)
    assert grouped.to_dict()["clip_groups"] is True
    assert config_fingerprint(plain) != config_fingerprint(grouped)
    with pytest.raises(ValueError, match="clip_groups"):
        TrainConfig(max_steps=3, clip_groups=1)


# ----------------------------------------------------------------------------------------- train_or_load


def test_train_or_load_skips_a_finished_run(tmp_path: Path) -> None:
    config = TrainConfig(seed=3, max_steps=6, lr=1e-2, device="cpu", mixed_precision="no", eval_every=3)
    config_a = TrainConfig(**{**config.to_dict(), "log_every": 2})  # logging only: same fingerprint
    evals: list[int] = []

    def eval_fn(m: nn.Module) -> dict[str, float]:
        evals.append(1)
        return {"score": 1.0}

    trained = ToyLM()
    first = train_or_load(
        trained, config, make_batches, STEPS_PER_EPOCH, checkpoint_dir=tmp_path, eval_fn=eval_fn, quiet=True
    )
    assert trained.calls == 6 and len(evals) == 2

    fresh = ToyLM(seed=77)
    again = train_or_load(
        fresh,
        config_a,
        make_batches,
        STEPS_PER_EPOCH,
        checkpoint_dir=tmp_path,
        eval_fn=eval_fn,
        quiet=True,
        run_dir=tmp_path / "run",
    )
    assert fresh.calls == 0 and len(evals) == 2  # nothing trained or evaluated
    assert again.steps == first.steps and again.evals == first.evals
    assert_same_weights(weights(fresh), weights(trained))
    assert History.load(tmp_path / "run" / "history.json").steps == first.steps

    changed = TrainConfig(**{**config.to_dict(), "lr": 5e-3})
    retrained = ToyLM()
    train_or_load(retrained, changed, make_batches, STEPS_PER_EPOCH, checkpoint_dir=tmp_path, quiet=True)
    assert retrained.calls == 6


def test_fingerprint_ignores_logging_but_not_the_recipe() -> None:
    base = TrainConfig(max_steps=5)
    assert config_fingerprint(base) == config_fingerprint(TrainConfig(max_steps=5, log_every=7, keep_last=9))
    assert config_fingerprint(base) != config_fingerprint(TrainConfig(max_steps=6))
    assert config_fingerprint(base) != config_fingerprint(base, extra={"model": "distilgpt2"})


def test_resume_with_another_config_is_refused(tmp_path: Path) -> None:
    make_trainer(ToyLM()).fit(checkpoint_dir=tmp_path, stop_at=3)
    with pytest.raises(ValueError, match=r"lr: 0\.01 -> 0\.02"):
        make_trainer(ToyLM(), lr=2e-2).fit(checkpoint_dir=tmp_path)


# ----------------------------------------------------------------------------------------- logs, data, config


def test_logs_history_and_extras(tmp_path: Path) -> None:
    def save_extra(folder: Path) -> None:
        (folder / "tokenizer").mkdir()
        (folder / "tokenizer" / "vocab.txt").write_text("a\nb\n")

    history = make_trainer(ToyLM(), max_steps=6, log_every=2, save_extra=save_extra).fit(
        run_dir=tmp_path / "run", checkpoint_dir=tmp_path / "ckpt"
    )
    frame = history.to_frame()
    assert list(frame["step"]) == [2, 4, 6]
    assert {"loss", "xe", "aux", "lr", "grad_norm", "epoch"} <= set(frame.columns)
    assert frame["epoch"].iloc[-1] == pytest.approx(6 / STEPS_PER_EPOCH)
    assert history.train_seconds > 0
    saved = History.load(tmp_path / "run" / "history.json")
    assert saved.steps == history.steps and saved.finished
    assert (tmp_path / "ckpt" / "step-000006" / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"
    state = json.loads((tmp_path / "ckpt" / "step-000006" / "state.json").read_text())
    assert state["finished"] and state["config"]["max_steps"] == 6
    assert (state["epoch"], state["step_in_epoch"]) == (1, 1)


def test_wrong_number_of_batches_is_reported() -> None:
    trainer = Trainer(
        ToyLM(), TrainConfig(max_steps=8, device="cpu", mixed_precision="no"), make_batches, 6, quiet=True
    )
    with pytest.raises(ValueError, match=r"make_batches\(0\) has 5 batches, but steps_per_epoch=6"):
        trainer.fit()

    def short_generator(epoch: int) -> Any:
        yield from make_batches(epoch)

    trainer = Trainer(
        ToyLM(), TrainConfig(max_steps=8, device="cpu", mixed_precision="no"), short_generator, 6, quiet=True
    )
    with pytest.raises(ValueError, match=r"make_batches\(0\) yielded 5 batches"):
        trainer.fit()


def test_model_output_contract_is_checked() -> None:
    class NoLosses(ToyLM):
        def forward(self, batch: dict[str, torch.Tensor]) -> Any:
            return SimpleNamespace(loss=super().forward(batch).loss)

    with pytest.raises(TypeError, match=r"\.loss/\.losses"):
        make_trainer(NoLosses(), max_steps=1).fit()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(max_steps=None), "exactly one of max_steps and epochs"),
        (dict(patience=3), "needs TrainConfig.monitor"),
        (dict(mixed_precision="fp8"), "mixed_precision"),
        (dict(mode="best"), "mode"),
        (dict(eval_every=0), "eval_every"),
    ],
)
def test_bad_config_is_reported(changes: dict[str, Any], message: str) -> None:
    values = {"max_steps": 5, **changes}
    with pytest.raises(ValueError, match=message):
        TrainConfig(**values)


def test_epochs_give_the_step_count() -> None:
    config = TrainConfig(epochs=3, gradient_accumulation_steps=2)
    assert config.total_steps(steps_per_epoch=5) == 7
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


# ----------------------------------------------------------------------------------------- viz


def test_plot_loss_curves() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from sevlm_lib.viz import plot_loss_curves

    history = make_trainer(ToyLM(), max_steps=6, eval_every=3).fit(eval_fn=lambda m: {"acc": 0.5})
    ax = plot_loss_curves(history, metrics=["acc"])
    labels = [line.get_label() for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert labels == ["loss", "xe", "aux"]
    assert len(ax.get_lines()) == 6  # faint raw + smoothed per component
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["loss", "xe", "aux", "acc"]
    ax2 = plot_loss_curves(history.to_frame(), components=["xe"], smooth=0.0)
    assert len(ax2.get_lines()) == 1
    with pytest.raises(KeyError, match="nope"):
        plot_loss_curves(history, components=["nope"])
    import matplotlib.pyplot as plt

    plt.close("all")
