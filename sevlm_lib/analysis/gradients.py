"""How the losses compete for the decoder: each weighted loss's gradient on one batch, its norm and the cosines.

SEVLM's total loss is ``xe + vad_loss_weight * vad + contrastive_loss_weight * contrastive``. The weights
balance the three gradients that reach the shared decoder: :func:`loss_gradients` measures them on one batch,
each *weighted as in the total loss*, so the per-loss gradients add up to the total loss's gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Any

import torch
from torch import nn


def loss_weights(model: nn.Module) -> dict[str, float]:
    """The weight of each named loss in the model's total loss (``xe`` 1, the others from its config)."""
    cfg = model.config
    return {"xe": 1.0, "vad": float(cfg.vad_loss_weight), "contrastive": float(cfg.contrastive_loss_weight)}


def _flat(grads: Sequence[torch.Tensor | None], params: Sequence[torch.Tensor]) -> torch.Tensor:
    parts = [(g if g is not None else torch.zeros_like(p)).reshape(-1).float() for g, p in zip(grads, params, strict=True)]
    return torch.cat(parts)


def loss_gradients(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    losses: Sequence[str] | None = None,
    params: nn.Module | Iterable[torch.Tensor] | None = None,
    *,
    seed: int | None = 0,
    vectors: bool = False,
) -> dict[str, Any]:
    """Each named loss's weighted gradient on ``params`` for one ``batch``, from one forward pass.

    ``losses``: names from ``model(batch).losses`` (default: all of them). ``params``: a module or parameters
    (default: the decoder's trainable parameters, ``model.decoder``). ``seed``: the forward pass (negative-2
    derangement, dropout) runs under this torch seed without touching the global random state (``None``: the
    global state). The model's train/eval mode is left as it is.

    Returns ``{"norm": {name: L2 norm, ..., "total": norm of their sum}, "cosine": {(a, b): cos, ...},
    "weights": {name: weight}, "losses": {name: unweighted value}}`` and, with ``vectors=True``,
    ``"grad": {name: flat float32 gradient}``. A zero gradient has cosine ``nan`` with every other.
    """
    if params is None:
        params = model.decoder
    plist = [p for p in (params.parameters() if isinstance(params, nn.Module) else params) if p.requires_grad]
    if not plist:
        raise ValueError("loss_gradients: no trainable parameter among params")
    if seed is None:
        out = model(batch)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = model(batch)
    names = tuple(out.losses) if losses is None else tuple(losses)
    missing = [n for n in names if n not in out.losses]
    if missing or not names:
        raise ValueError(f"loss_gradients: losses {missing or names} not among the model's {sorted(out.losses)}")
    weights = loss_weights(model)
    grads: dict[str, torch.Tensor] = {}
    for name in names:
        weighted = weights.get(name, 1.0) * out.losses[name]
        g = torch.autograd.grad(weighted, plist, retain_graph=True, allow_unused=True)
        grads[name] = _flat(g, plist)
    norms = {name: float(g.norm()) for name, g in grads.items()}
    norms["total"] = float(torch.stack(list(grads.values())).sum(0).norm())
    cosines: dict[tuple[str, str], float] = {}
    for a, b in combinations(names, 2):
        denom = grads[a].norm() * grads[b].norm()
        cosines[(a, b)] = float(grads[a] @ grads[b] / denom) if float(denom) > 0 else float("nan")
    result: dict[str, Any] = {
        "norm": norms,
        "cosine": cosines,
        "weights": {name: weights.get(name, 1.0) for name in names},
        "losses": {name: float(out.losses[name].detach()) for name in names},
    }
    if vectors:
        result["grad"] = grads
    return result


def gradient_survey(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    params: nn.Module | Iterable[torch.Tensor] | None = None,
    *,
    losses: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict[str, float]]:
    """:func:`loss_gradients` over several batches: one row per batch, to compare with a training log.

    Batch ``b`` (counted from 0) runs under torch seed ``seed + b``; ``params`` and ``losses`` as in
    :func:`loss_gradients` (an iterator of parameters is read once and reused for every batch). Each row holds
    ``batch``, ``loss_{name}`` (unweighted), ``norm_{name}`` (weighted, as in the total loss), ``norm_total``
    and ``cos_{a}_{b}`` for every pair of losses.
    """
    if params is not None and not isinstance(params, nn.Module):
        params = list(params)
    rows: list[dict[str, float]] = []
    for b, batch in enumerate(batches):
        r = loss_gradients(model, batch, losses, params, seed=seed + b)
        row: dict[str, float] = {"batch": b}
        row.update({f"loss_{k}": v for k, v in r["losses"].items()})
        row.update({f"norm_{k}": v for k, v in r["norm"].items()})
        row.update({f"cos_{a}_{c}": v for (a, c), v in r["cosine"].items()})
        rows.append(row)
    if not rows:
        raise ValueError("gradient_survey: no batches")
    return rows
