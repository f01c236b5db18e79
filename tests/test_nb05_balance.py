"""Notebook 05's loss-balance survey: the losses' gradients over several batches (``gradient_survey``)."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib.analysis.gradients import gradient_survey, loss_gradients
from tests.model_fixtures import micro_model, pair_batch


def test_gradient_survey_rows_are_loss_gradients_under_seed_plus_batch(tok, builder) -> None:
    model = micro_model(tok, contrastive=True)
    model.config.contrastive_loss_weight = 0.3
    batches = [pair_batch(builder, seed=s) for s in (0, 1, 2)]
    params = (p for p in model.parameters() if p.requires_grad)  # an iterator: read once, reused per batch
    rows = gradient_survey(model, iter(batches), params, seed=5)
    assert [r["batch"] for r in rows] == [0, 1, 2]
    for b, (row, batch) in enumerate(zip(rows, batches, strict=True)):
        want = loss_gradients(model, batch, params=[p for p in model.parameters() if p.requires_grad], seed=5 + b)
        assert set(row) == {"batch", "loss_xe", "loss_contrastive", "norm_xe", "norm_contrastive", "norm_total",
                            "cos_xe_contrastive"}
        for name in ("xe", "contrastive", "total"):
            assert row[f"norm_{name}"] == pytest.approx(want["norm"][name], rel=1e-6)
        assert row["loss_contrastive"] == pytest.approx(want["losses"]["contrastive"], rel=1e-6)
        assert row["cos_xe_contrastive"] == pytest.approx(want["cosine"][("xe", "contrastive")], abs=1e-6)
    # the negative-2 derangement is drawn from the seed: a different seed can give different scores
    assert rows[0]["norm_xe"] > 0 and rows[0]["norm_contrastive"] > 0


def test_gradient_survey_default_params_are_the_decoder_and_it_leaves_the_random_state(tok, builder) -> None:
    model = micro_model(tok, contrastive=True)
    batch = pair_batch(builder)
    torch.manual_seed(11)
    before = torch.random.get_rng_state()
    (row,) = gradient_survey(model, [batch], losses=("xe",))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert row["norm_xe"] == pytest.approx(row["norm_total"]) and "cos_xe_contrastive" not in row
    assert row["norm_xe"] == pytest.approx(loss_gradients(model, batch, ("xe",))["norm"]["xe"], rel=1e-6)


def test_gradient_survey_needs_a_batch(tok) -> None:
    with pytest.raises(ValueError, match="no batches"):
        gradient_survey(micro_model(tok, contrastive=True), [])
