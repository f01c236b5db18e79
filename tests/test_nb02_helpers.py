"""Helpers added for notebook 02 (the baseline captioner): un-normalising images and two plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sevlm_lib.emotions import EMOTION_COLORS, EMOTIONS  # noqa: E402
from sevlm_lib.engine import History  # noqa: E402
from sevlm_lib.models.vision import CLIP_MEAN, CLIP_STD  # noqa: E402
from sevlm_lib.viz import plot_emotion_distribution, plot_seed_losses, unnormalize_images  # noqa: E402


def test_unnormalize_inverts_the_clip_transform():
    from PIL import Image

    from sevlm_lib.models.vision import image_transform

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels = image_transform(32)(Image.fromarray(rgb))
    back = unnormalize_images(pixels)
    assert back.shape == (32, 32, 3) and back.dtype == np.uint8
    # bicubic resize to the same size is the identity, so only rounding separates the two
    assert np.abs(back.astype(int) - rgb.astype(int)).max() <= 1
    batch = unnormalize_images(torch.stack([pixels, pixels]))
    assert batch.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(batch[1], back)


def test_unnormalize_uses_given_statistics_and_clips():
    zeros = np.zeros((1, 3, 2, 2))
    out = unnormalize_images(zeros)
    expected = np.rint(np.asarray(CLIP_MEAN) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[0, 0, 0], expected)
    imagenet = unnormalize_images(zeros, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    assert not np.array_equal(imagenet, out)
    big = unnormalize_images(np.full((3, 2, 2), 100.0))
    assert (big == 255).all()
    assert CLIP_STD[0] > 0


def test_unnormalize_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, 3, H, W\]"):
        unnormalize_images(np.zeros((2, 4, 8, 8)))
    with pytest.raises(ValueError, match="got"):
        unnormalize_images(np.zeros((8, 8)))


def _history(values):
    return History(steps=[{"step": i + 1, "loss": v, "xe": v} for i, v in enumerate(values)])


def test_plot_seed_losses_draws_one_smoothed_line_per_run():
    runs = {0: _history([3.0, 2.0, 1.0]), 1: pd.DataFrame({"step": [1, 2], "loss": [4.0, 1.0]})}
    ax = plot_seed_losses(runs, smooth=0.5)
    labelled = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
    assert [line.get_label() for line in labelled] == ["0", "1"]
    assert len(ax.get_lines()) == 4  # raw + smoothed per run
    np.testing.assert_allclose(labelled[1].get_xdata(), [1, 2])
    assert labelled[0].get_ydata()[0] == pytest.approx(3.0)
    assert ax.get_ylabel() == "loss"
    plt.close("all")


def test_plot_seed_losses_errors():
    with pytest.raises(ValueError, match="no runs"):
        plot_seed_losses({})
    with pytest.raises(KeyError, match="vad"):
        plot_seed_losses({0: _history([1.0])}, column="vad")
    plt.close("all")


def test_plot_emotion_distribution_bars_and_gold_outline():
    probs = np.linspace(1, 9, 9)
    probs = probs / probs.sum()
    ax = plot_emotion_distribution(torch.tensor(probs), gold="fear", title="one artwork")
    bars = ax.patches
    assert len(bars) == 9
    np.testing.assert_allclose([b.get_height() for b in bars], probs)
    fear = bars[EMOTIONS.index("fear")]
    assert fear.get_linewidth() > bars[0].get_linewidth()
    assert matplotlib.colors.to_hex(bars[0].get_facecolor()) == EMOTION_COLORS[EMOTIONS[0]]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(EMOTIONS)
    plt.close("all")


def test_plot_emotion_distribution_errors():
    with pytest.raises(ValueError, match="9 probabilities"):
        plot_emotion_distribution([0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        plot_emotion_distribution([-1.0] + [0.0] * 8)
    with pytest.raises(ValueError, match="unknown gold"):
        plot_emotion_distribution([1 / 9] * 9, gold="happiness")
    plt.close("all")
