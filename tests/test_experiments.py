"""The recipe layer end to end on a small ArtEmis-mini: load, train a few steps, resume/load, evaluate."""

from __future__ import annotations

import pytest

from sevlm_lib import pipeline, recipes
from tests.model_fixtures import small_course_data


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return small_course_data(tmp_path_factory.mktemp("course"))


def test_course_data(small_data):
    d = small_data
    assert set(d.annotations["split"]) <= {"train", "val", "test", "rest"}
    assert len(d.artworks) == d.annotations.groupby(["art_style", "painting"]).ngroups
    assert d.token_vad[0].shape == (len(d.tokenizer), 3)
    assert d.token_vad[1].any()
    refs = d.references("test")
    assert refs and all(len(v) >= 1 for v in refs.values())
    assert 0 < pipeline.majority_accuracy(d) < 1


def test_train_load_and_evaluate(small_data):
    recipe = recipes.recipe_for("tiny", max_steps=4, batch_size=8)
    cfg = recipes.model_config_for("tiny", vad_fusion=True, vad_head=True, contrastive=True)
    first = pipeline.train_model(small_data, cfg, recipe, seed=0, name="t-full")
    assert first.history.finished and len(first.history.steps) == 4
    assert {"xe", "vad", "contrastive"} <= set(first.history.steps[-1])
    # a finished run is loaded, not retrained: same weights
    again = pipeline.train_model(small_data, cfg, recipe, seed=0, name="t-full")
    for (n, a), (_, b) in zip(
        first.model.state_dict().items(), again.model.state_dict().items(), strict=True
    ):
        assert (a == b).all(), n
    metrics, preds = pipeline.evaluate_model(again.model, small_data, "test", max_new_tokens=6)
    assert len(preds) == len(small_data.artwork_keys("test"))
    for k in ("emo_acc", "emo_acc_strict", "bleu4", "vad_err", "div_distinct"):
        assert k in metrics
    path = pipeline.write_metrics(small_data.settings, "99_test", {"emo_acc": metrics["emo_acc"]})
    assert pipeline.read_metrics(small_data.settings, "99_test") == {"emo_acc": metrics["emo_acc"]}
    assert path.name == "metrics.json"


def test_recipes():
    assert recipes.recipe_for("full").lr == 2e-5 and recipes.recipe_for("full").vad_lr == 4e-5
    with pytest.raises(ValueError, match="unknown profile"):
        recipes.recipe_for("huge")


def test_gradient_accumulation_reaches_the_trainer(small_data):
    """``Recipe.gradient_accumulation_steps`` (settable in a run config) makes each step read that many batches."""
    import json

    recipe = recipes.recipe_for("tiny", max_steps=2, batch_size=8, gradient_accumulation_steps=2)
    run = pipeline.train_model(small_data, recipes.model_config_for("tiny"), recipe, seed=0, name="t-accum")
    assert run.history.finished and len(run.history.steps) == 2
    folder = small_data.settings.checkpoint_dir / "t-accum" / "seed-0"
    state = json.loads((folder / (folder / "latest").read_text().strip() / "state.json").read_text())
    assert state["fingerprint_payload"]["config"]["gradient_accumulation_steps"] == 2
    assert (state["epoch"], state["step_in_epoch"]) == (0, 4)  # 2 steps x 2 batches


def test_validation_scorer_gives_evaluate_models_numbers(small_data):
    """The lean scorer that selects checkpoints skips the emotion distribution and diversity, but its four
    numbers are exactly evaluate_model's on the validation split."""
    recipe = recipes.recipe_for("tiny", max_steps=4, batch_size=8, max_new_tokens=8, eval_every=None)
    trained = pipeline.train_model(small_data, recipes.model_config_for("tiny"), recipe, seed=0, name="t-val-scorer")
    lean = pipeline.validation_scorer(small_data, recipe)(trained.model)
    full, preds = pipeline.evaluate_model(trained.model, small_data, "val", max_new_tokens=8)
    assert set(lean) == set(pipeline.VALIDATION_METRICS)
    for k in pipeline.VALIDATION_METRICS:
        assert lean[k] == pytest.approx(full[k], abs=1e-12, nan_ok=True), k
    bare = pipeline.generate_for_split(trained.model, small_data, "val", max_new_tokens=8, with_distribution=False)
    assert not any(c.startswith("p_") for c in bare.columns)
    assert list(bare["text"]) == list(preds["text"])


def test_a_model_is_decoded_once_per_split(small_data, monkeypatch):
    """evaluate_runs re-scores train_and_evaluate's saved predictions of the same run instead of decoding."""
    from sevlm_lib import analysis
    from sevlm_lib.analysis import comparison

    recipe = recipes.recipe_for("tiny", max_steps=3, batch_size=8, max_new_tokens=6, eval_every=None)
    cfg = recipes.model_config_for("tiny")
    (row,) = pipeline.train_and_evaluate(small_data, cfg, seeds=(0,), recipe=recipe, name="t-once")
    trained = pipeline.load_trained(small_data, cfg, 0, recipe, name="t-once")
    saved = pipeline.saved_predictions(small_data, trained, "test", 6)
    assert saved is not None and len(saved) == len(small_data.artwork_keys("test"))
    assert pipeline.saved_predictions(small_data, trained, "test", 7) is None  # another decoding length
    assert pipeline.saved_predictions(small_data, trained, "val", 6) is None  # another split

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(comparison, "generate_for_split", no_decoding)
    scorer = pipeline.metrics.CaptionScorer(tokenizer="simple", meteor=False)
    ((again, preds),) = analysis.evaluate_runs(
        small_data, [trained], scorer=scorer, classifier=None, max_new_tokens=6
    )
    assert list(preds["text"]) == list(saved["text"])
    assert again["emo_acc"] == row["emo_acc"] and again["bleu4"] == pytest.approx(row["bleu4"])
