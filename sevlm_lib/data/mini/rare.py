"""ArtEmis-mini's rare-words condition: a positive control for VAD fusion and the VAD head.

A token's VAD is a fixed function of its id, so a decoder's word embedding can learn it from the training
text; the lexicon adds information only where it knows words the training text does not teach. With
``rare_words=True`` the simulated annotators of the artworks that the course puts in its validation and test
splits draw their feeling words from :data:`~sevlm_lib.data.mini.text.HELD_OUT_FEELING_WORDS` instead of
:data:`~sevlm_lib.data.mini.text.FEELING_WORDS`: lexicon-covered words that no training explanation uses
(``rare_train_rate`` lets that share of the other explanations use them too, so they are rare rather than
absent). The replacement words are drawn like the common ones, among the held-out words nearest in lexicon
VAD to the annotator's perceived VAD, so they carry the same emotion.

Which artworks are held out: the generator computes the course's split itself, by calling
:func:`sevlm_lib.data.artemis.split_artemis` with :data:`~sevlm_lib.data.artemis.COURSE_SPLIT_SEED` on the
generated artwork keys and their ``repetition`` (what ``pipeline.load_course_data`` does on the CSV; that
split depends only on the set of artworks, their repetition and the seed, and no generated explanation is
dropped by the course's 5-30 word filter). The annotators' main random stream is untouched (the swapped
words come from a separate stream), so pictures, labels and templates are those of the normal condition:
only the feeling words of the held-out explanations differ (and, with ``rare_train_rate > 0``, a few
training ones).

:func:`rare_word_share` measures what the condition claims (validation/test feeling-word tokens that occur
fewer than ``k`` times in the training explanations); :func:`held_out_token_coverage` tells how many of the
held-out words a tokenizer keeps whole with a VAD in the token VAD table (what VAD fusion can see).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sevlm_lib.data.artemis import COURSE_SPLIT_SEED, split_artemis
from sevlm_lib.data.mini.annotators import FeelingVocabulary
from sevlm_lib.data.mini.artworks import Artwork
from sevlm_lib.data.mini.text import _HUE_NAMES, FEELING_WORDS, HELD_OUT_FEELING_WORDS, TEMPLATES
from sevlm_lib.data.mini.world import MOTIFS, SHAPES

HELD_OUT_SPLITS: tuple[str, ...] = ("val", "test")
RARE_MINI_DIR_NAME = "artemis_mini_rare"  # the folder of the rare-words condition, next to ``artemis_mini``
# The word swaps draw from SeedSequence(seed).spawn(4)[3]; build_artemis_mini spawns streams 0-2 (pictures,
# annotators), so the swaps never disturb them.
_SWAP_STREAM = 3
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
_SLOT = re.compile(r"\{[a-z_0-9]+\}")


def _description_words() -> frozenset[str]:
    """Words the grammar uses outside the feeling-word slots: templates, colour names, motifs, shapes."""
    texts = [_SLOT.sub(" ", t) for pool in TEMPLATES.values() for t in pool]
    texts += [name for _, name in _HUE_NAMES] + ["black white grey dark pale muted bright brown"]
    texts += [f"{m.article} {m.phrase} {m.backdrop}" for m in MOTIFS] + [s.phrase for s in SHAPES]
    return frozenset(w for text in texts for w in _WORD.findall(text))


#: Words of the descriptions (``dark`` green, ``soft`` round shapes, ``empty`` room, ...): a feeling word among
#: them cannot be told from a feeling-word slot in an explanation, so :func:`rare_word_share` leaves them out.
DESCRIPTION_WORDS: frozenset[str] = _description_words()


@dataclass(frozen=True)
class HeldOutWords:
    """The rare-words condition of one generation: held-out vocabulary, held-out artworks, training leak."""

    vocab: FeelingVocabulary
    artworks: frozenset[tuple[str, str]]  # (art_style, painting) of the validation and test artworks
    train_rate: float

    def rate(self, artwork: Artwork) -> float:
        """The share of ``artwork``'s explanations that use held-out words."""
        return 1.0 if (artwork.art_style, artwork.painting) in self.artworks else self.train_rate

    def swap_seeds(self, seed: int, n_artworks: int) -> list[np.random.SeedSequence]:
        """One seed per artwork for the word swaps, independent of the generator's other streams."""
        return np.random.SeedSequence(seed).spawn(_SWAP_STREAM + 1)[_SWAP_STREAM].spawn(n_artworks)


def held_out_params(vocab: FeelingVocabulary, train_rate: float) -> dict[str, Any]:
    """The ``rare_words`` entry of ``generator.json`` (absent when the condition is off)."""
    return {
        "held_out_splits": list(HELD_OUT_SPLITS),
        "split_seed": COURSE_SPLIT_SEED,
        "n_held_out_words": len(vocab.words),
        "held_out_fingerprint": vocab.fingerprint,
        "train_rate": float(train_rate),
    }


def held_out_artworks(
    artworks: Sequence[Artwork], seed: int = COURSE_SPLIT_SEED
) -> frozenset[tuple[str, str]]:
    """The (art_style, painting) keys that ``split_artemis(df, seed)`` puts in validation or test."""
    frame = pd.DataFrame(
        {
            "art_style": [a.art_style for a in artworks],
            "painting": [a.painting for a in artworks],
            "repetition": [a.n_annotations for a in artworks],
        }
    )
    split = split_artemis(frame, seed=seed)
    held = split[split["split"].isin(HELD_OUT_SPLITS)]
    return frozenset(zip(held["art_style"], held["painting"], strict=True))


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _texts(annotations: pd.DataFrame, split: str) -> Iterable[str]:
    return annotations.loc[annotations["split"] == split, "utterance"]


def rare_word_share(
    annotations: pd.DataFrame,
    k: int = 5,
    *,
    feeling_words: Iterable[str] | None = None,
    splits: Sequence[str] = HELD_OUT_SPLITS,
) -> dict[str, Any]:
    """How rare the validation/test feeling words are in the training explanations.

    ``annotations`` has ``utterance`` and ``split`` columns (``CourseData.annotations``, or
    ``split_artemis(load_artemis(csv))``). Feeling words are those of ``feeling_words`` (default: the
    generator's :data:`FEELING_WORDS` and :data:`HELD_OUT_FEELING_WORDS`, less the :data:`DESCRIPTION_WORDS`
    such as ``dark`` or ``empty`` that the descriptions of colours and motifs use too). Returns, per split of ``splits``
    and for all of them together (``"all"``): ``feeling_tokens`` (feeling-word tokens of its explanations),
    ``rare_tokens`` and ``rare_share`` (those whose word occurs fewer than ``k`` times in the training
    explanations), ``absent_share`` (never), and ``held_out_share`` (held-out words among them); plus ``k``
    and ``train`` (the training split's ``feeling_tokens`` and ``held_out_share``: the leak).
    """
    if not isinstance(annotations, pd.DataFrame):
        raise TypeError(f"annotations: expected a pandas DataFrame, got {type(annotations).__name__}")
    missing = [c for c in ("utterance", "split") if c not in annotations.columns]
    if missing:
        raise ValueError(
            f"annotations: missing column(s) {missing}; split the frame first (sevlm_lib.data.artemis.split_artemis)"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    if isinstance(splits, str):
        raise TypeError(f"splits: expected a sequence of split names, got the string {splits!r}")
    if isinstance(feeling_words, str):
        raise TypeError(f"feeling_words: expected a collection of words, got the string {feeling_words!r}")
    if feeling_words is None:
        vocab = (set(FEELING_WORDS) | set(HELD_OUT_FEELING_WORDS)) - DESCRIPTION_WORDS
    else:
        vocab = set(feeling_words)
    if not vocab:
        raise ValueError("feeling_words: expected a non-empty collection of words, got an empty one")
    held = set(HELD_OUT_FEELING_WORDS)
    train_counts = Counter(w for t in _texts(annotations, "train") for w in _words(t))

    def summary(tokens: list[str]) -> dict[str, Any]:
        n = len(tokens)
        rare = sum(train_counts[w] < k for w in tokens)
        share = lambda m: m / n if n else float("nan")  # noqa: E731
        return {
            "feeling_tokens": n,
            "rare_tokens": rare,
            "rare_share": share(rare),
            "absent_share": share(sum(train_counts[w] == 0 for w in tokens)),
            "held_out_share": share(sum(w in held for w in tokens)),
        }

    per_split = {s: [w for t in _texts(annotations, s) for w in _words(t) if w in vocab] for s in splits}
    out: dict[str, Any] = {"k": int(k)}
    out.update({s: summary(tokens) for s, tokens in per_split.items()})
    out["all"] = summary([w for tokens in per_split.values() for w in tokens])
    train_tokens = [w for w, c in train_counts.items() if w in vocab for _ in range(c)]
    train = summary(train_tokens)
    out["train"] = {"feeling_tokens": train["feeling_tokens"], "held_out_share": train["held_out_share"]}
    return out


def held_out_token_coverage(
    tokenizer: Any, lexicon: Any, words: Iterable[str] = HELD_OUT_FEELING_WORDS
) -> dict[str, Any]:
    """What the token VAD table (``lexicon.token_vad_table(tokenizer)``) gives the held-out words.

    Each word is encoded as it appears inside an explanation (after a space). Returns ``n_words`` (those the
    lexicon knows), ``whole`` (encoded as one token that has a VAD: fusion sees the word's own VAD),
    ``split`` (encoded as several pieces), ``split_with_vad`` (of those, words with at least one piece that
    has a VAD of its own: fusion sees a *piece's* VAD, e.g. ``spark`` in ``sparkling``) and ``per_word``:
    ``{word: (pieces, [piece has a VAD])}``.
    """
    _, known = lexicon.token_vad_table(tokenizer)
    per_word: dict[str, tuple[list[str], list[bool]]] = {}
    for word in words:
        if lexicon.vad(word) is None:
            continue
        ids = tokenizer.encode(" " + word, add_special_tokens=False)
        pieces = [tokenizer.decode([i]) for i in ids]
        per_word[word] = (pieces, [bool(known[i]) for i in ids])
    whole = sum(len(p) == 1 and k[0] for p, k in per_word.values())
    split = [k for p, k in per_word.values() if len(p) > 1]
    return {
        "n_words": len(per_word),
        "whole": whole,
        "split": len(split),
        "split_with_vad": sum(any(k) for k in split),
        "per_word": per_word,
    }
