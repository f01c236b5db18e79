"""Sampling the synthetic artworks: motif, shapes, palette, latent VAD and number of annotations."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from sevlm_lib.data.mini.calibration import MiniCalibration
from sevlm_lib.data.mini.text import color_name
from sevlm_lib.data.mini.world import (
    ART_STYLES,
    IMAGE_SIDE_RANGE,
    MOTIFS,
    N_ARTISTS,
    PALETTE_RANGES,
    SHAPES,
    UNICODE_ARTIST,
    Motif,
    ShapeKind,
    artist_name,
    palette_pad,
)


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
