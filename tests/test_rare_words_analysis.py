"""sevlm_lib.analysis.rare_words: listed words in texts, teacher-forced losses by where a token stands to them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sevlm_lib.analysis.rare_words import (
    explanation_token_losses,
    losses_around_words,
    texts_with_words,
    word_contexts,
    word_token_ids,
)
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import micro_items_and_bank, micro_model, tokenizer


@pytest.fixture(scope="module")
def micro():
    tok = tokenizer()
    items, bank = micro_items_and_bank()
    return tok, SequenceBuilder(tok, max_len=24), items, bank


def test_texts_with_words_counts_whole_words_only():
    texts = ["The sky feels Gloomy and grim", "a gloomyish sky", None, "grim, grim, grim"]
    out = texts_with_words(texts, ["gloomy", "grim"])
    assert (out["n_texts"], out["with_word"], out["word_tokens"]) == (4, 2, 5)
    assert out["share"] == pytest.approx(0.5)
    assert out["per_word"] == {"gloomy": 1, "grim": 4}
    assert np.isnan(texts_with_words([], ["grim"])["share"])
    with pytest.raises(TypeError, match="string"):
        texts_with_words(texts, "grim")
    with pytest.raises(TypeError, match="one string"):
        texts_with_words("grim sky", ["grim"])
    with pytest.raises(ValueError, match="non-empty"):
        texts_with_words(texts, [])


def test_word_token_ids_keeps_whole_words(micro):
    tok = micro[0]
    ids = word_token_ids(tok, ["calm", "sea", "zzqxv"])  # the last one is split into pieces
    assert set(ids.values()) == {"calm", "sea"}
    for i, w in ids.items():
        assert tok.encode(" " + w, add_special_tokens=False) == [i]


def test_explanation_token_losses_match_the_model_loss(micro):
    tok, builder, items, bank = micro
    model = micro_model(tok, seed=1, vad_fusion=True)
    got = explanation_token_losses(model, builder, bank, items)
    batch = builder.collate([builder.encode(it["emotion"], it["utterance"]) for it in items])
    batch.update(bank.batch([("s", it["painting"]) for it in items]))
    batch["image_index"] = torch.arange(len(items))
    with torch.no_grad():
        logits = model.eval()(batch).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    # by hand: one item at a time, the tokens after ` because`, <eos> included
    ce, tgt, item, offset = [], [], [], []
    for i, it in enumerate(items):
        enc = builder.encode(it["emotion"], it["utterance"])
        for t in range(enc.because_pos, len(enc.input_ids) - 1):
            ce.append(float(F.cross_entropy(logits[i, t][None], targets[i, t][None])))
            tgt.append(enc.input_ids[t + 1])
            item.append(i)
            offset.append(t - enc.because_pos)
    np.testing.assert_allclose(got["ce"], ce, rtol=1e-5, atol=1e-6)
    assert got["target"].tolist() == tgt and got["item"].tolist() == item and got["offset"].tolist() == offset
    assert builder.eos_id in got["target"]
    pieces = explanation_token_losses(model, builder, bank, items, batch_size=2)
    for k in got:
        np.testing.assert_allclose(got[k], pieces[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no items"):
        explanation_token_losses(model, builder, bank, [])


def test_word_contexts_by_hand():
    # two explanations: [5, 9, 7, 9, 3] and [9, 4]; listed token 9
    losses = {
        "target": np.array([5, 9, 7, 9, 3, 9, 4]),
        "item": np.array([0, 0, 0, 0, 0, 1, 1]),
        "offset": np.array([0, 1, 2, 3, 4, 0, 1]),
        "ce": np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
    }
    m = word_contexts(losses, [9])
    assert m["word"].tolist() == [0, 1, 0, 1, 0, 1, 0]
    assert m["next"].tolist() == [0, 0, 1, 0, 1, 0, 1]
    assert m["after"].tolist() == [0, 0, 1, 0, 1, 0, 1]
    assert m["none"].tolist() == [1, 0, 0, 0, 0, 0, 0]
    # a listed token does not carry over to the next explanation
    m2 = word_contexts({**losses, "target": np.array([5, 3, 7, 1, 9, 2, 4])}, [9])
    assert not m2["after"].any() and not m2["next"].any()
    assert m2["none"].tolist() == [1, 1, 1, 1, 0, 1, 1]
    out = losses_around_words(losses, [9])
    assert out["word"] == {"xe": pytest.approx(4.0), "n": 3}
    assert out["after"] == {"xe": pytest.approx(5.0), "n": 3}
    assert out["none"] == {"xe": pytest.approx(1.0), "n": 1}
    assert out["all"]["n"] == 7
    assert np.isnan(losses_around_words(losses, [])["word"]["xe"])
    with pytest.raises(ValueError, match="order"):
        word_contexts({**losses, "offset": losses["offset"][::-1].copy()}, [9])
