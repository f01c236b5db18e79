"""Artworks on screen: galleries, small inline images, generated text beside its image, attention overlays."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure as MplFigure
from PIL import Image

from sevlm_lib.models.vision import CLIP_MEAN, CLIP_STD

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_artwork_gallery(
    images: Sequence[Any],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 4,
    panel_size: float = 2.0,
    title_colors: Sequence[str] | None = None,
) -> Figure:
    """A grid of images (PIL images or ``[H, W, 3]`` arrays), one per panel, axes hidden; returns the Figure.

    ``titles`` (one per image) are drawn small above each panel, in ``title_colors`` when given (e.g. the
    colour of each artwork's dominant emotion). Unused panels of the last row are switched off.
    """

    n = len(images)
    if n == 0:
        raise ValueError("plot_artwork_gallery: no images to show")
    if ncols < 1:
        raise ValueError(f"plot_artwork_gallery: ncols must be at least 1, got {ncols}")
    for name, values in (("titles", titles), ("title_colors", title_colors)):
        if values is not None and len(values) != n:
            raise ValueError(f"plot_artwork_gallery: {n} images but {len(values)} {name}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows * 1.1), squeeze=False
    )
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(np.asarray(images[k]))
        if titles is not None:
            color = title_colors[k] if title_colors is not None else "black"
            ax.set_title(titles[k], fontsize=8, color=color)
    fig.tight_layout()
    return fig


def display_image(picture: Any, fmt: str = "png", *, dpi: int = 72, quality: int = 80) -> Any:
    """A matplotlib Figure or a PIL image as an ``IPython.display.Image`` (PNG or JPEG); a Figure is closed.

    Displaying this, rather than relying on the matplotlib backend, gives a notebook the same outputs under
    the inline backend and under ``MPLBACKEND=Agg`` (as nbval runs in CI); ``fmt="jpeg"`` keeps notebooks
    that show pictures small.
    """

    from IPython.display import Image as DisplayImage

    fmt = fmt.lower()
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"display_image: fmt must be 'png' or 'jpeg', got {fmt!r}")
    buffer = io.BytesIO()
    if isinstance(picture, MplFigure):
        extra = {"pil_kwargs": {"quality": quality}} if fmt == "jpeg" else {}
        picture.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", **extra)
        plt.close(picture)
    elif hasattr(picture, "save") and hasattr(picture, "mode"):  # a PIL image
        image = picture.convert("RGB") if fmt == "jpeg" else picture
        image.save(
            buffer,
            format="JPEG" if fmt == "jpeg" else "PNG",
            **({"quality": quality} if fmt == "jpeg" else {}),
        )
    else:
        raise TypeError(
            f"display_image: expected a matplotlib Figure or a PIL image, got {type(picture).__name__}"
        )
    return DisplayImage(data=buffer.getvalue(), format=fmt)


def image_html(image: Any, size: int = 96, fmt: str = "png", quality: int = 80) -> str:
    """An ``<img>`` tag holding a small thumbnail (longest side ``size`` px) of a PIL image or RGB array,
    embedded as PNG or (``fmt="jpeg"``, smaller for pictures) JPEG."""


    fmt = fmt.lower()
    if fmt not in ("png", "jpeg"):
        raise ValueError(f"image_html: fmt must be 'png' or 'jpeg', got {fmt!r}")
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil.convert("RGB")
    pil.thumbnail((size, size))
    buf = io.BytesIO()
    if fmt == "png":
        pil.save(buf, format="PNG", optimize=True)
    else:
        pil.save(buf, format="JPEG", quality=quality)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img src="data:image/{fmt};base64,{data}" width="{pil.width}" height="{pil.height}"/>'


def text_gallery_html(
    images: Sequence[Any],
    rows: Sequence[Mapping[str, str]],
    *,
    size: int = 96,
    title: str | None = None,
    fmt: str = "png",
) -> str:
    """An HTML table: each artwork's thumbnail beside labelled lines of (already formatted) HTML text, e.g.
    explanations coloured by :func:`vad_words_html`. ``rows[i]`` maps a label to its HTML for image ``i``;
    ``fmt``: the thumbnails' format (see :func:`image_html`)."""

    if len(images) != len(rows):
        raise ValueError(f"text_gallery_html: {len(images)} images but {len(rows)} rows of text")
    if not images:
        raise ValueError("text_gallery_html: nothing to show")
    parts = ['<table style="border-collapse:collapse;font-size:12px">']
    if title:
        parts.append(f'<caption style="text-align:left;font-weight:bold">{html.escape(title)}</caption>')
    for image, row in zip(images, rows, strict=True):
        lines = "".join(
            f'<div style="margin:2px 0"><b>{html.escape(label)}:</b> {text}</div>'
            for label, text in row.items()
        )
        parts.append(
            '<tr style="border-top:1px solid #ddd">'
            f'<td style="padding:4px;vertical-align:top">{image_html(image, size, fmt)}</td>'
            f'<td style="padding:4px;text-align:left;vertical-align:top">{lines}</td></tr>'
        )
    parts.append("</table>")
    return "".join(parts)


def unnormalize_images(
    pixel_values: Any,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Any:
    """Undo the CLIP normalisation of ``pixel_values`` (``[N, 3, H, W]`` or ``[3, H, W]``, a tensor or array):
    ``x * std + mean``, clipped to 0..1, as ``uint8`` RGB arrays ``[N, H, W, 3]`` (or ``[H, W, 3]``).

    ``mean``/``std`` default to CLIP's own statistics (``sevlm_lib.models.vision.CLIP_MEAN``/``CLIP_STD``).
    """


    arr = np.asarray(
        pixel_values.detach().cpu() if hasattr(pixel_values, "detach") else pixel_values, dtype=np.float64
    )
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(
            f"unnormalize_images: expected pixel values of shape [N, 3, H, W] or [3, H, W], got {arr.shape}"
        )
    m = np.asarray(CLIP_MEAN if mean is None else mean, dtype=np.float64).reshape(1, 3, 1, 1)
    s = np.asarray(CLIP_STD if std is None else std, dtype=np.float64).reshape(1, 3, 1, 1)
    rgb = np.clip(arr * s + m, 0.0, 1.0).transpose(0, 2, 3, 1)
    out = np.rint(rgb * 255).astype(np.uint8)
    return out[0] if single else out


def plot_attention_overlay(
    image: Any,
    attention: Any,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    alpha: float = 0.55,
    cmap: str = "magma",
    vmax: float | None = None,
    colorbar: bool = False,
) -> Axes:
    """An image with an attention map over its patches drawn on top (bilinear upsampling).

    ``image``: a PIL image, an ``[H, W, 3]`` array, or a ``[3, H, W]`` tensor (scaled to 0..1 for display).
    ``attention``: ``P`` weights (a square number: the patch grid, row by row) or a ``[g, g]`` grid.
    ``vmax``: draw the weights on the fixed scale ``0..vmax`` (give several maps the same ``vmax`` to compare
    them; a uniform map then looks uniform). ``None`` stretches this map's own minimum..maximum to the full
    colour range, which makes any map, even a nearly uniform one, look as if it had hot spots.
    ``colorbar``: add a colour bar in attention weights.
    """

    arr = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image, dtype=float)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[2] != 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"plot_attention_overlay: expected an RGB image, got shape {arr.shape}")
    lo, hi = arr.min(), arr.max()
    arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    att = np.asarray(attention.detach().cpu() if hasattr(attention, "detach") else attention, dtype=float)
    if att.ndim == 1:
        side = int(round(len(att) ** 0.5))
        if side * side != len(att):
            raise ValueError(f"plot_attention_overlay: {len(att)} weights do not form a square patch grid")
        att = att.reshape(side, side)
    if att.ndim != 2:
        raise ValueError(
            f"plot_attention_overlay: expected P weights or a [g, g] grid, got shape {att.shape}"
        )
    h, w = arr.shape[:2]
    if vmax is not None:
        if not vmax > 0:
            raise ValueError(f"plot_attention_overlay: vmax={vmax!r}, expected a positive number")
        lo, span = 0.0, float(vmax)
    else:
        lo, span = float(att.min()), float(att.max() - att.min())
    scaled = np.clip((att - lo) / span, 0.0, 1.0) if span > 0 else np.zeros_like(att)
    up = np.asarray(Image.fromarray((scaled * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)) / 255.0
    if ax is None:
        _fig, ax = plt.subplots(figsize=(2.2, 2.2))
    ax.imshow(arr)
    shown = ax.imshow(up * span + lo, cmap=cmap, alpha=alpha, vmin=lo, vmax=lo + span if span > 0 else lo + 1)
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
