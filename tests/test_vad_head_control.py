"""Tests of notebook 04's positive-control helpers (``sevlm_lib.analysis.vad_head_control``)."""

from __future__ import annotations

import numpy as np
import pytest

from sevlm_lib.analysis.vad_head_control import (
    compare_values,
    error_by_next_word,
    next_token_ids,
    share_with_words,
    word_token_ids,
)
from sevlm_lib.metrics.comparison import compare_variants


@pytest.fixture(scope="module")
def micro():
    from tests.model_fixtures import micro_vad_head_setup

    return micro_vad_head_setup()


def test_word_token_ids_keeps_single_token_words_only(micro):
    builder = micro[0]
    tok = builder.tokenizer
    ids = word_token_ids(tok, ["sad", "the", "xqzvw"])
    assert ids["sad"] == tok.encode(" sad", add_special_tokens=False)[0]
    assert "the" in ids and "xqzvw" not in ids  # an unseen word splits into pieces


def test_next_token_ids_are_the_targets_of_teacher_forced_vad(micro):
    from sevlm_lib.analysis import teacher_forced_vad

    builder, model, items, bank = micro
    tf = teacher_forced_vad(model, builder, bank, items)
    nxt = next_token_ids(builder, items, tf["item"], tf["offset"])
    assert len(nxt) == len(tf["target"])
    np.testing.assert_allclose(model.token_vad[nxt].numpy(), tf["target"])
    assert bool(model.token_vad_known[nxt].all())
    with pytest.raises(ValueError, match="shape"):
        next_token_ids(builder, items, tf["item"], tf["offset"][:-1])
    with pytest.raises(ValueError, match="points past"):
        next_token_ids(builder, items, tf["item"][:1], np.array([99]))


def test_error_by_next_word_by_hand():
    target = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    tf = {"target": target, "head": np.zeros((3, 3)), "lm": np.full((3, 3), 0.5)}
    out = error_by_next_word(tf, np.array([7, 8, 8]), {"a": {7}, "b": [8], "none": {9}}, constant=[1.0, 1.0, 1.0])
    assert out["a"] == {"n": 1, "head": 0.0, "lm": 0.25, "constant": 1.0}
    assert out["b"]["n"] == 2
    assert out["b"]["head"] == pytest.approx((1.0 + 0.25) / 2)
    assert out["b"]["lm"] == pytest.approx((0.25 + 0.0) / 2)
    assert out["b"]["constant"] == pytest.approx((0.0 + 0.25) / 2)
    assert out["none"]["n"] == 0 and np.isnan(out["none"]["head"])
    assert "head" not in error_by_next_word({"target": target, "lm": target}, np.array([7, 8, 8]), {"a": {7}})["a"]
    with pytest.raises(ValueError, match="next ids"):
        error_by_next_word(tf, np.array([7]), {"a": {7}})


def test_share_with_words_counts_whole_words():
    texts = ["I feel Forlorn today", "forlornness is not a word here", None, "gleeful and bright"]
    assert share_with_words(texts, {"forlorn", "gleeful"}) == pytest.approx(0.5)
    assert np.isnan(share_with_words([], {"x"}))


def test_compare_values_is_compare_variants_on_seed_lists():
    values = {"baseline": [0.05, 0.06, 0.055], "+head": [0.04, 0.041, 0.042]}
    got = compare_values(values, "baseline", "+head", "vad_err", higher_is_better=False)
    rows = [{"variant": k, "vad_err": v} for k, vs in values.items() for v in vs]
    assert got == compare_variants(rows, "baseline", "+head", "vad_err", higher_is_better=False)
    assert got["verdict"] == "better"
    with pytest.raises(ValueError, match="need >= 2 seeds"):
        compare_values({"a": [1.0], "b": [1.0, 2.0]}, "a", "b", "m")
