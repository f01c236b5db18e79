"""Decoding: the KV cache changes nothing, sampling is seeded, emotion distributions are distributions."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib.generation import emotion_distribution, generate
from tests.model_fixtures import micro_model


def _images(n=6, seed=0):
    return {"pixel_values": torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))}


def _no_early_eos(model, builder):
    # a random model may stop at once; push <eos> down so that decoding runs many steps
    with torch.no_grad():
        model.decoder.transformer.wte.weight[builder.eos_id] -= 3.0


@pytest.mark.parametrize("switches", [{}, {"vad_fusion": True}, {"vad_fusion": True, "vad_head": True}])
def test_cached_equals_uncached(tok, builder, switches):
    model = micro_model(tok, seed=1, **switches)
    _no_early_eos(model, builder)
    a = generate(model, builder, _images(), use_cache=True)
    b = generate(model, builder, _images(), use_cache=False)
    assert a.token_ids == b.token_ids
    assert max(map(len, a.token_ids)) >= 10


def test_sampling_is_seeded(tok, builder):
    model = micro_model(tok, seed=2)
    _no_early_eos(model, builder)
    kw = dict(strategy="sample", top_p=0.9, top_k=50, temperature=1.2)
    a = generate(model, builder, _images(), generator=torch.Generator().manual_seed(5), **kw)
    b = generate(model, builder, _images(), generator=torch.Generator().manual_seed(5), **kw)
    c = generate(model, builder, _images(), generator=torch.Generator().manual_seed(6), **kw)
    assert a.token_ids == b.token_ids and a.token_ids != c.token_ids


def test_max_new_tokens_and_parse(tok, builder):
    model = micro_model(tok, seed=3)
    _no_early_eos(model, builder)
    g = generate(model, builder, _images(3), max_new_tokens=4)
    assert all(len(t) <= 4 for t in g.token_ids)
    assert len(g.parsed) == 3 and all(p.emotion is None or isinstance(p.emotion, str) for p in g.parsed)


def test_emotion_distribution(tok, builder):
    model = micro_model(tok, seed=4, vad_fusion=True)
    p = emotion_distribution(model, builder, _images(4))
    assert p.shape == (4, 9)
    assert torch.allclose(p.sum(-1), torch.ones(4), atol=1e-5)
    assert (p > 0).all()


def test_empty_batch(tok, builder):
    model = micro_model(tok)
    with pytest.raises(ValueError, match="empty batch"):
        generate(model, builder, {"pixel_values": torch.zeros(0, 3, 32, 32)})


def test_non_causal_fusion_decodes_without_cache(tok, builder):
    model = micro_model(tok, seed=5, vad_fusion=True, vad_causal=False)
    _no_early_eos(model, builder)
    auto = generate(model, builder, _images(3))
    full = generate(model, builder, _images(3), use_cache=False)
    assert auto.token_ids == full.token_ids
    with pytest.raises(ValueError, match="non-causal"):
        generate(model, builder, _images(3), use_cache=True)
