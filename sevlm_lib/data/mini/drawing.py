"""Rendering an artwork with ``PIL.ImageDraw``: background, shapes, the motif and the style's touches."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from sevlm_lib.data.mini.artworks import Artwork

RENDER_SUPERSAMPLING = 2  # draw at 2x and downsample with Lanczos for smoother edges

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
