"""Numbers over seeds: mean and spread per variant, the paired comparison rule the course uses for
"clearly better/worse", and how well labels can be read from embeddings (k-NN)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch


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

    ``rows``: one dict per (variant, seed), as :func:`sevlm_lib.pipeline.train_and_evaluate` returns.
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
