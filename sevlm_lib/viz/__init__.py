"""Plots of the course: static matplotlib/seaborn figures that return their Axes and never call ``show()``.

Every function takes an optional ``ax`` to draw into and returns the Axes it drew on, so notebooks can
compose figures and tests can inspect them without a display.
"""

from sevlm_lib.viz.architecture import (
    main,
    plot_architecture,
    save_architecture_figure,
)
from sevlm_lib.viz.artworks import (
    display_image,
    image_html,
    plot_artwork_gallery,
    plot_attention_overlay,
    text_gallery_html,
    unnormalize_images,
)
from sevlm_lib.viz.curves import (
    plot_loss_curves,
    plot_metric_bars,
    plot_seed_losses,
    plot_variant_curves,
    smooth_series,
)
from sevlm_lib.viz.emotions import (
    VAD_DIMENSIONS,
    VADTriple,
    pca_project,
    plot_confusion_heatmap,
    plot_emotion_counts,
    plot_emotion_distribution,
    plot_emotion_scatter,
    plot_emotion_vad,
    plot_vad_trajectory,
    vad_words_html,
    valence_color,
)
from sevlm_lib.viz.memory import (
    plot_memory_breakdown,
)

__all__ = [
    "VADTriple",
    "VAD_DIMENSIONS",
    "display_image",
    "image_html",
    "main",
    "pca_project",
    "plot_architecture",
    "plot_artwork_gallery",
    "plot_attention_overlay",
    "plot_confusion_heatmap",
    "plot_emotion_counts",
    "plot_emotion_distribution",
    "plot_emotion_scatter",
    "plot_emotion_vad",
    "plot_loss_curves",
    "plot_memory_breakdown",
    "plot_metric_bars",
    "plot_seed_losses",
    "plot_vad_trajectory",
    "plot_variant_curves",
    "save_architecture_figure",
    "smooth_series",
    "text_gallery_html",
    "unnormalize_images",
    "vad_words_html",
    "valence_color",
]
