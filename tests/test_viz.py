"""Smoke tests of the notebook-01 plotting helpers in ``sevlm_lib.viz``: they draw what they say, headless (matplotlib picks Agg without a display)."""

from __future__ import annotations

import io

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage

from sevlm_lib.emotions import EMOTION_COLORS, EMOTIONS
from sevlm_lib.viz import (
    display_image,
    plot_artwork_gallery,
    plot_emotion_counts,
    plot_emotion_vad,
    vad_words_html,
    valence_color,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _images(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8) for i in range(n)]


def test_gallery_one_image_per_panel_and_spare_panels_empty():
    fig = plot_artwork_gallery(_images(5), titles=[f"t{i}" for i in range(5)], ncols=4)
    axes = fig.axes
    assert len(axes) == 8  # 2 rows of 4
    n_images = [sum(isinstance(c, AxesImage) for c in ax.get_children()) for ax in axes]
    assert n_images == [1] * 5 + [0] * 3
    assert [ax.get_title() for ax in axes[:5]] == [f"t{i}" for i in range(5)]
    assert all(not ax.axison for ax in axes)


def test_gallery_title_colors_and_errors():
    fig = plot_artwork_gallery(_images(2), titles=["a", "b"], title_colors=["#ff0000", "#0000ff"])
    assert len(fig.axes) == 2
    assert matplotlib.colors.to_hex(fig.axes[1].title.get_color()) == "#0000ff"
    with pytest.raises(ValueError, match="2 images but 1 titles"):
        plot_artwork_gallery(_images(2), titles=["a"])
    with pytest.raises(ValueError, match="no images"):
        plot_artwork_gallery([])


def test_emotion_counts_nine_bars_in_order_with_course_colours():
    labels = ["awe", "awe", "fear", "something else"]
    ax = plot_emotion_counts(labels)
    heights = [p.get_height() for p in ax.patches]
    assert len(heights) == len(EMOTIONS)
    expected = [labels.count(e) for e in EMOTIONS]
    assert heights == expected
    colors = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert colors == [EMOTION_COLORS[e] for e in EMOTIONS]
    shares = [p.get_height() for p in plot_emotion_counts(labels, normalize=True).patches]
    assert sum(shares) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown emotion"):
        plot_emotion_counts(["joy"])


def test_emotion_vad_places_known_emotions_and_names_the_rest():
    vad = {e: (0.1 * i - 0.4, 0.05 * i, -0.1 * i) for i, e in enumerate(EMOTIONS[:8])}
    vad["something else"] = None
    ax = plot_emotion_vad(vad, background=[(0.0, 0.0, 0.0), (0.5, 0.5, 0.5)])
    points = [c.get_offsets() for c in ax.collections]
    assert [len(p) for p in points] == [2, 8]  # background cloud, then the emotion words
    np.testing.assert_allclose(points[1][:, 0], [v[0] for v in vad.values() if v is not None])
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.split("\n")[0] in EMOTIONS for t in texts) == 8
    assert any("something else" in t for t in texts)
    sizes = ax.collections[1].get_sizes()
    assert sizes[0] > sizes[-1]  # higher dominance, bigger marker


def test_vad_words_html_shades_known_words_and_escapes():
    html = vad_words_html([("happy", (0.87, 0.26, 0.55)), ("<the>", None), ("sad", (-0.72, -0.38, -0.29))])
    assert html.count("<span") == 3
    assert html.count("background:") == 2
    assert "&lt;the&gt;" in html and "<the>" not in html
    assert 'title="V +0.87, A +0.26, D +0.55"' in html
    assert valence_color(0.87) in html and valence_color(-0.72) in html
    assert valence_color(0.87) != valence_color(-0.72)
    assert valence_color(None) == "#e6e6e6"


def test_display_image_png_and_jpeg_from_figure_and_pil():
    from PIL import Image

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    png = display_image(fig)
    assert png.data[:8] == b"\x89PNG\r\n\x1a\n" and png.format == "png"
    assert not plt.fignum_exists(fig.number)  # the figure is closed, so no backend shows it twice
    pil = Image.fromarray(_images(1)[0])
    jpeg = display_image(pil, fmt="jpeg")
    assert jpeg.data[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(jpeg.data)).size == pil.size
    with pytest.raises(ValueError, match="fmt"):
        display_image(pil, fmt="gif")
    with pytest.raises(TypeError, match="Figure or a PIL image"):
        display_image([1, 2, 3])
