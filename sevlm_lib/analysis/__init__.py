"""Analyses the notebooks run on trained models: the VAD head's predictions (04), the contrastive head's
embeddings and control negatives (05), the losses' gradients on the decoder, and the comparison of every
model (07). They sit above the pipeline and use it."""

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
from sevlm_lib.analysis.contrastive import (
    PairEmbeddings,
    control_rejection,
    control_scores,
    pair_embeddings,
    sequence_embeddings,
    split_control_rejection,
)
from sevlm_lib.analysis.gradients import loss_gradients, loss_weights
from sevlm_lib.analysis.vad_head import teacher_forced_vad

__all__ = [
    "ImageOnlyClassifier",
    "MemoCaptionScorer",
    "PairEmbeddings",
    "control_rejection",
    "control_scores",
    "cross_attention_maps",
    "evaluate_runs",
    "image_histograms",
    "loss_gradients",
    "loss_weights",
    "pair_embeddings",
    "sat_predictions",
    "seeds_table",
    "sequence_embeddings",
    "split_control_rejection",
    "teacher_forced_vad",
    "train_image_only_classifier",
]
