"""Helpers added for notebook 03: seed comparisons, and generation for a split with a non-causal VAD encoder."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from sevlm_lib.data.datasets import TensorBank
from sevlm_lib.generation import generate
from sevlm_lib.metrics import compare_variants, describe_comparison
from sevlm_lib.pipeline import generate_for_split
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import micro_model, tokenizer


def _rows(base: list[float], other: list[float], metric: str = "bleu4") -> list[dict]:
    rows = [{"variant": "baseline", "seed": i, metric: v} for i, v in enumerate(base)]
    return rows + [{"variant": "+fusion", "seed": i, metric: v} for i, v in enumerate(other)]


def test_compare_variants_matches_hand_computation():
    base, other = [0.40, 0.42, 0.44], [0.50, 0.51, 0.55]
    c = compare_variants(_rows(base, other), "baseline", "+fusion", "bleu4")
    var_a = sum((v - 0.42) ** 2 for v in base) / 2
    mean_b = sum(other) / 3
    var_b = sum((v - mean_b) ** 2 for v in other) / 2
    assert c["diff"] == pytest.approx(mean_b - 0.42)
    assert c["se"] == pytest.approx(math.sqrt(var_a / 3 + var_b / 3))
    assert (c["n_a"], c["n_b"]) == (3, 3)
    assert c["verdict"] == "better"


def test_compare_variants_direction_and_noise():
    rows = _rows([0.30, 0.31, 0.32], [0.20, 0.21, 0.22], metric="vad_err")
    assert (
        compare_variants(rows, "baseline", "+fusion", "vad_err", higher_is_better=False)["verdict"]
        == "better"
    )
    assert (
        compare_variants(rows, "baseline", "+fusion", "vad_err", higher_is_better=True)["verdict"] == "worse"
    )
    noisy = _rows([0.3, 0.5, 0.4], [0.35, 0.55, 0.42])
    assert compare_variants(noisy, "baseline", "+fusion", "bleu4")["verdict"] == "no clear difference"


def test_compare_variants_needs_two_seeds_per_side():
    with pytest.raises(ValueError, match="'\\+fusion'.*need >= 2 seeds"):
        compare_variants(_rows([0.1, 0.2], [0.3]), "baseline", "+fusion", "bleu4")


def test_describe_comparison_names_both_variants_and_verdict():
    c = compare_variants(_rows([0.40, 0.42, 0.44], [0.50, 0.51, 0.55]), "baseline", "+fusion", "bleu4")
    line = describe_comparison(c)
    assert "+fusion - baseline" in line and "clearly better" in line and f"{c['diff']:+.3f}" in line


@dataclass
class _Data:
    """The parts of CourseData that generate_for_split reads."""

    builder: SequenceBuilder
    images: TensorBank
    settings: Any = None
    image_style: str = "clip"

    def artwork_keys(self, split: str) -> list[tuple[str, str]]:
        return list(self.images.keys)


@pytest.fixture(scope="module")
def tok():
    return tokenizer()


def _data(tok) -> _Data:
    keys = [("style", f"painting-{i}") for i in range(5)]
    pixels = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return _Data(SequenceBuilder(tok, max_len=30), TensorBank(keys, pixels, "pixel_values"))


def _push_eos_down(model, builder):
    with torch.no_grad():
        model.decoder.transformer.wte.weight[builder.eos_id] -= 3.0


def test_generate_for_split_recomputes_for_a_noncausal_vad_encoder(tok):
    data = _data(tok)
    model = micro_model(tok, seed=4, vad_fusion=True, vad_causal=False).eval()
    _push_eos_down(model, data.builder)
    batch = data.images.batch(data.images.keys)
    with pytest.raises(ValueError, match="cannot decode incrementally"):
        generate(model, data.builder, batch, max_new_tokens=6, use_cache=True)
    auto = generate_for_split(model, data, "test", max_new_tokens=8, use_features=False)
    explicit = generate_for_split(model, data, "test", max_new_tokens=8, use_features=False, use_cache=False)
    assert list(auto["text"]) == list(explicit["text"])
    full = generate(model, data.builder, batch, max_new_tokens=8, use_cache=False)
    assert list(auto["text"]) == full.texts
    assert max(map(len, full.token_ids)) >= 5  # several steps, where a stale cache would have failed


def test_generate_for_split_keeps_the_cache_for_a_causal_encoder(tok):
    data = _data(tok)
    model = micro_model(tok, seed=5, vad_fusion=True).eval()
    _push_eos_down(model, data.builder)
    auto = generate_for_split(model, data, "test", max_new_tokens=8, use_features=False)
    cached = generate_for_split(model, data, "test", max_new_tokens=8, use_features=False, use_cache=True)
    assert list(auto["text"]) == list(cached["text"])
    batch = data.images.batch(data.images.keys)
    assert max(map(len, generate(model, data.builder, batch, max_new_tokens=8).token_ids)) >= 5
