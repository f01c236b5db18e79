"""How far a contrastive head could get on "words swapped" negatives (notebook 05).

A words-swapped negative is an artwork's *other* explanation under the positive's own prompt: only the words
differ, and only in the emotion they carry. Two measurements bound what a head can do with them:

* :func:`words_only_rejection`: a bag-of-words emotion classifier (:func:`fit_words_classifier`, multinomial
  logistic regression on the training explanations' words) prefers the positive's words whenever
  ``p(e | its words) > p(e | the partner's words)`` for the positive's emotion ``e``. It sees no image and no
  decoder: it says how much of the answer the words themselves hold;
* :func:`probe_rejection`: a fresh scorer, the head's architecture, trained on a trained model's *frozen*
  embeddings (image, emotion, explanation) to tell each positive from its words-swapped negative. It says how
  much of the answer the embeddings the head is given still hold, however long a scorer trains on them.

Both score the pairs that :func:`~sevlm_lib.analysis.contrastive.split_control_rejection` scores (the same
``seed`` draws the same two annotations of every artwork).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sevlm_lib.analysis.contrastive import _split_pair_batches
from sevlm_lib.data.artemis import sample_pair
from sevlm_lib.data.datasets import ImageSource
from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS
from sevlm_lib.models.heads import ContrastiveScorer
from sevlm_lib.models.negatives import splice_sequences
from sevlm_lib.models.sevlm import SEVLM
from sevlm_lib.pipeline import CourseData, image_source_for

_WORD = re.compile(r"[a-z']+")


def words_of(utterance: str) -> list[str]:
    """The lower-case words of an explanation (punctuation dropped)."""
    return _WORD.findall(utterance.lower())


@dataclass
class WordsClassifier:
    """A bag-of-words emotion classifier: ``log p(emotion | words)`` from word presence (see module doc)."""

    vocabulary: dict[str, int]
    weight: torch.Tensor  # [len(EMOTIONS), len(vocabulary)]
    bias: torch.Tensor  # [len(EMOTIONS)]
    l2: float  # the L2 penalty chosen on validation
    val_accuracy: float

    def features(self, utterances: Sequence[str]) -> torch.Tensor:
        """``[N, V]`` word presence (words outside the vocabulary are ignored)."""
        x = torch.zeros(len(utterances), len(self.vocabulary))
        for row, text in enumerate(utterances):
            cols = [self.vocabulary[w] for w in words_of(text) if w in self.vocabulary]
            x[row, cols] = 1.0
        return x

    def log_probs(self, utterances: Sequence[str]) -> torch.Tensor:
        """``[N, len(EMOTIONS)]`` log-probabilities, columns in ``EMOTIONS`` order."""
        return torch.log_softmax(self.features(utterances) @ self.weight.T + self.bias, dim=-1)


def _labels(emotions: Sequence[str], where: str) -> torch.Tensor:
    unknown = sorted(set(emotions) - set(EMOTION_TO_IDX))
    if unknown:
        raise ValueError(f"{where}: unknown emotions {unknown}; expected ArtEmis's nine")
    return torch.tensor([EMOTION_TO_IDX[e] for e in emotions])


def fit_words_classifier(
    data: CourseData, *, l2_grid: Sequence[float] = (1e-4, 1e-3, 1e-2), min_count: int = 2
) -> WordsClassifier:
    """Multinomial logistic regression from the words of the training explanations to their emotions.

    The vocabulary is the training words seen at least ``min_count`` times; each L2 penalty of ``l2_grid`` is
    fitted to convergence (L-BFGS, deterministic) and the one with the best validation accuracy is kept.
    """
    train, val = data.split("train"), data.split("val")
    if len(train) == 0 or len(val) == 0:
        raise ValueError("fit_words_classifier: the training and validation splits must not be empty")
    counts = Counter(w for text in train["utterance"] for w in words_of(text))
    vocabulary = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}
    if not vocabulary:
        raise ValueError(f"fit_words_classifier: no training word occurs {min_count}+ times")
    y, y_val = _labels(list(train["emotion"]), "train split"), _labels(list(val["emotion"]), "val split")
    empty = WordsClassifier(vocabulary, torch.zeros(0), torch.zeros(0), 0.0, 0.0)
    x, x_val = empty.features(list(train["utterance"])), empty.features(list(val["utterance"]))
    best: WordsClassifier | None = None
    for l2 in l2_grid:
        weight = torch.zeros(len(EMOTIONS), len(vocabulary), requires_grad=True)
        bias = torch.zeros(len(EMOTIONS), requires_grad=True)
        opt = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

        def closure(
            weight: torch.Tensor = weight,
            bias: torch.Tensor = bias,
            l2: float = l2,
            opt: torch.optim.LBFGS = opt,
        ) -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(x @ weight.T + bias, y) + l2 * weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = float(((x_val @ weight.T + bias).argmax(1) == y_val).float().mean())
        if best is None or acc > best.val_accuracy:
            best = WordsClassifier(vocabulary, weight.detach(), bias.detach(), float(l2), acc)
    assert best is not None
    return best


def pair_draws(data: CourseData, split: str, seed: int = 0) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The two annotations drawn for every two-emotion artwork of ``split``, as the control negatives draw
    them (``np.random.default_rng(seed)``, artworks in order)."""
    rng = np.random.default_rng(seed)
    return [sample_pair(item, rng) for item in data.pair_items(split)]


def words_only_rejection(
    classifier: WordsClassifier, data: CourseData, split: str, *, seed: int = 0
) -> float:
    """The share of sequences whose own words the classifier finds likelier for their emotion than the
    partner's words (ties fail): the words-swapped rejection of a reader of words alone."""
    pairs = pair_draws(data, split, seed)
    if not pairs:
        raise ValueError(f"words_only_rejection: split {split!r} has no artwork with two distinct emotions")
    texts = [u for pair in pairs for _, u in pair]
    emotions = _labels([e for pair in pairs for e, _ in pair], f"{split} split")
    lp = classifier.log_probs(texts)
    own = lp.gather(1, emotions[:, None])[:, 0]
    partner = lp[torch.arange(len(texts)) ^ 1].gather(1, emotions[:, None])[:, 0]
    return float((own > partner).float().mean())


@torch.no_grad()
def words_swapped_embeddings(
    model: SEVLM,
    data: CourseData,
    split: str,
    *,
    batch_size: int = 32,
    seed: int = 0,
    images: ImageSource | None = None,
) -> dict[str, torch.Tensor]:
    """The head's inputs for every sequence of ``split``'s pairs: ``image``, ``emotion``, ``explanation`` and
    ``swapped`` (the words-swapped negative's explanation embedding), each ``[N, d]``, from the model as it is."""
    cfg = model.config
    ids = {"pad_id": cfg.pad_id, "explanation_segment_id": cfg.explanation_segment_id}
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("image", "emotion", "explanation", "swapped")}
    for _, _, _, batch in _split_pair_batches(
        model, data, split, batch_size, seed, images, "words_swapped_embeddings"
    ):
        image_memory = model.encode_images(batch)
        memory = image_memory[batch["image_index"]]
        emotion, explanation = model.span_embeddings(model.text_hidden(batch, memory), batch)
        own = torch.arange(len(memory), device=memory.device)
        rows = splice_sequences(batch, own, batch["pair_index"], **ids)
        parts["image"].append(image_memory.mean(1)[batch["image_index"]])
        parts["emotion"].append(emotion)
        parts["explanation"].append(explanation)
        parts["swapped"].append(model.span_embeddings(model.text_hidden(rows, memory), rows)[1])
    return {k: torch.cat(v).float().cpu() for k, v in parts.items()}


def _rejection(scorer: ContrastiveScorer, emb: dict[str, torch.Tensor]) -> float:
    """The share of rows whose explanation outscores its words-swapped negative (ties fail)."""
    p = next(scorer.parameters())
    e = {k: v.to(device=p.device, dtype=p.dtype) for k, v in emb.items()}
    with torch.no_grad():
        pos = scorer(e["image"], e["emotion"], e["explanation"])
        neg = scorer(e["image"], e["emotion"], e["swapped"])
    return float((pos > neg).float().mean())


def train_probe(
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    *,
    steps: int = 3000,
    eval_every: int = 250,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> tuple[ContrastiveScorer, list[dict[str, float]]]:
    """A fresh :class:`ContrastiveScorer` trained (AdamW) to score ``explanation`` above ``swapped``, two-way
    InfoNCE, on ``train``; the weights with the best ``val`` rejection are returned with the curve
    (``step``, ``train``, ``val``) every ``eval_every`` steps."""
    n, d = train["explanation"].shape
    if n == 0 or any(v.shape != (n, d) for v in train.values()):
        raise ValueError("train_probe: expected four non-empty [N, d] embeddings of one shape")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        scorer = ContrastiveScorer(d)
    opt = torch.optim.AdamW(scorer.parameters(), lr=lr)
    curve: list[dict[str, float]] = []
    best_state, best_val = None, -1.0
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        pos = scorer(train["image"][idx], train["emotion"][idx], train["explanation"][idx])
        neg = scorer(train["image"][idx], train["emotion"][idx], train["swapped"][idx])
        loss = F.cross_entropy(torch.stack([pos, neg], 1), torch.zeros(len(idx), dtype=torch.long))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % eval_every == 0 or step == steps:
            row = {"step": float(step), "train": _rejection(scorer, train), "val": _rejection(scorer, val)}
            curve.append(row)
            if row["val"] > best_val:
                best_val, best_state = row["val"], {k: v.clone() for k, v in scorer.state_dict().items()}
    assert best_state is not None
    scorer.load_state_dict(best_state)
    return scorer, curve


def probe_rejection(
    model: SEVLM,
    data: CourseData,
    *,
    splits: Sequence[str] = ("test",),
    steps: int = 3000,
    seed: int = 0,
    images: ImageSource | None = None,
) -> dict[str, object]:
    """Train a probe (:func:`train_probe`) on ``model``'s frozen embeddings of the training pairs, chosen on
    the validation pairs, and report its words-swapped rejection on ``splits``, with the model's own head's
    rejection on the same pairs when it has one (``head_{split}``) and the probe's curve."""
    images = images if images is not None else image_source_for(model, data)
    emb = {
        s: words_swapped_embeddings(model, data, s, seed=seed, images=images)
        for s in dict.fromkeys(["train", "val", *splits])
    }
    scorer, curve = train_probe(emb["train"], emb["val"], steps=steps, seed=seed)
    out: dict[str, object] = {"curve": curve, "best_val": max(r["val"] for r in curve)}
    for s in splits:
        out[s] = _rejection(scorer, emb[s])
        if model.config.contrastive:
            out[f"head_{s}"] = _rejection(model.scorer, emb[s])
    return out
