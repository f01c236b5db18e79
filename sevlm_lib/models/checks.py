"""Range checks shared by the model configs: every size a whole number >= 1, widths divisible by heads,
probabilities in [0, 1). A bad value is a ``ValueError`` naming the config, the field and what was expected."""

from __future__ import annotations

from typing import Any


def check_sizes(config: Any, names: tuple[str, ...]) -> None:
    """Each of ``names`` on ``config`` is a whole number >= 1."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{type(config).__name__}.{name}={value!r}: expected a whole number >= 1")


def check_divides(config: Any, heads: str, width: str) -> None:
    """``config.heads`` divides ``config.width`` (attention splits the width evenly between heads)."""
    if getattr(config, width) % getattr(config, heads):
        raise ValueError(
            f"{type(config).__name__}: {heads}={getattr(config, heads)} must divide {width}={getattr(config, width)}"
        )


def check_probability(config: Any, name: str) -> None:
    """``config.name`` is a dropout-like probability in [0, 1)."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{type(config).__name__}.{name}={value!r}: expected a probability in [0, 1)")
