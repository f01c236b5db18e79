"""Analyses the notebooks run on trained models: the VAD head's predictions (04), the contrastive head's
embeddings (05), and the comparison of every model (07). They sit above the pipeline and use it."""

from sevlm_lib.analysis.comparison import (
    ImageOnlyClassifier,
    MemoCaptionScorer,
    cross_attention_maps,
    evaluate_runs,
    image_histograms,
    sat_predictions,
    seeds_table,
    train_image_only_classifier,
)
from sevlm_lib.analysis.contrastive import PairEmbeddings, pair_embeddings, sequence_embeddings
from sevlm_lib.analysis.vad_head import teacher_forced_vad

__all__ = [
    "ImageOnlyClassifier",
    "MemoCaptionScorer",
    "PairEmbeddings",
    "cross_attention_maps",
    "evaluate_runs",
    "image_histograms",
    "pair_embeddings",
    "sat_predictions",
    "seeds_table",
    "sequence_embeddings",
    "teacher_forced_vad",
    "train_image_only_classifier",
]
