"""Where a lexicon can help a captioner with words its training text rarely uses (notebooks 03 and 04).

A token's VAD is a fixed function of its id, so on data whose words the training text teaches well, a word
embedding can learn whatever the lexicon says. The lexicon adds information only for words the model has
rarely seen (ArtEmis-mini's rare-words condition, ``pipeline.load_rare_words_data``). These functions measure,
for any trained variant, the two places such words meet the model:

- writing them: :func:`texts_with_words`, the share of (generated) texts that use at least one listed word;
- reading them: :func:`explanation_token_losses` (teacher-forced cross-entropy of every explanation token)
  and :func:`losses_around_words`, which splits it into the tokens that *are* a listed word, the token right
  after one, the later tokens of an explanation that contains one, and the tokens of explanations before any.

A causal VAD path sees a word's VAD only once the word is in the input, so it can inform the predictions
*after* a listed word, never the prediction *of* it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sevlm_lib.data.datasets import CaptionBatches, ImageSource
from sevlm_lib.models.sevlm import SEVLM
from sevlm_lib.text import SequenceBuilder

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
CONTEXTS: tuple[str, ...] = ("word", "next", "after", "none")


def _word_set(words: Iterable[str]) -> frozenset[str]:
    if isinstance(words, str):
        raise TypeError(f"words: expected a collection of words, got the string {words!r}")
    out = frozenset(w.strip().lower() for w in words)
    if not out or "" in out:
        raise ValueError("words: expected a non-empty collection of non-empty words")
    return out


def word_token_ids(tokenizer: Any, words: Iterable[str]) -> dict[int, str]:
    """``{token id: word}`` for the ``words`` that ``tokenizer`` keeps whole when they follow a space (as inside
    an explanation); words split into several pieces are left out."""
    out: dict[int, str] = {}
    for word in sorted(_word_set(words)):
        ids = tokenizer.encode(" " + word, add_special_tokens=False)
        if len(ids) == 1:
            out[int(ids[0])] = word
    return out


def texts_with_words(texts: Sequence[str | None], words: Iterable[str]) -> dict[str, Any]:
    """How often ``texts`` use the listed ``words`` (lower-cased whole words; ``None`` counts as empty).

    Returns ``n_texts``, ``with_word`` (texts with at least one listed word), ``share`` (their share; ``nan``
    for no texts), ``word_tokens`` (listed-word occurrences in all texts) and ``per_word`` (a ``Counter``).
    """
    vocab = _word_set(words)
    if isinstance(texts, str):
        raise TypeError("texts: expected a sequence of texts, got one string")
    per_word: Counter[str] = Counter()
    with_word = 0
    for text in texts:
        found = [w for w in _WORD.findall((text or "").lower()) if w in vocab]
        per_word.update(found)
        with_word += bool(found)
    n = len(texts)
    return {
        "n_texts": n,
        "with_word": with_word,
        "share": with_word / n if n else float("nan"),
        "word_tokens": sum(per_word.values()),
        "per_word": per_word,
    }


@torch.no_grad()
def explanation_token_losses(
    model: SEVLM,
    builder: SequenceBuilder,
    images: ImageSource,
    items: Sequence[Mapping[str, str]],
    *,
    batch_size: int = 128,
) -> dict[str, np.ndarray]:
    """Teacher-forced cross-entropy of every explanation token of ``items`` (dicts with ``art_style, painting,
    emotion, utterance``), in item order and, within an item, in sentence order.

    Scored: each target after `` because`` (the explanation's words and its ``<eos>``). Returns arrays of
    equal length: ``ce`` (nats), ``target`` (token id), ``item`` (index into ``items``) and ``offset``
    (0 for the explanation's first token). ``images`` must match the model (``image_source_for(model, data)``).
    The model is put in eval mode.
    """
    if not items:
        raise ValueError("explanation_token_losses: no items")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    model.eval()
    device = next(model.parameters()).device
    batches = CaptionBatches(list(items), builder, images, batch_size=batch_size, shuffle=False)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("ce", "target", "item", "offset")}
    first = 0
    for batch in batches.batches():
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(batch).logits[:, :-1].float()
        targets = batch["labels"][:, 1:]
        seg = batch["explanation_segment"]
        scored = seg[:, :-1] & seg[:, 1:] & (targets != -100)  # predicted from ` because` onwards
        ce = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0), reduction="none")
        n, t = targets.shape
        rows = torch.arange(first, first + n, device=device)[:, None].expand(n, t)
        offset = torch.arange(t, device=device)[None] - seg.long().argmax(1, keepdim=True)  # 0: first word
        parts["ce"].append(ce[scored])
        parts["target"].append(targets[scored])
        parts["item"].append(rows[scored])
        parts["offset"].append(offset[scored])
        first += n
    return {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}


def word_contexts(losses: Mapping[str, np.ndarray], word_ids: Iterable[int]) -> dict[str, np.ndarray]:
    """Boolean masks over :func:`explanation_token_losses`'s tokens, by where they stand to a listed token:

    ``word`` the token is one of ``word_ids``; ``next`` it is not, and the token before it in the explanation
    is; ``after`` it is not, and some earlier token of its explanation is (``next`` included); ``none`` it is
    not, and no earlier token of its explanation is. ``word``, ``after`` and ``none`` partition the tokens.
    """
    target, item, offset = (np.asarray(losses[k]) for k in ("target", "item", "offset"))
    if not len(target) == len(item) == len(offset):
        raise ValueError("losses: target, item and offset must have the same length")
    if len(item) > 1 and np.any((np.diff(item) < 0) | ((np.diff(item) == 0) & (np.diff(offset) <= 0))):
        raise ValueError("losses: tokens must be in item order and sentence order (explanation_token_losses)")
    is_word = np.isin(target, np.fromiter((int(i) for i in word_ids), dtype=np.int64))
    new_item = np.ones(len(item), dtype=bool)
    new_item[1:] = item[1:] != item[:-1]
    prev_word = np.zeros(len(item), dtype=bool)
    prev_word[1:] = is_word[:-1] & ~new_item[1:]
    # listed tokens before this one in the same explanation: a running count restarted at every new item
    count = np.cumsum(is_word) - is_word  # listed tokens strictly before, over all items
    start = np.maximum.accumulate(np.where(new_item, np.arange(len(item)), 0))  # each token's item start
    before = (count - count[start]) > 0
    return {
        "word": is_word,
        "next": ~is_word & prev_word,
        "after": ~is_word & before,
        "none": ~is_word & ~before,
    }


def losses_around_words(losses: Mapping[str, np.ndarray], word_ids: Iterable[int]) -> dict[str, dict[str, float]]:
    """Mean teacher-forced cross-entropy per context of :func:`word_contexts`: ``{context: {"xe", "n"}}``
    (``xe`` is ``nan`` where a context has no token), plus ``"all"``."""
    masks = word_contexts(losses, word_ids)
    ce = np.asarray(losses["ce"], dtype=float)
    masks["all"] = np.ones(len(ce), dtype=bool)
    return {
        k: {"xe": float(ce[m].mean()) if m.any() else float("nan"), "n": int(m.sum())} for k, m in masks.items()
    }
