"""Helpers of notebook 07: plots, the HTML gallery, the SAT recipe, the image-only classifier, cached
comparison rows, the memoising scorer, cross-attention maps, and Emo-Align's classifier on ArtEmis-mini."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from sevlm_lib import analysis, metrics, pipeline, recipes, viz  # noqa: E402  # noqa: E402
from tests.model_fixtures import small_course_data  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def close_figures():
    """Close the figures a test drew."""
    yield
    plt.close("all")


# ---------------------------------------------------------------------------------------------------------
# plots and HTML
# ---------------------------------------------------------------------------------------------------------


def test_confusion_heatmap_normalises_rows():
    conf = pd.DataFrame([[3, 1, 0], [0, 0, 0], [2, 2, 4]], index=["a", "b", "c"], columns=["a", "b", "c"])
    ax = viz.plot_confusion_heatmap(conf, title="t")
    shown = np.asarray(ax.collections[0].get_array()).reshape(3, 3)
    np.testing.assert_allclose(shown, [[0.75, 0.25, 0], [0, 0, 0], [0.25, 0.25, 0.5]])
    assert [t.get_text() for t in ax.texts][:3] == ["3", "1", "0"]  # counts printed in the cells
    raw = viz.plot_confusion_heatmap(conf, normalize=False)
    np.testing.assert_allclose(np.asarray(raw.collections[0].get_array()).reshape(3, 3), conf.to_numpy())
    with pytest.raises(ValueError, match="non-negative"):
        viz.plot_confusion_heatmap(-conf)


def test_metric_bars_heights_and_error_bars():
    rows = [
        {"model": m, "seed": s, "x": v + s, "y": 2 * v}
        for m, v in (("A", 1.0), ("B", 3.0))
        for s in (0, 1, 2)
    ]
    summary = metrics.summarize_seeds(rows, by=["model"], metrics=["x", "y"])
    ax = viz.plot_metric_bars(summary, ["x", "y"], models=["B", "A"])
    from matplotlib.container import BarContainer

    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 2
    assert [r.get_height() for r in bars[0].patches] == pytest.approx([4.0, 6.0])  # B: mean x, mean y
    segments = bars[1].errorbar.lines[2][0].get_segments()  # A's error bars
    assert [s[1][1] - s[0][1] for s in segments] == pytest.approx([2.0, 0.0])  # 2 * std (1 and 0)
    with pytest.raises(ValueError, match="no column"):
        viz.plot_metric_bars(summary, ["z"])
    with pytest.raises(ValueError, match="not in the summary"):
        viz.plot_metric_bars(summary, ["x"], models=["C"])


def test_attention_overlay():
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    att = torch.zeros(16)
    att[0] = 1.0  # top-left patch
    ax = viz.plot_attention_overlay(image, att, title="w")
    overlay = ax.images[1].get_array()
    assert overlay.shape == (40, 40) and overlay[0, 0] > 0.9 and overlay[-1, -1] < 0.1
    tensor_image = torch.rand(3, 32, 32)
    assert viz.plot_attention_overlay(tensor_image, att.view(4, 4)).images[0].get_array().shape == (32, 32, 3)
    with pytest.raises(ValueError, match="square"):
        viz.plot_attention_overlay(image, torch.ones(15))


def test_text_gallery_html():
    images = [np.full((50, 80, 3), 200, dtype=np.uint8)]
    html = viz.text_gallery_html(images, [{"human <1>": "<b>calm</b> water"}], size=40, title="T & co")
    assert html.count("<img") == 1 and "data:image/png;base64," in html and 'width="40" height="25"' in html
    assert "human &lt;1&gt;" in html and "<b>calm</b> water" in html and "T &amp; co" in html
    small = viz.text_gallery_html(images, [{"x": "y"}], size=40, fmt="jpeg")
    assert "data:image/jpeg;base64," in small
    with pytest.raises(ValueError, match="2 rows"):
        viz.text_gallery_html(images, [{}, {}])
    with pytest.raises(ValueError, match="fmt"):
        viz.image_html(images[0], fmt="gif")


# ---------------------------------------------------------------------------------------------------------
# recipes on a small ArtEmis-mini
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return small_course_data(tmp_path_factory.mktemp("course07"))


def test_emo_align_classifier_beats_majority_on_artemis_mini(small_data):
    clf = pipeline.train_emotion_classifier(small_data)
    train, test = small_data.split("train"), small_data.split("test")
    accuracy = clf.accuracy(list(test["utterance"]), list(test["emotion"]))
    majority = metrics.majority_baseline(list(train["emotion"]), list(test["emotion"]))
    assert accuracy > majority + 0.15, (accuracy, majority)


def test_image_only_classifier_matches_the_baseline_module(small_data):
    from sevlm_lib.baselines import image_only_accuracy

    train_features = analysis.image_histograms(small_data, "train")
    clf = analysis.train_image_only_classifier(small_data, seed=0, epochs=100, train_features=train_features)
    keys = small_data.artwork_keys("test")
    pred = clf.predict(pipeline.artwork_images(small_data, keys))
    gold = small_data.gold("test")
    ours = metrics.emotion_accuracy(pred, [gold[k] for k in keys])
    cols = ["art_style", "painting", "emotion", "utterance", "repetition"]
    reference = image_only_accuracy(
        small_data.annotations[cols], pipeline.image_root_for(small_data.settings), epochs=100
    )
    assert ours == pytest.approx(reference["image_only_acc"])
    proba = clf.predict_proba(pipeline.artwork_images(small_data, keys[:3]))
    assert proba.shape == (3, 9) and np.allclose(proba.sum(1), 1)
    with pytest.raises(ValueError, match="train_features"):
        analysis.train_image_only_classifier(small_data, train_features=analysis.image_histograms(small_data, "test"))


def test_variant_configs_have_their_run_names():
    for name in recipes.SEVLM_VARIANTS:
        assert recipes.run_name(recipes.variant_config("tiny", name)) == name
    with pytest.raises(ValueError, match="unknown variant"):
        recipes.variant_config("tiny", "+everything")


def test_sat_trains_loads_and_is_evaluated_with_a_cache(small_data):
    recipe = recipes.recipe_for("tiny", max_steps=3, batch_size=8)
    first = pipeline.train_sat(small_data, 0, recipe, name="t-sat")
    assert first.history.finished and len(first.history.steps) == 3
    assert {"xe", "attention"} <= set(first.history.steps[-1])
    again = pipeline.train_sat(small_data, 0, recipe, name="t-sat")  # finished: loaded, not retrained
    for (n, a), (_, b) in zip(
        first.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    grounding = analysis.train_image_only_classifier(small_data, seed=0, epochs=50)
    preds = analysis.sat_predictions(again.model, small_data, "test", grounding=grounding, max_new_tokens=5)
    keys = small_data.artwork_keys("test")
    assert list(zip(preds["art_style"], preds["painting"], strict=True)) == keys
    assert list(preds["emotion"]) == grounding.predict(pipeline.artwork_images(small_data, keys))
    assert (preds["explanation"].str.split().str.len() <= 5).all()
    baseline = pipeline.train_model(
        small_data, recipes.variant_config("tiny", "baseline"), recipe, seed=0, name="t-base"
    )
    sevlm_cols = pipeline.generate_for_split(baseline.model, small_data, "test", max_new_tokens=5).columns
    assert list(preds.columns) == list(sevlm_cols)

    scorer = analysis.MemoCaptionScorer(tokenizer="simple", meteor=False)
    with pytest.raises(ValueError, match="grounding"):
        analysis.evaluate_runs(small_data, [again], scorer=scorer, classifier=None)
    results = analysis.evaluate_runs(
        small_data,
        [again, baseline],
        scorer=scorer,
        classifier=None,
        grounding={0: grounding},
        max_new_tokens=5,
    )
    assert [r["model"] for r, _ in results] == ["t-sat", "t-base"]
    row, sat_preds = results[0]
    assert row["emo_acc"] == pytest.approx(
        metrics.emotion_accuracy(list(sat_preds["emotion"]), [small_data.gold("test")[k] for k in keys])
    )
    assert "meteor" not in row and row["n_params"] == again.model.count_parameters()["trainable"]
    cache = small_data.settings.runs_dir / "eval" / "t-sat" / "seed-0-simple.json"
    assert cache.is_file()
    # the second call reads the cache (no generation: a model that would fail is never called)
    again.model.generate = None
    cached = analysis.evaluate_runs(
        small_data, [again], scorer=scorer, classifier=None, grounding={0: grounding}, max_new_tokens=5
    )
    assert cached[0][1].equals(sat_preds) and cached[0][0]["bleu1"] == row["bleu1"]


def test_memo_scorer_gives_the_same_scores_and_tokenizes_once(monkeypatch):
    preds = {1: "the calm water, so quiet", 2: "a dark and scary night"}
    refs = {1: ["calm water makes me feel at peace", "so quiet"], 2: ["the night is dark", "scary!"]}
    plain = metrics.CaptionScorer(tokenizer="simple", meteor=False).score(preds, refs)
    memo = analysis.MemoCaptionScorer(tokenizer="simple", meteor=False)
    calls = []
    real = metrics.CaptionScorer.tokenize
    monkeypatch.setattr(
        metrics.CaptionScorer, "tokenize", lambda self, texts: calls.append(len(texts)) or real(self, texts)
    )
    first = memo.score(preds, refs)
    second = memo.score(preds, refs)
    assert calls == [6]  # six distinct texts, tokenized once
    for k in ("bleu1", "bleu4", "rouge_l", "cider"):
        assert first[k] == second[k] == plain[k], k


def test_cross_attention_maps_follow_greedy_decoding(small_data):
    from sevlm_lib.generation import generate

    recipe = recipes.recipe_for("tiny", max_steps=3, batch_size=8)
    trained = pipeline.train_model(small_data, recipes.variant_config("tiny", "baseline"), recipe, seed=0, name="t-base")
    model = trained.model
    source = pipeline.image_source_for(model, small_data)
    batch = source.batch(small_data.artwork_keys("test")[:1])
    impl = model.decoder.config._attn_implementation
    words, maps = analysis.cross_attention_maps(model, small_data.builder, batch, max_new_tokens=8)
    ids = generate(model, small_data.builder, batch, max_new_tokens=8).token_ids[0]
    assert words == [small_data.tokenizer.decode([t]).strip() for t in ids]
    assert maps.shape == (len(ids), model.config.vision.num_patches)
    torch.testing.assert_close(maps.sum(-1), torch.ones(len(ids)))
    assert model.decoder.config._attn_implementation == impl  # restored
    _, per_head = analysis.cross_attention_maps(model, small_data.builder, batch, max_new_tokens=8, average=False)
    cfg = model.config.decoder
    assert per_head.shape == (cfg.n_layer, cfg.n_head, len(ids), model.config.vision.num_patches)
    torch.testing.assert_close(per_head.mean(dim=(0, 1)), maps)
    with pytest.raises(ValueError, match="exactly one image"):
        analysis.cross_attention_maps(model, small_data.builder, source.batch(small_data.artwork_keys("test")[:2]))


def test_attention_overlay_on_a_fixed_scale_draws_a_uniform_map_flat() -> None:
    """With ``vmax`` every map shares one colour scale: a uniform map stays flat (1/16 everywhere) instead of
    being stretched into hot spots, and the colour bar is in attention weights."""
    import matplotlib.pyplot as plt

    image = np.zeros((32, 32, 3))
    uniform = torch.full((16,), 1 / 16)
    ax = viz.plot_attention_overlay(image, uniform, vmax=0.25, colorbar=True)
    overlay = ax.images[1]
    assert np.allclose(overlay.get_array(), 1 / 16, atol=1 / 255) and overlay.get_clim() == (0.0, 0.25)
    assert len(ax.figure.axes) == 2  # the image and its colour bar
    peaked = torch.zeros(16)
    peaked[5] = 1.0
    top = float(viz.plot_attention_overlay(image, peaked, vmax=0.25).images[1].get_array().max())
    assert 0.2 < top <= 0.25  # a weight of 1 is clipped to the scale's top (bilinear smoothing lowers the peak)
    with pytest.raises(ValueError, match="vmax"):
        viz.plot_attention_overlay(image, uniform, vmax=0)
    plt.close("all")
