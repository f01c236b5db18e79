"""SEVLM's two heads and their losses: the VAD head (masked MSE) and the contrastive head (InfoNCE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class VADHead(nn.Module):
    """``Linear(d -> 3)`` on the decoder's last hidden states: predicts the VAD of the *next* token."""

    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, 3)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


def masked_vad_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the positions where ``mask`` is true (target VAD known), averaged over 3 dims.

    ``pred``, ``target``: ``[N, T, 3]``; ``mask``: ``[N, T]`` bool. Returns 0 (with a gradient path) when no
    position counts, so a batch without known words does not produce NaN.
    """
    m = mask.to(pred.dtype).unsqueeze(-1)
    n = m.sum() * pred.shape[-1]
    return ((pred - target) ** 2 * m).sum() / n.clamp_min(1.0)


class ContrastiveScorer(nn.Module):
    """An MLP scoring an (image, emotion, explanation) triple: concat(3d) -> d -> d -> d -> d -> 1, ReLU between."""

    def __init__(self, d_model: int, n_hidden: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        width = 3 * d_model
        for _ in range(n_hidden):
            layers += [nn.Linear(width, d_model), nn.ReLU()]
            width = d_model
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, emotion: torch.Tensor, explanation: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([image, emotion, explanation], dim=-1)).squeeze(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [N, T, d]`` over the positions where ``mask [N, T]`` is true (padding never counts)."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation with no fixed point (Sattolo's algorithm: a uniformly random ``n``-cycle)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items, got {n}: use batches of >= 2 artworks")
    perm = torch.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(torch.randint(0, i, (1,), generator=generator))
        perm[i], perm[j] = perm[j].clone(), perm[i].clone()
    return perm


def contrastive_loss(pos: torch.Tensor, neg_emotion: torch.Tensor, neg_visual: torch.Tensor) -> torch.Tensor:
    """InfoNCE over {positive, negative 1, negative 2}: ``-log(e^s+ / (e^s+ + e^s1 + e^s2))``, batch mean."""
    logits = torch.stack([pos, neg_emotion, neg_visual], dim=-1)
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))


def reference_negative_ids(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """The reference's visual-negative draw over ``n`` artworks (its ``neg_ids``), for reference mode.

    With ``m = n // 2``: index 0 gets ``m``; indices ``1 .. n-m-1`` get a random order of ``m+1 .. n-1``;
    the last ``m`` indices get a random order of ``0 .. m-1``. Two ``randperm`` calls, in that order, so the
    same seed gives the reference's draw. No index maps to itself when ``n >= 2``, but this is not a
    uniform derangement. ``n < 2`` is an error (the reference would use the positive as its own negative).
    """
    if n < 2:
        raise ValueError(f"visual negatives need at least 2 artworks in a batch, got {n}")
    m = n // 2
    upper = torch.randperm(n - m - 1, generator=generator) + m + 1
    lower = torch.randperm(m, generator=generator)
    return torch.cat([torch.tensor([m]), upper, lower])


def reference_contrastive_loss(
    pos: torch.Tensor, neg_emotion: torch.Tensor, neg_visual: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """The reference's form of the contrastive loss: ``-log(eps + e^s+ / (eps + e^s+ + e^s1 + e^s2))``, mean.

    Numerically it is :func:`contrastive_loss` up to ``eps``, but it overflows for scores above ~88.
    """
    e_pos = torch.exp(pos)
    e_neg = torch.exp(torch.stack([neg_emotion, neg_visual], dim=-1)).sum(-1)
    return -torch.log(eps + e_pos / (eps + e_pos + e_neg)).mean()


# ---------------------------------------------------------------------------------------------------------
# What the language model already knows about the VAD target (notebook 04)
# ---------------------------------------------------------------------------------------------------------


def implied_vad(logits: torch.Tensor, token_vad: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """The VAD that a next-word distribution implies: ``sum_w p(w) v(w)`` over the words with a known VAD.

    ``logits [..., V]``, ``token_vad [V, 3]``, ``known [V]`` bool -> ``[..., 3]``. The probabilities are
    renormalised over the known words (the VAD loss only scores positions whose next word is known), so this
    is the expected VAD target under the model's own word distribution: the VAD head's job, done by the
    language-model head alone.
    """
    if logits.shape[-1] != token_vad.shape[0] or known.shape != token_vad.shape[:1]:
        raise ValueError(
            f"implied_vad: logits over {logits.shape[-1]} tokens, a VAD table of {tuple(token_vad.shape)} "
            f"and a known-mask of {tuple(known.shape)} do not match"
        )
    if not bool(known.any()):
        raise ValueError("implied_vad: no token has a known VAD")
    p = logits.float().softmax(-1) * known.to(torch.float32)
    return (p @ token_vad.float()) / p.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)


# ---------------------------------------------------------------------------------------------------------
# How well the contrastive head ranks (notebook 05)
# ---------------------------------------------------------------------------------------------------------


def ranking_accuracy(
    pos: torch.Tensor, neg_emotion: torch.Tensor, neg_visual: torch.Tensor
) -> dict[str, float]:
    """How often the positive triple outscores each kind of negative, and both at once.

    ``pos``, ``neg_emotion``, ``neg_visual``: ``[N]`` scores from :class:`ContrastiveScorer`. Returns
    ``emotion`` (s+ > s1), ``visual`` (s+ > s2) and ``both`` (s+ > max(s1, s2)); ties count as failures, so a
    constant scorer gets 0. A random scorer gets about 1/2, 1/2 and 1/3.
    """
    if not (pos.shape == neg_emotion.shape == neg_visual.shape) or pos.ndim != 1 or len(pos) == 0:
        raise ValueError(
            f"ranking_accuracy: expected three non-empty [N] score vectors, got shapes {tuple(pos.shape)}, "
            f"{tuple(neg_emotion.shape)}, {tuple(neg_visual.shape)}"
        )
    beats_1, beats_2 = pos > neg_emotion, pos > neg_visual
    return {
        "emotion": float(beats_1.float().mean()),
        "visual": float(beats_2.float().mean()),
        "both": float((beats_1 & beats_2).float().mean()),
    }
