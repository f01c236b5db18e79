"""Helpers added for notebook 05 (the contrastive head): ranking accuracy, pair embeddings, PCA, kNN probe."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sevlm_lib import analysis, pipeline, recipes  # noqa: E402
from sevlm_lib.emotions import EMOTION_COLORS  # noqa: E402
from sevlm_lib.metrics import knn_accuracy  # noqa: E402
from sevlm_lib.models.heads import masked_mean, ranking_accuracy  # noqa: E402
from sevlm_lib.viz import pca_project, plot_emotion_scatter, plot_variant_curves  # noqa: E402
from tests.model_fixtures import small_course_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ ranking_accuracy
def test_ranking_accuracy_counts_each_negative_and_both() -> None:
    pos = torch.tensor([3.0, 1.0, 0.0, 2.0])
    neg1 = torch.tensor([1.0, 2.0, -1.0, 2.0])  # beaten by rows 0, 2 (row 3 is a tie)
    neg2 = torch.tensor([0.0, 0.0, 1.0, 1.0])  # beaten by rows 0, 1, 3
    assert ranking_accuracy(pos, neg1, neg2) == {"emotion": 0.5, "visual": 0.75, "both": 0.25}


def test_ranking_accuracy_constant_scorer_gets_zero_and_shapes_are_checked() -> None:
    same = torch.ones(5)
    assert ranking_accuracy(same, same, same) == {"emotion": 0.0, "visual": 0.0, "both": 0.0}
    with pytest.raises(ValueError, match="ranking_accuracy"):
        ranking_accuracy(torch.ones(3), torch.ones(4), torch.ones(3))
    with pytest.raises(ValueError, match="non-empty"):
        ranking_accuracy(torch.ones(0), torch.ones(0), torch.ones(0))


def test_ranking_accuracy_of_random_scores_is_near_chance() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 20000, generator=g)
    acc = ranking_accuracy(s[0], s[1], s[2])
    assert abs(acc["emotion"] - 0.5) < 0.02 and abs(acc["visual"] - 0.5) < 0.02
    assert abs(acc["both"] - 1 / 3) < 0.02


# ------------------------------------------------------------------ pca_project
def test_pca_project_matches_the_covariance_eigenvectors() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) * np.array([5.0, 2.0, 1.0, 0.5, 0.1]) + 3.0
    coords, explained = pca_project(x, k=2)
    cov = np.cov(x - x.mean(0), rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    top = vectors[:, ::-1][:, :2]
    expected = (x - x.mean(0)) @ top
    for j in range(2):  # equal up to the sign of each component
        assert (
            min(np.abs(coords[:, j] - expected[:, j]).max(), np.abs(coords[:, j] + expected[:, j]).max())
            < 1e-8
        )
    np.testing.assert_allclose(explained, values[::-1][:2] / values.sum(), rtol=1e-8)
    assert explained[0] > explained[1]


def test_pca_project_signs_are_fixed_and_bad_input_fails() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    a, _ = pca_project(x)
    perm = rng.permutation(30)
    b, _ = pca_project(x[perm])  # the same cloud in another row order: the same picture, not a mirror image
    assert a.shape == (30, 2) and np.isfinite(a).all()
    np.testing.assert_allclose(a[perm], b, atol=1e-10)
    with pytest.raises(ValueError, match="pca_project"):
        pca_project(np.ones(5))
    with pytest.raises(ValueError, match="pca_project"):
        pca_project(x, k=5)


# ------------------------------------------------------------------ plot_emotion_scatter
def test_plot_emotion_scatter_colours_points_by_emotion() -> None:
    emotions = ["awe", "fear", "awe", "something else"]
    ax = plot_emotion_scatter(np.arange(8.0).reshape(4, 2), emotions, legend=True, title="t")
    drawn = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
    assert drawn == {"awe": 2, "fear": 1, "something else": 1}
    colours = {c.get_label(): matplotlib.colors.to_hex(c.get_facecolor()[0]) for c in ax.collections}
    assert colours == {e: EMOTION_COLORS[e] for e in drawn}
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="unknown emotion"):
        plot_emotion_scatter(np.zeros((1, 2)), ["happiness"])
    with pytest.raises(ValueError, match="expected \\[N, 2\\]"):
        plot_emotion_scatter(np.zeros((2, 3)), ["awe", "awe"])


# ------------------------------------------------------------------ plot_variant_curves
def test_plot_variant_curves_one_line_per_run_and_colour_per_variant() -> None:
    import pandas as pd

    frame = pd.DataFrame({"step": np.arange(1, 11), "xe": np.linspace(3, 1, 10), "grad_norm": np.ones(10)})
    logs = {("baseline", 0): frame, ("baseline", 1): frame, ("+head", 0): frame * 1.0}
    axes = plot_variant_curves(logs, ["xe", "grad_norm"], smooth=0.0, hlines={"grad_norm": 1.0})
    assert len(axes) == 2
    lines = list(axes[0].get_lines())
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), frame["xe"])  # smooth=0 draws the raw values
    colours = [ln.get_color() for ln in lines]
    assert colours[0] == colours[1] != colours[2]
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["baseline", "+head"]
    assert len(axes[1].get_lines()) == 4  # three runs + the dotted reference line
    plt.close(axes[0].figure)
    with pytest.raises(KeyError, match="vad"):
        plot_variant_curves(logs, ["vad"])
    with pytest.raises(ValueError, match="no runs"):
        plot_variant_curves({}, ["xe"])


# ------------------------------------------------------------------ knn_accuracy
def test_knn_accuracy_separated_and_shuffled_labels() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8)) * 0.1 + np.eye(8)[0]
    b = rng.normal(size=(40, 8)) * 0.1 + np.eye(8)[1]
    x = np.vstack([a, b])
    labels = ["awe"] * 40 + ["fear"] * 40
    assert knn_accuracy(x, labels, k=5) == 1.0
    shuffled = list(np.random.default_rng(1).permutation(labels))
    assert knn_accuracy(x, shuffled, k=5) < 0.75


def test_knn_accuracy_groups_hide_near_duplicates() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(30, 6))
    x = np.vstack([base, base + 1e-4 * rng.normal(size=base.shape)])  # each row has a twin
    labels = [f"l{i % 10}" for i in range(30)] * 2  # labels unrelated to position, but twins share one
    groups = list(range(30)) * 2
    assert knn_accuracy(x, labels, k=1) == 1.0  # read off the twin
    assert knn_accuracy(x, labels, k=1, groups=groups) < 0.5  # twins hidden: no real structure left
    with pytest.raises(ValueError, match="k=60"):
        knn_accuracy(x, labels, k=60)
    with pytest.raises(ValueError, match="groups"):
        knn_accuracy(x, labels, groups=[0])


# ------------------------------------------------------------------ pair_embeddings


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return small_course_data(tmp_path_factory.mktemp("nb05"))


def test_pair_embeddings_shapes_order_and_scores(small_data) -> None:
    items = small_data.pair_items("train")
    model = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=0)
    batch_size = 4 if len(items) % 4 != 1 else 5
    state = torch.get_rng_state()
    emb = analysis.pair_embeddings(model, small_data, "train", batch_size=batch_size, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global random state is left alone
    n, d = 2 * len(items), model.d_model
    assert emb.image.shape == emb.emotion.shape == emb.explanation.shape == (n, d)
    t = emb.table
    assert len(t) == n and list(t["slot"]) == [0, 1] * len(items)
    assert list(t["painting"][::2]) == [it.painting for it in items]
    assert (t["emotion"].to_numpy()[::2] != t["emotion"].to_numpy()[1::2]).all()  # two different emotions
    assert torch.equal(emb.image[::2], emb.image[1::2])
    assert set(emb.scores) == {"pos", "neg_emotion", "neg_visual"} and all(
        len(v) == n for v in emb.scores.values()
    )
    with torch.no_grad():  # the positive score is the scorer applied to the returned embeddings
        pos = model.scorer(emb.image, emb.emotion, emb.explanation)
        neg1 = model.scorer(emb.image, emb.emotion, emb.explanation[torch.arange(n) ^ 1])
    torch.testing.assert_close(pos, emb.scores["pos"], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(neg1, emb.scores["neg_emotion"], rtol=1e-4, atol=1e-5)
    again = analysis.pair_embeddings(model, small_data, "train", batch_size=batch_size, seed=3)
    assert torch.equal(again.scores["neg_visual"], emb.scores["neg_visual"])
    assert t.equals(again.table)


def test_pair_embeddings_single_last_item_joins_and_baseline_has_no_scores(small_data) -> None:
    items = small_data.pair_items("train")
    n = len(items)
    size = next(b for b in range(2, n) if n % b == 1)
    base = pipeline.build_model(small_data, recipes.model_config_for("tiny"), seed=1)
    emb = analysis.pair_embeddings(base, small_data, "train", batch_size=size)
    assert emb.scores is None
    assert len(emb.table) == 2 * n  # nothing dropped
    assert emb.table["batch"].max() == n // size - 1  # the lone last item joined the batch before
    # the contrastive variant shares the trunk's initial weights, so its embeddings are the same
    con = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=1)
    other = analysis.pair_embeddings(con, small_data, "train", batch_size=size)
    torch.testing.assert_close(emb.explanation, other.explanation)
    # the explanation embedding is the masked mean of the hidden states (padding excluded)
    first = emb.table.iloc[0]
    seq = small_data.builder.encode(first["emotion"], first["utterance"])
    hidden = base(
        {
            **small_data.builder.collate([seq]),
            **pipeline.image_source_for(base, small_data).batch([(first["art_style"], first["painting"])]),
        }
    ).hidden_states
    mask = small_data.builder.collate([seq])["explanation_mask"]
    torch.testing.assert_close(masked_mean(hidden, mask)[0], emb.explanation[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        analysis.pair_embeddings(base, small_data, "train", batch_size=1)


def test_sequence_embeddings_match_pair_embeddings_and_respect_causality(small_data) -> None:
    model = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=2)
    images = pipeline.image_source_for(model, small_data)
    emb = analysis.pair_embeddings(model, small_data, "train", images=images)
    t = emb.table
    rows = [
        (e, u, (a, p))
        for a, p, e, u in t[["art_style", "painting", "emotion", "utterance"]].itertuples(index=False)
    ]
    seq = analysis.sequence_embeddings(model, small_data, rows, images=images, batch_size=7)
    torch.testing.assert_close(seq["emotion"], emb.emotion, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(seq["explanation"], emb.explanation, rtol=1e-4, atol=1e-5)
    # the partner's words after this sequence's own emotion: the emotion embedding cannot see the words
    swapped = [(rows[i][0], rows[i ^ 1][1], rows[i][2]) for i in range(len(rows))]
    sw = analysis.sequence_embeddings(model, small_data, swapped, images=images)
    torch.testing.assert_close(sw["emotion"], emb.emotion, rtol=1e-4, atol=1e-5)
    differ = torch.tensor([rows[i][1] != rows[i ^ 1][1] for i in range(len(rows))])
    assert differ.any()  # (a few annotations repeat their partner's words: those rows stay the same)
    assert (sw["explanation"] - emb.explanation)[differ].norm(dim=1).min() > 1e-4
    with pytest.raises(ValueError, match="no rows"):
        analysis.sequence_embeddings(model, small_data, [])


def test_split_control_rejection_covers_every_item(small_data) -> None:
    items = small_data.pair_items("train")
    model = pipeline.build_model(small_data, recipes.model_config_for("tiny", contrastive=True), seed=0)
    got = analysis.split_control_rejection(model, small_data, "train", batch_size=8, seed=1)
    assert got["n"] == 2 * len(items)
    assert all(0.0 <= got[k] <= 1.0 for k in ("words_swapped", "other_words", "prompt_swapped"))
    assert analysis.split_control_rejection(model, small_data, "train", batch_size=8, seed=1) == got
    with pytest.raises(ValueError, match="contrastive head"):
        base = pipeline.build_model(small_data, recipes.model_config_for("tiny"), seed=0)
        analysis.split_control_rejection(base, small_data, "train")
