"""Simulated annotators: the feeling vocabulary, the emotion each annotator picks and its explanation."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sevlm_lib.data.mini.artworks import Artwork
from sevlm_lib.data.mini.calibration import MiniCalibration
from sevlm_lib.data.mini.text import FEELING_WORDS, TEMPLATES, UTTERANCE_WORDS
from sevlm_lib.emotions import EMOTIONS, NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS, SOMETHING_ELSE
from sevlm_lib.vad import Lexicon


@dataclass(frozen=True)
class FeelingVocabulary:
    """Feeling words and the emotion prototypes, with their lexicon VAD."""

    words: tuple[str, ...]
    word_vad: np.ndarray  # [n_words, 3]
    prototypes: np.ndarray  # [8, 3]: lexicon VAD of the eight emotion words (EMOTIONS order)
    lexicon_name: str
    fingerprint: str  # sha256 of the VAD values used, so a different lexicon regenerates the data

    @classmethod
    def from_lexicon(cls, lexicon: Lexicon, words: Sequence[str] = FEELING_WORDS) -> FeelingVocabulary:
        """Look the emotion words and ``words`` up in ``lexicon``; words it lacks are left out."""
        named = [e for e in EMOTIONS if e != SOMETHING_ELSE]
        protos = []
        for emotion in named:
            vad = lexicon.vad(emotion)
            if vad is None:
                raise ValueError(
                    f"lexicon {getattr(lexicon, 'name', '?')!r} has no VAD for the emotion word {emotion!r}; "
                    "ArtEmis-mini needs all eight emotion words"
                )
            protos.append(vad)
        labels = set(named)
        kept, vads = [], []
        for word in sorted(set(words)):
            vad = lexicon.vad(word)
            if vad is not None and word not in labels:
                kept.append(word)
                vads.append(vad)
        if len(kept) < 50:
            raise ValueError(
                f"lexicon {getattr(lexicon, 'name', '?')!r} knows only {len(kept)} feeling words; need 50"
            )
        payload = json.dumps(
            {
                "emotions": [[round(x, 6) for x in p] for p in protos],
                "words": [[w, [round(x, 6) for x in v]] for w, v in zip(kept, vads, strict=True)],
            },
            sort_keys=True,
        )
        return cls(
            words=tuple(kept),
            word_vad=np.asarray(vads, dtype=float),
            prototypes=np.asarray(protos, dtype=float),
            lexicon_name=str(getattr(lexicon, "name", type(lexicon).__name__)),
            fingerprint=hashlib.sha256(payload.encode()).hexdigest(),
        )

    def nearest_emotion(self, vad: np.ndarray, threshold: float) -> str:
        """The emotion whose word VAD is nearest to ``vad``, or "something else" beyond ``threshold``."""
        dist = np.linalg.norm(self.prototypes - vad, axis=1)
        best = int(np.argmin(dist))
        return SOMETHING_ELSE if dist[best] > threshold else EMOTIONS[best]

    def sample_words(
        self, vad: np.ndarray, rng: np.random.Generator, k: int, temperature: float, n: int = 3
    ) -> list[str]:
        """``n`` distinct feeling words among the ``k`` nearest to ``vad``, nearer ones likelier."""
        dist = np.linalg.norm(self.word_vad - vad, axis=1)
        order = np.argsort(dist, kind="stable")[: max(k, n)]
        weights = np.exp(-(dist[order] - dist[order[0]]) / temperature)
        picked = rng.choice(order, size=n, replace=False, p=weights / weights.sum())
        return [self.words[int(i)] for i in picked]


def _emotion_group(emotion: str) -> str:
    if emotion in POSITIVE_EMOTIONS:
        return "positive"
    if emotion in NEGATIVE_EMOTIONS:
        return "negative"
    return SOMETHING_ELSE


def explain(
    artwork: Artwork,
    emotion: str,
    perceived_vad: np.ndarray,
    vocab: FeelingVocabulary,
    rng: np.random.Generator,
    calibration: MiniCalibration | None = None,
    swap: tuple[FeelingVocabulary, np.random.Generator] | None = None,
) -> str:
    """One ArtEmis-style explanation (lowercase, 6-25 words) of ``emotion`` for ``artwork``.

    ``swap = (held_out_vocab, swap_rng)``: the feeling words are drawn from ``vocab`` with ``rng`` as always
    (so ``rng`` is consumed exactly as without ``swap``), then replaced by words drawn the same way from
    ``held_out_vocab`` with ``swap_rng``: near the same perceived VAD, so of the same emotion.
    """
    cal = calibration or MiniCalibration()
    group = _emotion_group(emotion)
    sky, ground = artwork.color_names()
    same_hue = sky.split()[-1] == ground.split()[-1]  # "pale pink and pink" reads badly: say "pink"
    colors = min(sky, ground, key=len) if same_hue else f"{sky} and {ground}"
    for _ in range(50):
        if group != SOMETHING_ELSE and rng.random() < cal.label_word_rate:
            pool = TEMPLATES["label"]
        elif rng.random() < 0.3:
            pool = TEMPLATES[group]
        else:
            pool = TEMPLATES["any"]
        template = pool[int(rng.integers(0, len(pool)))]
        f1, f2, f3 = vocab.sample_words(perceived_vad, rng, cal.word_k, cal.word_temperature)
        if swap is not None:
            f1, f2, f3 = swap[0].sample_words(perceived_vad, swap[1], cal.word_k, cal.word_temperature)
        text = template.format(
            motif=artwork.motif.phrase,
            a_motif=f"{artwork.motif.article} {artwork.motif.phrase}",
            shape=artwork.shape.phrase,
            color=sky if rng.random() < 0.6 else ground,
            colors=colors,
            backdrop=artwork.motif.backdrop,
            f1=f1,
            f2=f2,
            f3=f3,
            label=emotion,
        )
        if UTTERANCE_WORDS[0] <= len(text.split()) <= UTTERANCE_WORDS[1]:
            return text
    raise RuntimeError(
        f"could not build a {UTTERANCE_WORDS[0]}-{UTTERANCE_WORDS[1]} word explanation for {artwork.painting}"
    )


def annotate(
    artwork: Artwork,
    vocab: FeelingVocabulary,
    rng: np.random.Generator,
    calibration: MiniCalibration | None = None,
    held_out: tuple[FeelingVocabulary, float, np.random.Generator] | None = None,
) -> list[tuple[str, str]]:
    """``artwork.n_annotations`` (emotion, explanation) pairs from simulated annotators.

    ``held_out = (held_out_vocab, rate, swap_rng)``: each explanation, with probability ``rate`` (drawn from
    ``swap_rng``; always when ``rate >= 1``), takes its feeling words from ``held_out_vocab`` instead (see
    :func:`explain`). ``rng`` is consumed exactly as without it, so labels and templates do not change.
    """
    cal = calibration or MiniCalibration()
    latent = np.asarray(artwork.latent_vad)
    sigma = cal.noise * math.exp(rng.normal(0.0, cal.noise_spread))
    out = []
    for _ in range(artwork.n_annotations):
        perceived = latent + rng.normal(0.0, sigma, 3)
        emotion = vocab.nearest_emotion(perceived, cal.threshold)
        if rng.random() < cal.something_else_rate:
            emotion = SOMETHING_ELSE
        swap = None
        if held_out is not None and (held_out[1] >= 1.0 or held_out[2].random() < held_out[1]):
            swap = (held_out[0], held_out[2])
        out.append((emotion, explain(artwork, emotion, perceived, vocab, rng, cal, swap)))
    return out
