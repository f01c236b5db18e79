"""SEVLM's parts: shapes, switches, causality of VAD fusion, the VAD head and the contrastive head."""

from __future__ import annotations

import math

import pytest
import torch

from sevlm_lib.models.heads import contrastive_loss, derangement, masked_mean, masked_vad_mse
from sevlm_lib.models.sevlm import SEVLM
from sevlm_lib.models.vad_encoder import VADEncoder, VADEncoderConfig
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import micro_model, pair_batch, tokenizer


def test_shapes_and_cross_attention(tok, builder):
    model = micro_model(tok)
    batch = pair_batch(builder)
    memory = model.encode_images(batch)
    assert memory.shape == (3, 4, 32)  # 32 px / 16 px patches = 2x2 patches, CLS excluded
    out = model(batch)
    n, t = batch["input_ids"].shape
    assert out.logits.shape == (n, t, len(tok))
    assert out.hidden_states.shape == (n, t, 32)
    assert set(out.losses) == {"xe"}
    assert torch.isfinite(out.loss)


def test_xe_matches_hand_computation(tok, builder):
    model = micro_model(tok).eval()
    batch = pair_batch(builder)
    out = model(batch)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    keep = labels != -100
    logp = logits.log_softmax(-1).gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1)
    assert out.losses["xe"].item() == pytest.approx(-(logp[keep]).mean().item(), rel=1e-5)


def test_all_switches_off_is_the_baseline(tok, builder):
    base = micro_model(tok, seed=3)
    off = micro_model(tok, seed=3, vad_fusion=False, vad_head=False, contrastive=False)
    assert [n for n, _ in base.named_parameters()] == [n for n, _ in off.named_parameters()]
    for (_, a), (_, b) in zip(base.named_parameters(), off.named_parameters(), strict=True):
        assert torch.equal(a, b)
    batch = pair_batch(builder)
    assert torch.equal(base.eval()(batch).loss, off.eval()(batch).loss)
    # switching additions on only adds parameters; the shared ones start identical
    full = micro_model(tok, seed=3, vad_fusion=True, vad_head=True, contrastive=True)
    shared = dict(full.named_parameters())
    for name, p in base.named_parameters():
        assert torch.equal(shared[name], p), name
    assert set(full(batch).losses) == {"xe", "vad", "contrastive"}
    assert full.config.variant == "full" and base.config.variant == "baseline"


def test_frozen_vision_gets_no_gradient(tok, builder):
    model = micro_model(tok, vad_fusion=True).train()
    assert not model.vision.tower.training
    model(pair_batch(builder)).loss.backward()
    assert all(p.grad is None for p in model.vision.parameters())
    assert model.fusion.weight.grad is not None


def _fused_embeddings(model, batch):
    return model.embed(batch["input_ids"], batch["segment_ids"], batch["explanation_segment"], batch["attention_mask"])


@pytest.mark.parametrize("causal", [True, False])
def test_vad_fusion_causality(tok, builder, causal):
    model = micro_model(tok, vad_fusion=True, vad_causal=causal).eval()
    batch = pair_batch(builder)
    before = _fused_embeddings(model, batch)
    row, t = 0, int(batch["attention_mask"][0].sum()) - 2  # a late explanation token of row 0
    tok_id = batch["input_ids"][row, t]
    model.token_vad[tok_id] = torch.tensor([0.9, -0.9, 0.9])
    model.token_vad_known[tok_id] = True
    after = _fused_embeddings(model, batch)
    # positions before the first occurrence of that token in row 0
    first = int((batch["input_ids"][row] == tok_id).nonzero()[0])
    earlier_expl = batch["explanation_segment"][row, :first]
    if causal:
        assert torch.allclose(before[row, :first], after[row, :first])
    else:
        assert earlier_expl.any()
        assert not torch.allclose(before[row, :first][earlier_expl], after[row, :first][earlier_expl])
    # emotion positions pass unchanged either way
    emo = ~batch["explanation_segment"][row]
    assert torch.allclose(before[row][emo], after[row][emo])


def test_vad_encoder_incremental_equals_full():
    torch.manual_seed(0)
    enc = VADEncoder(VADEncoderConfig(max_len=16, dropout=0.0)).eval()
    vad = torch.randn(2, 10, 3)
    full, _ = enc(vad)
    out, cache = enc(vad[:, :4], cache=None, past_len=0)
    steps = [out]
    for t in range(4, 10):
        o, cache = enc(vad[:, t : t + 1], cache=cache, past_len=t)
        steps.append(o)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.randn(1, 17, 3))


def test_masked_vad_mse_by_hand():
    pred = torch.tensor([[[0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [0.0, 0.5, -0.5]]])
    target = torch.tensor([[[0.0, 0.0, 0.0], [9.0, 9.0, 9.0], [0.5, 0.5, 0.5]]])
    mask = torch.tensor([[True, False, True]])
    hand = ((0.1**2 + 0.2**2 + 0.3**2) + (0.5**2 + 0.0 + 1.0**2)) / 6
    assert masked_vad_mse(pred, target, mask).item() == pytest.approx(hand)
    assert masked_vad_mse(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_vad_head_targets_next_known_explanation_token(tok, builder):
    model = micro_model(tok, vad_head=True).eval()
    batch = pair_batch(builder)
    out = model(batch)
    ids = batch["input_ids"]
    mask = model.token_vad_known[ids[:, 1:]] & batch["explanation_segment"][:, 1:]
    pred = out.vad_pred[:, :-1]
    hand = ((pred - model.token_vad[ids[:, 1:]]) ** 2)[mask].mean()
    assert out.losses["vad"].item() == pytest.approx(hand.item(), rel=1e-5)


@pytest.mark.parametrize("n", range(2, 65))
def test_derangement_has_no_fixed_point(n):
    g = torch.Generator().manual_seed(n)
    for _ in range(5):
        p = derangement(n, g)
        assert sorted(p.tolist()) == list(range(n))
        assert (p != torch.arange(n)).all()


def test_derangement_needs_two():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def test_contrastive_loss_by_hand():
    pos, n1, n2 = torch.tensor([2.0, 0.5]), torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.5])
    hand = [-math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1)),
            -math.log(math.exp(0.5) / (math.exp(0.5) * 2 + math.exp(1.5)))]
    assert contrastive_loss(pos, n1, n2).item() == pytest.approx(sum(hand) / 2)


def test_contrastive_negatives_differ_from_positive(tok, builder):
    model = micro_model(tok, contrastive=True).eval()
    batch = pair_batch(builder)
    torch.manual_seed(0)
    out = model(batch)
    s = out.scores
    assert not torch.allclose(s["pos"], s["neg_emotion"])
    assert not torch.allclose(s["pos"], s["neg_visual"])
    # the loss is the hand InfoNCE of the returned scores
    assert out.losses["contrastive"].item() == pytest.approx(
        contrastive_loss(s["pos"], s["neg_emotion"], s["neg_visual"]).item())


def test_explanation_mean_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == 2.0


def test_contrastive_needs_pair_batches(tok, builder):
    model = micro_model(tok, contrastive=True)
    batch = pair_batch(builder)
    del batch["pair_index"]
    with pytest.raises(ValueError, match="pair batches"):
        model(batch)


def test_config_roundtrip(tok):
    model = micro_model(tok, vad_fusion=True, vad_causal=False)
    cfg = type(model.config).from_dict(model.config.to_dict())
    assert cfg == model.config and not cfg.vad_encoder.causal
    with pytest.raises(ValueError, match="unknown switch"):
        cfg.with_switches(vad_fuson=True)
    with pytest.raises(ValueError, match="no vocabulary"):
        SEVLM(type(cfg)())


def test_a_subclass_may_override_embed_with_the_original_signature() -> None:
    """Notebook 03 subclasses SEVLM and overrides ``embed(input_ids, segment_ids, explanation_segment,
    attention_mask=None, state=None)``; the forward pass must still call it (``vad`` only when given)."""
    from sevlm_lib.models.sevlm import SEVLM
    from tests.model_fixtures import micro_config, pair_batch

    calls = []

    class Overriding(SEVLM):
        def embed(self, input_ids, segment_ids, explanation_segment, attention_mask=None, state=None):
            calls.append(tuple(input_ids.shape))
            return super().embed(input_ids, segment_ids, explanation_segment, attention_mask, state)

    tok = tokenizer()
    model = Overriding(micro_config(tok, vad_fusion=True)).eval()
    batch = pair_batch(SequenceBuilder(tok))
    out = model(batch)
    assert calls == [tuple(batch["input_ids"].shape)] and torch.isfinite(out.loss)
