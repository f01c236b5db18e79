"""The annotator model's calibration (:class:`MiniCalibration`) and the argument checks run before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sevlm_lib import vad


@dataclass(frozen=True)
class MiniCalibration:
    """The knobs that turn latent VAD into labels and words (calibrated for an ArtEmis-like label mix).

    ``palette_scale`` maps Valdez-Mehrabian z units to lexicon units per dimension; ``noise`` is the
    standard deviation of an annotator's perception noise (per dimension, lexicon units), multiplied per
    artwork by ``exp(N(0, noise_spread))`` so some artworks are clear and others ambiguous; ``threshold``
    is the largest lexicon distance at which an emotion word still "fits" (else "something else");
    ``something_else_rate`` is the share of annotators who answer "something else" regardless;
    ``label_word_rate`` the share of explanations that name the emotion word; feeling words are drawn among
    the ``word_k`` nearest to the perceived VAD with weights ``exp(-distance / word_temperature)``; the
    motif's preferred hue is used with probability ``motif_hue_rate`` (else a uniform hue).
    """

    palette_scale: tuple[float, float, float] = (0.28, 0.2, 0.2)
    noise: float = 0.15
    noise_spread: float = 0.4
    threshold: float = 0.6
    something_else_rate: float = 0.03
    label_word_rate: float = 0.08
    word_k: int = 8
    word_temperature: float = 0.08
    motif_hue_rate: float = 0.8
    base_annotations: int = 5
    extra_annotation_rates: tuple[float, float] = (0.10, 0.03)  # P(6 annotations), P(7 annotations)
    crowded_annotations: tuple[int, int] = (41, 56)  # range of annotations of "crowded" artworks


# ---------------------------------------------------------------------------------------------------------
# Argument checks (before any work)
# ---------------------------------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _need_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``low..high``; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    span = f"{low}..{high}" if high is not None else f">= {low}"
    if not _is_int(value):
        raise TypeError(f"{name}: expected an integer {span}, got {type(value).__name__} {value!r}")
    number = int(value)  # type: ignore[call-overload]
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name}: expected an integer {span}, got {number}")
    return number


def _need_real(
    name: str, value: object, low: float, high: float | None = None, *, open_low: bool = False
) -> float:
    """``value`` as a finite ``float`` in ``[low, high]`` (``(low, ...`` with ``open_low``)."""
    span = (
        f"{'(' if open_low else '['}{low:g}, {high:g}]"
        if high is not None
        else (f"> {low:g}" if open_low else f">= {low:g}")
    )
    if not _is_real(value):
        raise TypeError(f"{name}: expected a number {span}, got {type(value).__name__} {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if (
        not math.isfinite(number)
        or number < low
        or (open_low and number == low)
        or (high is not None and number > high)
    ):
        raise ValueError(f"{name}: expected a number {span}, got {number!r}")
    return number


def _need_tuple(name: str, value: object, length: int) -> tuple[Any, ...]:
    if not isinstance(value, (tuple, list)) or len(value) != length:
        raise TypeError(f"{name}: expected a tuple of {length} numbers, got {value!r}")
    return tuple(value)


def check_calibration(cal: MiniCalibration, name: str = "calibration") -> None:
    """Raise ``TypeError``/``ValueError`` naming the field of ``cal`` that has the wrong type or range."""
    for i, x in enumerate(_need_tuple(f"{name}.palette_scale", cal.palette_scale, 3)):
        _need_real(f"{name}.palette_scale[{i}]", x, 0.0)
    _need_real(f"{name}.noise", cal.noise, 0.0)
    _need_real(f"{name}.noise_spread", cal.noise_spread, 0.0)
    _need_real(f"{name}.threshold", cal.threshold, 0.0, open_low=True)
    for field_name in ("something_else_rate", "label_word_rate", "motif_hue_rate"):
        _need_real(f"{name}.{field_name}", getattr(cal, field_name), 0.0, 1.0)
    _need_int(f"{name}.word_k", cal.word_k, 1)
    _need_real(f"{name}.word_temperature", cal.word_temperature, 0.0, open_low=True)
    _need_int(f"{name}.base_annotations", cal.base_annotations, 1)
    p6, p7 = _need_tuple(f"{name}.extra_annotation_rates", cal.extra_annotation_rates, 2)
    p6 = _need_real(f"{name}.extra_annotation_rates[0]", p6, 0.0, 1.0)
    p7 = _need_real(f"{name}.extra_annotation_rates[1]", p7, 0.0, 1.0)
    if p6 + p7 > 1.0:
        raise ValueError(
            f"{name}.extra_annotation_rates: P(6) + P(7) annotations must be at most 1, got {p6} + {p7}"
        )
    low, high = _need_tuple(f"{name}.crowded_annotations", cal.crowded_annotations, 2)
    low = _need_int(f"{name}.crowded_annotations[0]", low, 1)
    _need_int(f"{name}.crowded_annotations[1]", high, low)


def check_rare_args(rare_words: object, rare_train_rate: object) -> None:
    """``rare_words`` a bool; ``rare_train_rate`` a number in [0, 1), and above 0 only with ``rare_words``."""
    if not isinstance(rare_words, (bool, np.bool_)):
        raise TypeError(f"rare_words: expected True or False, got {type(rare_words).__name__} {rare_words!r}")
    span = "a number in [0, 1) (the share of training explanations that also use held-out words)"
    if not _is_real(rare_train_rate):
        raise TypeError(
            f"rare_train_rate: expected {span}, got {type(rare_train_rate).__name__} {rare_train_rate!r}"
        )
    rate = float(rare_train_rate)  # type: ignore[arg-type]
    if not (math.isfinite(rate) and 0.0 <= rate < 1.0):
        raise ValueError(f"rare_train_rate: expected {span}, got {rate!r}")
    if rate > 0 and not rare_words:
        raise ValueError(
            f"rare_train_rate={rate!r} only applies with rare_words=True (the held-out words of the rare-words "
            "condition); pass rare_words=True or leave rare_train_rate at 0"
        )


def check_mini_args(
    n_artworks: object,
    seed: object,
    lexicon: object = None,
    n_crowded: object = None,
    calibration: object = None,
    rare_words: object = False,
    rare_train_rate: object = 0.0,
) -> None:
    """Check the arguments of :func:`make_artemis_mini`; ``TypeError``/``ValueError`` naming the parameter.

    ``n_artworks`` an integer >= 1, ``seed`` an integer >= 0 (NumPy seeds are non-negative), ``n_crowded``
    ``None`` or an integer in ``0..n_artworks``, ``lexicon`` ``None`` or a :class:`~sevlm_lib.vad.Lexicon`,
    ``calibration`` ``None`` or a :class:`MiniCalibration` with sensible fields (see :func:`check_calibration`),
    ``rare_words`` and ``rare_train_rate`` as :func:`check_rare_args` says.
    """
    n = _need_int("n_artworks", n_artworks, 1)
    _need_int("seed", seed, 0)
    if n_crowded is not None:
        _need_int("n_crowded", n_crowded, 0, n)
    if lexicon is not None and not isinstance(lexicon, vad.Lexicon):
        raise TypeError(
            f"lexicon: expected None or a sevlm_lib.vad.Lexicon (e.g. load_lexicon('warriner')), "
            f"got {type(lexicon).__name__}"
        )
    if calibration is not None:
        if not isinstance(calibration, MiniCalibration):
            raise TypeError(
                f"calibration: expected None or a MiniCalibration, got {type(calibration).__name__}"
            )
        check_calibration(calibration)
    check_rare_args(rare_words, rare_train_rate)
