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

``rare_words=True`` makes the **rare-words condition** (:mod:`~sevlm_lib.data.mini.rare`), a positive control
for VAD fusion: the validation and test explanations use held-out feeling words that the training
explanations never (or, with ``rare_train_rate``, rarely) use. It lives in its own folder,
``{data_dir}/artemis_mini_rare``; :func:`rare_word_share` measures what it claims.

The code is split by concern: :mod:`~sevlm_lib.data.mini.world` (palettes, motifs, shapes, styles),
:mod:`~sevlm_lib.data.mini.text` (feeling words, grammar, colour names), :mod:`~sevlm_lib.data.mini.calibration`
(:class:`MiniCalibration` and the argument checks), :mod:`~sevlm_lib.data.mini.artworks` (sampling),
:mod:`~sevlm_lib.data.mini.rare` (the rare-words condition),
:mod:`~sevlm_lib.data.mini.drawing` (rendering), :mod:`~sevlm_lib.data.mini.annotators` (labels and
explanations) and :mod:`~sevlm_lib.data.mini.build` (writing the files). Every name is importable from here.
"""

from __future__ import annotations

from sevlm_lib.data.mini.annotators import FeelingVocabulary, annotate, explain
from sevlm_lib.data.mini.artworks import Artwork, sample_artworks
from sevlm_lib.data.mini.build import (
    ARTEMIS_COLUMNS,
    CSV_NAME,
    GENERATOR_JSON,
    GENERATOR_VERSION,
    IMAGES_DIR,
    MANIFEST_NAME,
    README_NAME,
    build_artemis_mini,
    ensure_artemis_mini,
    generator_params,
    lexicon_licence,
    make_artemis_mini,
    mini_dir,
    mini_image_root,
    verify_manifest,
)
from sevlm_lib.data.mini.calibration import (
    MiniCalibration,
    check_calibration,
    check_mini_args,
    check_rare_args,
)
from sevlm_lib.data.mini.drawing import RENDER_SUPERSAMPLING, RGB, hsv_rgb, render_artwork
from sevlm_lib.data.mini.rare import (
    DESCRIPTION_WORDS,
    HELD_OUT_SPLITS,
    RARE_MINI_DIR_NAME,
    HeldOutWords,
    held_out_artworks,
    held_out_token_coverage,
    rare_word_share,
)
from sevlm_lib.data.mini.text import (
    FEELING_WORDS,
    HELD_OUT_FEELING_WORDS,
    TEMPLATES,
    UTTERANCE_WORDS,
    color_name,
)
from sevlm_lib.data.mini.world import (
    ART_STYLES,
    IMAGE_SIDE_RANGE,
    MOTIFS,
    N_ARTISTS,
    PALETTE_RANGES,
    SHAPES,
    UNICODE_ARTIST,
    VALDEZ_MEHRABIAN_1994,
    ArtStyle,
    Motif,
    ShapeKind,
    artist_name,
    palette_pad,
    palette_zscores,
)

__all__ = [
    "ARTEMIS_COLUMNS",
    "ART_STYLES",
    "CSV_NAME",
    "DESCRIPTION_WORDS",
    "FEELING_WORDS",
    "GENERATOR_JSON",
    "GENERATOR_VERSION",
    "HELD_OUT_FEELING_WORDS",
    "HELD_OUT_SPLITS",
    "IMAGES_DIR",
    "IMAGE_SIDE_RANGE",
    "MANIFEST_NAME",
    "MOTIFS",
    "N_ARTISTS",
    "PALETTE_RANGES",
    "RARE_MINI_DIR_NAME",
    "README_NAME",
    "RENDER_SUPERSAMPLING",
    "RGB",
    "SHAPES",
    "TEMPLATES",
    "UNICODE_ARTIST",
    "UTTERANCE_WORDS",
    "VALDEZ_MEHRABIAN_1994",
    "ArtStyle",
    "Artwork",
    "FeelingVocabulary",
    "HeldOutWords",
    "MiniCalibration",
    "Motif",
    "ShapeKind",
    "annotate",
    "artist_name",
    "build_artemis_mini",
    "check_calibration",
    "check_mini_args",
    "check_rare_args",
    "color_name",
    "ensure_artemis_mini",
    "explain",
    "generator_params",
    "held_out_artworks",
    "held_out_token_coverage",
    "hsv_rgb",
    "lexicon_licence",
    "make_artemis_mini",
    "mini_dir",
    "mini_image_root",
    "palette_pad",
    "palette_zscores",
    "rare_word_share",
    "render_artwork",
    "sample_artworks",
    "verify_manifest",
]
