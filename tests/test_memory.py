"""The memory estimator: monotone, the full default fits an 11 GB card, and its activation count matches what
autograd really saves (measured on CPU with saved-tensor hooks)."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib.memory import estimate_memory, parameter_counts
from sevlm_lib.models.decoder import DecoderConfig
from sevlm_lib.models.sevlm import SEVLM, SEVLMConfig, full_config
from sevlm_lib.models.vision import VisionConfig

CARD_BYTES = 11 * 1024**3  # an RTX 2080 Ti: 11 GiB (11,264 MiB)


def small_config(**switches: bool) -> SEVLMConfig:
    v = 3000
    cfg = SEVLMConfig(
        vision=VisionConfig(
            image_size=112, patch_size=16, hidden_size=128, num_layers=1, num_heads=4, intermediate_size=512
        ),
        decoder=DecoderConfig(n_embd=128, n_layer=2, n_head=4, n_positions=64),
        vocab_size=v,
        pad_id=v - 3,
        emotion_segment_id=v - 2,
        explanation_segment_id=v - 1,
    )
    return cfg.with_switches(**switches) if switches else cfg


@pytest.fixture(scope="module")
def full() -> SEVLMConfig:
    return full_config(vad_fusion=True, vad_head=True, contrastive=True)


def test_monotone_in_batch_size_and_sequence_length(full: SEVLMConfig) -> None:
    counts = parameter_counts(full)
    by_batch = [estimate_memory(full, batch_sequences=n, counts=counts) for n in (2, 8, 16, 33, 64, 128)]
    by_len = [estimate_memory(full, seq_len=t, counts=counts) for t in (8, 12, 20, 30, 31, 64)]
    for series in (by_batch, by_len):
        totals = [e.total_bytes for e in series]
        acts = [e.activations for e in series]
        assert all(a < b for a, b in zip(totals, totals[1:], strict=False)), totals
        assert all(a < b for a, b in zip(acts, acts[1:], strict=False)), acts
    # the parameters do not depend on the batch
    assert len({e.parameters for e in by_batch}) == 1


def test_full_default_fits_an_11gb_card_with_headroom(full: SEVLMConfig) -> None:
    est = estimate_memory(full)  # batch 32 artworks = 64 sequences of 30 tokens, fp16, all heads on
    assert est.assumptions["batch_sequences"] == 64 and est.assumptions["trainable_parameters"] > 90e6
    assert est.total_bytes < 0.7 * CARD_BYTES
    assert est.device_bytes < 0.8 * CARD_BYTES  # slack and the CUDA context included
    # every part is counted, and the parts add up to a peak no smaller than the static memory
    assert est.total_bytes >= est.parameters + est.gradients + est.optimizer_state
    assert est.breakdown["lm head + loss (logits, log-softmax)"] > 0
    assert "GiB" in est.table()


def test_options_move_the_estimate_the_expected_way(full: SEVLMConfig) -> None:
    counts = parameter_counts(full)
    base = estimate_memory(full, counts=counts)
    assert estimate_memory(full, grad_checkpointing=True, counts=counts).activations < base.activations
    assert estimate_memory(full, use_feature_cache=False, counts=counts).total_bytes > base.total_bytes
    assert estimate_memory(full, n_patches=49, counts=counts).total_bytes < base.total_bytes
    assert estimate_memory(full, optimizer="sgd", counts=counts).optimizer_state == 0 < base.optimizer_state
    off = estimate_memory(full_config())
    assert off.total_bytes < base.total_bytes  # the additions cost something


def test_parameter_counts_on_meta_match_a_real_model() -> None:
    cfg = small_config(vad_fusion=True, vad_head=True, contrastive=True)
    counts = parameter_counts(cfg)
    real = SEVLM(cfg).count_parameters()
    assert counts["trainable"] == real["trainable"] and counts["frozen"] == real["frozen"]


def test_bad_arguments_are_clear_errors(full: SEVLMConfig) -> None:
    with pytest.raises(ValueError, match="precision"):
        estimate_memory(full, precision="fp8")
    with pytest.raises(ValueError, match="batch_sequences"):
        estimate_memory(full, batch_sequences=0)
    with pytest.raises(ValueError, match="optimizer"):
        estimate_memory(full, optimizer="lion")


def _measured_activation_bytes(cfg: SEVLMConfig, n: int, t: int, p: int) -> int:
    """Bytes of the distinct storages autograd saves in one forward (parameters excluded) + the logits."""
    torch.manual_seed(0)
    model = SEVLM(cfg).train()
    v, b = cfg.vocab_size, n // 2
    ids = torch.randint(0, v - 3, (n, t))
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones(n, t, dtype=torch.long),
        "segment_ids": torch.full((n, t), v - 1),
        "labels": ids.clone(),
        "emotion_mask": torch.zeros(n, t, dtype=torch.bool),
        "explanation_mask": torch.ones(n, t, dtype=torch.bool),
        "explanation_segment": torch.ones(n, t, dtype=torch.bool),
        "image_features": torch.randn(b, p, cfg.vision.hidden_size),
        "image_index": torch.arange(b).repeat_interleave(2),
        "pair_index": torch.arange(n) ^ 1,
    }
    batch["emotion_mask"][:, 2:4] = True
    own = {x.untyped_storage().data_ptr() for x in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        ptr = x.untyped_storage().data_ptr()
        if ptr not in own:
            saved[ptr] = x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = model(batch)
    logits = out.logits.untyped_storage()
    return sum(saved.values()) + (0 if logits.data_ptr() in saved else logits.nbytes())


@pytest.mark.parametrize(
    ("n", "t", "switches"),
    [(8, 30, {}), (16, 20, {"vad_fusion": True, "vad_head": True, "contrastive": True})],
)
def test_activations_match_what_autograd_saves(n: int, t: int, switches: dict[str, bool]) -> None:
    """fp32 on CPU (the math attention path, float dropout masks): the estimator's activation model, term by
    term the same as the fp16/GPU one with other byte sizes, must be within 10% of the measurement."""
    torch.set_num_threads(1)
    cfg = small_config(**switches)
    measured = _measured_activation_bytes(cfg, n, t, 49)
    est = estimate_memory(
        cfg,
        batch_sequences=n,
        seq_len=t,
        n_patches=49,
        precision="fp32",
        attention="math",
        dropout_mask_bytes=4,
    )
    assert 0.9 < est.activations / measured < 1.1, (est.activations, measured)
