"""How far a contrastive head could get on words-swapped negatives: the words-only reader and the probe."""

from __future__ import annotations

import pytest
import torch

from sevlm_lib import analysis, pipeline, recipes
from sevlm_lib.analysis import head_ceiling as hc
from sevlm_lib.emotions import EMOTIONS
from tests.model_fixtures import small_course_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return small_course_data(tmp_path_factory.mktemp("ceiling"))


def test_words_of_lowercases_and_drops_punctuation() -> None:
    assert hc.words_of("The sky, so BLUE; it's calm.") == ["the", "sky", "so", "blue", "it's", "calm"]


def test_words_classifier_is_chosen_on_validation_and_reads_words(small_data) -> None:
    clf = hc.fit_words_classifier(small_data, l2_grid=(1e-3, 1e-1))
    assert clf.l2 in (1e-3, 1e-1)
    val = small_data.split("val")
    y = torch.tensor([EMOTIONS.index(e) for e in val["emotion"]])
    lp = clf.log_probs(list(val["utterance"]))
    assert lp.shape == (len(val), len(EMOTIONS))
    torch.testing.assert_close(lp.exp().sum(1), torch.ones(len(val)))
    assert clf.val_accuracy == pytest.approx(float((lp.argmax(1) == y).float().mean()))
    counts = small_data.split("train")["utterance"].map(hc.words_of).explode().value_counts()
    assert set(clf.vocabulary) == set(counts[counts >= 2].index)
    assert not clf.features(["zzz qqq"]).any()  # words it never saw are ignored
    majority = float(y.eq(torch.bincount(y).argmax()).float().mean())
    assert clf.val_accuracy > majority  # the words carry the emotion


def test_words_only_rejection_scores_the_control_pairs(small_data) -> None:
    clf = hc.fit_words_classifier(small_data, l2_grid=(1e-2,))
    pairs = hc.pair_draws(small_data, "train", seed=4)
    # the same two annotations that the head's control negatives use
    model = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=0)
    table = analysis.pair_embeddings(model, small_data, "train", seed=4).table
    assert list(table["utterance"]) == [u for pair in pairs for _, u in pair]
    hits = []
    for pair in pairs:
        for k in (0, 1):
            (e, own), (_, other) = pair[k], pair[1 - k]
            lp = clf.log_probs([own, other])[:, EMOTIONS.index(e)]
            hits.append(float(lp[0] > lp[1]))
    got = hc.words_only_rejection(clf, small_data, "train", seed=4)
    assert got == pytest.approx(sum(hits) / len(hits))
    assert got > 0.5  # the training words separate the two emotions of an artwork
    blind = hc.WordsClassifier(clf.vocabulary, torch.zeros_like(clf.weight), clf.bias, 0.0, 0.0)
    assert hc.words_only_rejection(blind, small_data, "train", seed=4) == 0.0  # ties fail


def test_words_swapped_embeddings_are_the_partners_words_after_the_own_prompt(small_data) -> None:
    model = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=1)
    images = pipeline.image_source_for(model, small_data)
    emb = hc.words_swapped_embeddings(model, small_data, "train", images=images, batch_size=6)
    pe = analysis.pair_embeddings(model, small_data, "train", images=images, batch_size=6)
    n = len(pe.table)
    assert all(v.shape == (n, model.d_model) for v in emb.values())
    torch.testing.assert_close(emb["explanation"], pe.explanation, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(emb["emotion"], pe.emotion, rtol=1e-4, atol=1e-5)
    t = pe.table
    rows = [(t.emotion[i], t.utterance[i ^ 1], (t.art_style[i], t.painting[i])) for i in range(n)]
    swapped = analysis.sequence_embeddings(model, small_data, rows, images=images)["explanation"]
    # a splice is never truncated; the builder cuts a sequence longer than max_len (a long prompt, long words)
    whole = torch.tensor([not small_data.builder.encode(e, u).truncated for e, u, _ in rows])
    assert whole.float().mean() > 0.9
    torch.testing.assert_close(emb["swapped"][whole], swapped[whole], rtol=1e-4, atol=1e-5)


def _embeddings(n: int, d: int, seed: int, separable: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    emotion = torch.randn(n, d, generator=g)
    explanation = emotion + 0.1 * torch.randn(n, d, generator=g)  # fits its emotion
    swapped = torch.randn(n, d, generator=g) if separable else explanation.clone()
    return {
        "image": torch.randn(n, d, generator=g),
        "emotion": emotion,
        "explanation": explanation,
        "swapped": swapped,
    }


def test_train_probe_learns_a_learnable_task_and_cannot_split_ties() -> None:
    train, val = _embeddings(512, 8, 0, True), _embeddings(256, 8, 1, True)
    scorer, curve = hc.train_probe(train, val, steps=300, eval_every=100)
    assert [r["step"] for r in curve] == [100.0, 200.0, 300.0]
    assert max(r["val"] for r in curve) > 0.9
    assert hc._rejection(scorer, val) == max(r["val"] for r in curve)  # the best-on-validation weights
    again, curve2 = hc.train_probe(train, val, steps=300, eval_every=100)
    assert curve2 == curve  # seeded
    same = _embeddings(256, 8, 2, False)
    assert hc._rejection(scorer, same) == 0.0  # identical negatives are ties, and ties fail
    with pytest.raises(ValueError, match="train_probe"):
        hc.train_probe({**train, "swapped": train["swapped"][:10]}, val)


def test_probe_rejection_reports_probe_and_head(small_data) -> None:
    model = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=0)
    got = hc.probe_rejection(model, small_data, splits=("val",), steps=40)
    assert set(got) == {"curve", "best_val", "val", "head_val"}
    assert got["val"] == got["best_val"] and 0.0 <= got["head_val"] <= 1.0
    base = pipeline.build_model(small_data, recipes.model_config_for("tiny"), seed=0)
    assert "head_val" not in hc.probe_rejection(base, small_data, splits=("val",), steps=40)
