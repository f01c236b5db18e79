"""The Show-Attend-Tell speaker: targets from course batches, shapes, attention, training and greedy decoding."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.models.sat import SATConfig, SATSpeaker, explanation_targets
from sevlm_lib.models.sevlm import SEVLM, tiny_config
from sevlm_lib.settings import seed_everything
from sevlm_lib.text import SequenceBuilder, train_tiny_tokenizer

ITEMS = [
    ("contentment", "the calm blue water makes me feel at peace"),
    ("something else", "it reminds me of the garden of my grandmother"),
    ("fear", "the dark figure in the corner looks threatening"),
    ("awe", "the huge mountain rises above the tiny houses"),
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def builder() -> SequenceBuilder:
    texts = [u for _, u in ITEMS] * 5
    return SequenceBuilder(train_tiny_tokenizer(texts, vocab_size=400), max_len=30)


def _config(builder: SequenceBuilder, **kw) -> SATConfig:
    kw.setdefault("emotion_token_ids", [list(builder.emotion_ids[e]) for e in EMOTIONS])
    return SATConfig(
        vocab_size=len(builder.tokenizer),
        pad_id=builder.pad_id,
        bos_id=builder.bos_id,
        eos_id=builder.eos_id,
        **kw,
    )


def _batch(builder: SequenceBuilder, items=ITEMS, seed: int = 0) -> dict[str, torch.Tensor]:
    batch = builder.collate([builder.encode(e, u) for e, u in items])
    gen = torch.Generator().manual_seed(seed)
    batch["image_features"] = torch.randn(len(items), 16, 64, generator=gen)
    batch["image_index"] = torch.arange(len(items))
    return batch


def test_explanation_targets_match_the_sequence_builder(builder):
    batch = _batch(builder)
    tokens, emotion = explanation_targets(
        batch["input_ids"],
        batch["emotion_mask"],
        batch["explanation_mask"],
        [builder.emotion_ids[e] for e in EMOTIONS],
        bos_id=builder.bos_id,
        eos_id=builder.eos_id,
        pad_id=builder.pad_id,
    )
    assert emotion.tolist() == [EMOTIONS.index(e) for e, _ in ITEMS]  # "something else" is two tokens
    for row, (e, u) in zip(tokens.tolist(), ITEMS, strict=True):
        enc = builder.encode(e, u)
        a, b = enc.explanation_span
        want = [builder.bos_id, *enc.input_ids[a:b], builder.eos_id]
        assert row[: len(want)] == want and set(row[len(want) :]) <= {builder.pad_id}
    assert builder.decode(tokens[0, 1:].tolist()) == ITEMS[0][1]
    bad = batch["emotion_mask"].clone()
    bad[2] = False
    with pytest.raises(ValueError, match="sequence 3"):
        explanation_targets(
            batch["input_ids"],
            bad,
            batch["explanation_mask"],
            [builder.emotion_ids[e] for e in EMOTIONS],
            bos_id=0,
            eos_id=0,
            pad_id=1,
        )


def test_forward_shapes_and_attention(builder):
    seed_everything(0)
    model = SATSpeaker(_config(builder))
    batch = _batch(builder)
    out = model(batch)
    tokens, _ = model.targets(batch)
    n, length = tokens.shape
    assert out.logits.shape == (n, length - 1, len(builder.tokenizer))
    assert out.alphas.shape == (n, length - 1, 16)
    torch.testing.assert_close(out.alphas.sum(-1), torch.ones(n, length - 1))
    assert set(out.losses) == {"xe", "attention"} and out.loss.ndim == 0
    torch.testing.assert_close(out.loss, out.losses["xe"] + out.losses["attention"])
    # the same batch read from pixels goes through the frozen tower
    pixels = dict(batch)
    pixels.pop("image_features")
    pixels["pixel_values"] = torch.randn(len(ITEMS), 3, 64, 64)
    assert model(pixels).logits.shape == out.logits.shape
    assert model.count_parameters()["frozen"] > 0
    assert all(not p.requires_grad for p in model.vision.parameters())


def test_same_seed_same_vision_tower_as_sevlm(builder):
    seed_everything(3)
    sevlm = SEVLM(tiny_config().with_tokenizer(builder.tokenizer))
    seed_everything(3)
    sat = SATSpeaker(_config(builder))
    for (name, a), (_, b) in zip(
        sevlm.vision.state_dict().items(), sat.vision.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_trains_on_a_micro_batch_and_decodes_what_it_learned(builder):
    seed_everything(0)
    model = SATSpeaker(_config(builder, dropout=0.0))
    batch = _batch(builder)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(80):
        out = model(batch)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.losses["xe"].item())
    assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])
    _, emotion = model.targets(batch)
    gen = model.generate({"image_features": batch["image_features"]}, emotion, max_new_tokens=25)
    assert [builder.decode(ids) for ids in gen.token_ids] == [u for _, u in ITEMS]
    assert all(builder.eos_id not in ids for ids in gen.token_ids)
    assert [a.shape for a in gen.alphas] == [(len(ids), 16) for ids in gen.token_ids]
    # max_new_tokens caps the length; an unknown strategy and a wrong number of emotions are errors
    short = model.generate({"image_features": batch["image_features"]}, emotion, max_new_tokens=3)
    assert all(len(ids) == 3 for ids in short.token_ids)
    with pytest.raises(ValueError, match="emotion indices"):
        model.generate({"image_features": batch["image_features"]}, emotion[:2])
    with pytest.raises(ValueError, match="strategy"):
        model.generate({"image_features": batch["image_features"]}, emotion, strategy="beam")
    sampled = model.generate(
        {"image_features": batch["image_features"]},
        emotion,
        strategy="sample",
        generator=torch.Generator().manual_seed(0),
    )
    assert len(sampled.token_ids) == len(ITEMS)


def test_config_round_trip_and_errors(builder):
    cfg = _config(builder)
    assert SATConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown SATConfig"):
        SATConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="no vocabulary"):
        SATSpeaker(SATConfig(emotion_token_ids=cfg.emotion_token_ids))
    with pytest.raises(ValueError, match="emotion_token_ids"):
        SATSpeaker(_config(builder, emotion_token_ids=[]))
