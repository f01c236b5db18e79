"""Optimizers: torch's AdamW (the course's default) and the AdamW that transformers shipped until 5.0, which
the SEVLM reference trains with (``optimizer: adamw_hf``).

The two differ in where ``eps`` enters. torch divides by ``sqrt(v / (1 - b2^t)) + eps``; transformers' AdamW
divides by ``sqrt(v) + eps`` and scales the step by ``sqrt(1 - b2^t) / (1 - b1^t)``, so its ``eps`` acts
``1 / sqrt(1 - b2^t)`` times larger early on (and its default was 1e-6, torch's 1e-8). Weight decay is
decoupled in both (``p -= lr * wd * p``); transformers applies it after the Adam step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch


class AdamWHF(torch.optim.Optimizer):
    """transformers' (<= 4.x) ``AdamW`` with ``correct_bias=True``, written out step by step."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
    ) -> None:
        if lr < 0 or eps < 0 or not 0 <= betas[0] < 1 or not 0 <= betas[1] < 1 or weight_decay < 0:
            raise ValueError(f"AdamWHF: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay} out of range")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denom = v.sqrt().add_(group["eps"])
                step = state["step"]
                step_size = group["lr"] * math.sqrt(1 - beta2**step) / (1 - beta1**step)
                p.addcdiv_(m, denom, value=-step_size)
                if group["weight_decay"] > 0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])
        return loss


OPTIMIZERS = ("adamw", "adamw_hf")


def make_optimizer(groups: list[dict[str, Any]], name: str, lr: float, weight_decay: float, eps: float) -> Any:
    """``adamw`` (torch) or ``adamw_hf`` (transformers' old AdamW, the reference's) over parameter groups."""
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, eps=eps)
    if name == "adamw_hf":
        return AdamWHF(groups, lr=lr, weight_decay=weight_decay, eps=eps)
    raise ValueError(f"optimizer={name!r}: expected one of {', '.join(OPTIMIZERS)}")
