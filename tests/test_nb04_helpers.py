"""Tests of the notebook-04 plotting helper ``sevlm_lib.viz.plot_vad_trajectory`` (headless)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from sevlm_lib.viz import VAD_DIMENSIONS, plot_vad_trajectory


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _inputs(n: int = 5) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    tokens = [f"w{i}" for i in range(n)]
    pred = rng.uniform(-1, 1, (n, 3))
    target = rng.uniform(-1, 1, (n, 3))
    known = np.array([True, False, True, True, False][:n])
    return tokens, pred, target, known


def test_draws_prediction_line_and_known_targets_per_dimension():
    tokens, pred, target, known = _inputs()
    axes = plot_vad_trajectory(tokens, pred, target, known, title="one explanation")
    assert len(axes) == 3
    assert [ax.get_ylabel() for ax in axes] == [d[0].upper() for d in VAD_DIMENSIONS]
    assert axes[0].get_title() == "one explanation"
    for k, ax in enumerate(axes):
        head = [line for line in ax.get_lines() if line.get_label() == "VAD head"]
        assert len(head) == 1
        np.testing.assert_allclose(head[0].get_ydata(), pred[:, k])
        (dots,) = ax.collections
        np.testing.assert_allclose(dots.get_offsets(), np.c_[np.flatnonzero(known), target[known, k]])
    labels = axes[-1].get_xticklabels()
    assert [t.get_text() for t in labels] == tokens
    assert [t.get_color() == "0.6" for t in labels] == list(~known)


def test_extra_lines_are_dashed_and_labelled_and_axes_reused():
    tokens, pred, target, known = _inputs()
    other = np.zeros((5, 3)) + 0.25
    _fig, axes = plt.subplots(3, 2)
    out = plot_vad_trajectory(tokens, pred, target, known, axes=axes[:, 1], extra={"baseline LM": other})
    assert out == list(axes[:, 1])
    assert not axes[0, 0].get_lines()  # the other column is untouched
    dashed = [line for line in out[2].get_lines() if line.get_label() == "baseline LM"]
    assert len(dashed) == 1 and dashed[0].get_linestyle() == "--"
    np.testing.assert_allclose(dashed[0].get_ydata(), other[:, 2])


def test_shape_errors_name_the_argument():
    tokens, pred, target, known = _inputs()
    with pytest.raises(ValueError, match="predicted has shape"):
        plot_vad_trajectory(tokens, pred[:4], target, known)
    with pytest.raises(ValueError, match="known has shape"):
        plot_vad_trajectory(tokens, pred, target, known[:3])
    with pytest.raises(ValueError, match="extra\\['x'\\] has shape"):
        plot_vad_trajectory(tokens, pred, target, known, extra={"x": np.zeros((5, 2))})
    with pytest.raises(ValueError, match="expected 3 axes"):
        plot_vad_trajectory(tokens, pred, target, known, axes=plt.subplots(2, 1)[1])
    with pytest.raises(ValueError, match="no tokens"):
        plot_vad_trajectory([], np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, bool))


# ---------------------------------------------------------------------------------------------------------
# implied_vad and teacher_forced_vad
# ---------------------------------------------------------------------------------------------------------


def test_implied_vad_by_hand():
    import torch

    from sevlm_lib.models.heads import implied_vad

    table = torch.tensor([[0.5, -0.5, 0.0], [-1.0, 1.0, 0.5], [0.9, 0.9, 0.9], [0.0, 0.0, 0.0]])
    known = torch.tensor([True, True, False, False])
    uniform = torch.zeros(2, 4)
    torch.testing.assert_close(implied_vad(uniform, table, known), table[:2].mean(0).expand(2, 3))
    sure = torch.tensor([[0.0, 50.0, 0.0, 0.0]])  # all mass on word 1
    torch.testing.assert_close(implied_vad(sure, table, known), table[1:2], atol=1e-6, rtol=0)
    # mass on unknown words is ignored: renormalised over the known ones
    logits = torch.tensor([[1.0, 0.0, 5.0, 5.0]])
    p = torch.tensor([1.0, 0.0]).exp() / torch.tensor([1.0, 0.0]).exp().sum()
    torch.testing.assert_close(implied_vad(logits, table, known), (p @ table[:2])[None])
    with pytest.raises(ValueError, match="do not match"):
        implied_vad(torch.zeros(1, 3), table, known)
    with pytest.raises(ValueError, match="no token has a known VAD"):
        implied_vad(uniform, table, torch.zeros(4, dtype=torch.bool))


@pytest.fixture(scope="module")
def micro():
    from tests.model_fixtures import micro_vad_head_setup

    return micro_vad_head_setup()


def test_teacher_forced_vad_matches_the_model_loss_and_targets(micro):
    import torch

    from sevlm_lib.analysis import teacher_forced_vad
    from sevlm_lib.models.heads import implied_vad

    builder, model, items, bank = micro
    tf = teacher_forced_vad(model, builder, bank, items, hidden=True)
    # one batch by hand: the same positions the loss scores
    batch = builder.collate([builder.encode(it["emotion"], it["utterance"]) for it in items])
    batch.update(bank.batch([("s", it["painting"]) for it in items]))
    batch["image_index"] = torch.arange(len(items))
    out = model.eval()(batch)
    nxt = batch["input_ids"][:, 1:]
    mask = model.token_vad_known[nxt] & batch["explanation_segment"][:, 1:]
    assert len(tf["target"]) == int(mask.sum()) > 0
    np.testing.assert_allclose(tf["target"], model.token_vad[nxt][mask].numpy())
    np.testing.assert_allclose(tf["head"], out.vad_pred[:, :-1][mask].detach().numpy(), rtol=1e-5, atol=1e-6)
    mse = ((tf["head"] - tf["target"]) ** 2).mean()
    assert mse == pytest.approx(out.losses["vad"].item(), rel=1e-5)
    lm = implied_vad(out.logits[:, :-1], model.token_vad, model.token_vad_known)[mask]
    np.testing.assert_allclose(tf["lm"], lm.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        tf["hidden"], out.hidden_states[:, :-1][mask].detach().numpy(), rtol=1e-5, atol=1e-6
    )
    rows, cols = torch.nonzero(mask, as_tuple=True)
    assert tf["item"].tolist() == rows.tolist()
    because = [builder.encode(it["emotion"], it["utterance"]).because_pos for it in items]
    assert tf["offset"].tolist() == [int(c) - because[int(r)] for r, c in zip(rows, cols, strict=True)]
    assert tf["offset"].min() >= -1  # -1: the position predicting ` because` itself (scored if known)


def test_teacher_forced_vad_is_batch_size_invariant_and_baseline_has_no_head(micro):
    from sevlm_lib.analysis import teacher_forced_vad
    from tests.model_fixtures import micro_model

    builder, model, items, bank = micro
    whole = teacher_forced_vad(model, builder, bank, items, batch_size=128)
    pieces = teacher_forced_vad(model, builder, bank, items, batch_size=2)
    assert whole.keys() == pieces.keys() == {"target", "lm", "head", "item", "offset"}
    for k in whole:
        np.testing.assert_allclose(whole[k], pieces[k], rtol=1e-5, atol=1e-6)
    base = micro_model(builder.tokenizer, seed=1)
    assert "head" not in teacher_forced_vad(base, builder, bank, items)
    with pytest.raises(ValueError, match="no items"):
        teacher_forced_vad(model, builder, bank, [])
