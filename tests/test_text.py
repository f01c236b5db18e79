"""The sequence builder: format, segments, labels, spans, truncation and parsing."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.text import SequenceBuilder, parse_generation
from tests.model_fixtures import tokenizer


@pytest.fixture(scope="module")
def builder() -> SequenceBuilder:
    return SequenceBuilder(tokenizer(), max_len=30)


def test_format_roundtrip(builder):
    s = builder.encode("awe", "the dark cliffs tower over a tiny figure")
    text = builder.tokenizer.decode(s.input_ids[1:-1])
    assert text.strip() == "the emotion is awe because the dark cliffs tower over a tiny figure"
    assert s.input_ids[0] == builder.bos_id and s.input_ids[-1] == builder.eos_id
    # no lone-space tokens from the byte-level gotcha
    assert "Ġ" not in builder.tokenizer.convert_ids_to_tokens(list(s.input_ids))


def test_segments_labels_and_multi_token_emotion(builder):
    s = builder.encode("something else", "a calm blue sea")
    n_emo = len(builder.emotion_ids["something else"])
    assert n_emo >= 2, "the test needs a multi-token emotion"
    e0, e1 = s.emotion_span
    assert e1 - e0 == n_emo
    assert builder.tokenizer.decode(s.input_ids[e0:e1]).strip() == "something else"
    assert s.because_pos == e1
    assert all(x == builder.emotion_segment_id for x in s.segment_ids[: s.because_pos])
    assert all(x == builder.explanation_segment_id for x in s.segment_ids[s.because_pos :])
    x0, x1 = s.explanation_span
    assert builder.tokenizer.decode(s.input_ids[x0:x1]).strip() == "a calm blue sea"
    assert s.labels[0] == -100 and list(s.labels[1:]) == list(s.input_ids[1:])


def test_loss_on_prompt_off(builder):
    b2 = SequenceBuilder(builder.tokenizer, loss_on_prompt=False)
    s = b2.encode("fear", "the dark cliffs")
    k = len(b2.prompt_ids)
    assert all(x == -100 for x in s.labels[:k]) and list(s.labels[k:]) == list(s.input_ids[k:])


def test_truncation_keeps_eos(builder):
    long = " ".join(["the dark cliffs tower over a tiny figure"] * 10)
    s = builder.encode("something else", long)
    assert len(s) == 30 and s.truncated
    assert s.input_ids[-1] == builder.eos_id
    assert s.explanation_span[1] == 29


def test_collate_masks(builder):
    a = builder.encode("something else", "a calm blue sea")
    b = builder.encode("awe", " ".join(["bright yellow flowers"] * 12))
    batch = builder.collate([a, b])
    t = batch["input_ids"].shape[1]
    assert t == max(len(a), len(b))
    assert batch["attention_mask"][0].sum() == len(a)
    assert (batch["labels"][0, len(a):] == -100).all()
    assert (batch["input_ids"][0, len(a):] == builder.pad_id).all()
    assert batch["emotion_mask"][0].sum() == len(builder.emotion_ids["something else"])
    assert batch["explanation_mask"][0].sum() == a.explanation_span[1] - a.explanation_span[0]
    assert not batch["explanation_mask"][0, a.because_pos]  # "because" is not part of the explanation
    assert batch["explanation_segment"][0].sum() == len(a) - a.because_pos  # because ... eos, no padding
    assert not (batch["explanation_mask"] & ~batch["attention_mask"].bool()).any()


def test_bad_input(builder):
    with pytest.raises(ValueError, match="unknown emotion"):
        builder.encode("joy", "nice")
    with pytest.raises(ValueError, match="empty explanation"):
        builder.encode("awe", "   ")
    with pytest.raises(ValueError, match="empty batch"):
        builder.collate([])


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_parse_every_emotion(emotion):
    p = parse_generation(f"{emotion} because the sky is wide")
    assert p.emotion == emotion and p.explanation == "the sky is wide" and p.has_because


def test_parse_robust():
    p = parse_generation("joyfulness because bright")
    assert p.emotion is None and p.emotion_text == "joyfulness" and p.explanation == "bright"
    p = parse_generation("awe the sky")
    assert p.emotion is None and not p.has_because and p.explanation == ""
    p = parse_generation("")
    assert p.emotion is None


def test_prompt_batch(builder):
    pb = builder.prompt_batch(3)
    assert pb["input_ids"].shape == (3, len(builder.prompt_ids))
    assert torch.equal(pb["input_ids"][1], torch.tensor(builder.prompt_ids))
