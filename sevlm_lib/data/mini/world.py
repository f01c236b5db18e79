"""The synthetic world of ArtEmis-mini: palettes (Valdez & Mehrabian 1994), motifs, shapes, styles, artists."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

IMAGE_SIDE_RANGE = (96, 128)  # each side drawn uniformly in this range (inclusive)

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
