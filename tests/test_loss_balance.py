"""Loss balance and the contrastive shortcut: the losses' gradients on the decoder, negative 1 under the
positive's prompt, the control negatives, the heads' optimizer group, and the 3-wide VAD encoder's circle."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from sevlm_lib.analysis.contrastive import control_rejection, control_scores
from sevlm_lib.analysis.gradients import loss_gradients
from sevlm_lib.engine import TrainConfig, Trainer
from sevlm_lib.models.heads import masked_mean
from sevlm_lib.models.negatives import negative_one_rows, splice_sequences
from sevlm_lib.models.sevlm import SEVLMConfig, tiny_config
from sevlm_lib.models.vad_encoder import VADEncoder, VADEncoderConfig, encoder_output_norm, layernorm_circle
from sevlm_lib.recipes import Recipe, run_name
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import TEXTS, micro_model, pair_batch

# pair_batch's sequences: (emotion, index into TEXTS), ordered [a0, a0', a1, a1', a2, a2']
PAIRS = [("awe", 0), ("something else", 1), ("anger", 2), ("fear", 4), ("contentment", 3), ("sadness", 4)]


def ids_of(rows: dict[str, torch.Tensor], i: int) -> list[int]:
    return rows["input_ids"][i][rows["attention_mask"][i].bool()].tolist()


def hand_rows(builder: SequenceBuilder, pairs: list[tuple[str, int]]) -> dict[str, torch.Tensor]:
    return builder.collate([builder.encode(e, TEXTS[t]) for e, t in pairs])


# ------------------------------------------------------------------------------ the losses' gradients


def test_loss_gradients_match_autograd_and_add_up_to_the_total(tok, builder) -> None:
    model = micro_model(tok, vad_fusion=True, vad_head=True, contrastive=True)
    model.config.vad_loss_weight, model.config.contrastive_loss_weight = 0.5, 2.0
    batch = pair_batch(builder)
    params = [p for p in model.decoder.parameters() if p.requires_grad]
    got = loss_gradients(model, batch, seed=7, vectors=True)
    assert set(got["norm"]) == {"xe", "vad", "contrastive", "total"}
    assert set(got["cosine"]) == {("xe", "vad"), ("xe", "contrastive"), ("vad", "contrastive")}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        out = model(batch)
    weights = {"xe": 1.0, "vad": 0.5, "contrastive": 2.0}
    by_hand = {}
    for name, w in weights.items():
        g = torch.autograd.grad(w * out.losses[name], params, retain_graph=True, allow_unused=True)
        by_hand[name] = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params, strict=True)])
        assert got["norm"][name] == pytest.approx(float(by_hand[name].norm()), rel=1e-5)
    cos = F.cosine_similarity(by_hand["xe"], by_hand["contrastive"], dim=0)
    assert got["cosine"][("xe", "contrastive")] == pytest.approx(float(cos), abs=1e-5)
    total = torch.cat([g.reshape(-1) for g in torch.autograd.grad(out.loss, params)])
    summed = sum(got["grad"].values())
    torch.testing.assert_close(summed, total, rtol=1e-5, atol=1e-5)
    assert got["norm"]["total"] == pytest.approx(float(total.norm()), rel=1e-5)
    assert got["weights"] == weights


def test_loss_gradients_of_chosen_losses_and_parameters(tok, builder) -> None:
    model = micro_model(tok, contrastive=True)
    got = loss_gradients(model, pair_batch(builder), losses=("contrastive",), params=model.scorer)
    assert set(got["norm"]) == {"contrastive", "total"} and got["cosine"] == {}
    assert got["norm"]["contrastive"] > 0
    with pytest.raises(ValueError, match="vad"):
        loss_gradients(model, pair_batch(builder), losses=("vad",))


# ------------------------------------------------------------------------------ negative 1's prompt


def test_negative_prompt_switch_changes_only_the_prompt_tokens(tok, builder) -> None:
    batch = pair_batch(builder)
    batch["vad_values"] = torch.rand(*batch["input_ids"].shape, 3) * batch["attention_mask"][..., None]
    cfg = micro_model(tok).config
    ids = {"pad_id": cfg.pad_id, "explanation_segment_id": cfg.explanation_segment_id}
    own = negative_one_rows(batch, "own", **ids)
    closed = negative_one_rows(batch, "positive", **ids)
    partner = batch["pair_index"].tolist()
    for i, j in enumerate(partner):
        seg_own, seg_closed = own["explanation_segment"][i], closed["explanation_segment"][i]
        # the explanation segment (" because ... <eos>") is the partner's in both
        assert own["input_ids"][i][seg_own].tolist() == closed["input_ids"][i][seg_closed].tolist()
        torch.testing.assert_close(own["vad_values"][i][seg_own], closed["vad_values"][i][seg_closed])
        # the prompt: the partner's own ("own", the paper's) or the positive's ("positive")
        assert ids_of(own, i) == ids_of(batch, j)
        assert ids_of(closed, i) == list(builder.encode(PAIRS[i][0], TEXTS[PAIRS[j][1]]).input_ids)
        prompt = batch["input_ids"][i][~batch["explanation_segment"][i] & batch["attention_mask"][i].bool()]
        assert closed["input_ids"][i][~seg_closed & closed["attention_mask"][i].bool()].tolist() == prompt.tolist()
    expected = hand_rows(builder, [(PAIRS[i][0], PAIRS[j][1]) for i, j in enumerate(partner)])
    for key in ("segment_ids", "emotion_mask", "explanation_mask", "explanation_segment", "attention_mask"):
        t = expected[key].shape[1]
        assert torch.equal(closed[key][:, :t], expected[key]), key
        assert not closed[key][:, t:].any() or key == "segment_ids"
    # splicing a row with itself gives the row back
    same = splice_sequences(batch, torch.arange(6), torch.arange(6), **ids)
    for key in ("input_ids", "labels", "segment_ids", "explanation_mask"):
        assert torch.equal(same[key], batch[key]), key


def test_closed_negative_changes_only_the_negative_one_score(tok, builder) -> None:
    batch = pair_batch(builder)
    own = micro_model(tok, seed=4, contrastive=True).eval()
    closed = micro_model(tok, seed=4, contrastive=True, negative_prompt="positive").eval()
    assert closed.config.negative_prompt == "positive" and "negative_prompt" not in own.config.to_dict()
    torch.manual_seed(0)
    a = own(batch)
    torch.manual_seed(0)
    b = closed(batch)
    torch.testing.assert_close(a.scores["pos"], b.scores["pos"])
    torch.testing.assert_close(a.scores["neg_visual"], b.scores["neg_visual"])
    torch.testing.assert_close(a.losses["xe"], b.losses["xe"])
    assert not torch.allclose(a.scores["neg_emotion"], b.scores["neg_emotion"])
    # by hand: the partner's words encoded after the positive's prompt, with the builder
    rows = hand_rows(builder, [(PAIRS[i][0], PAIRS[i ^ 1][1]) for i in range(6)])
    with torch.no_grad():
        image_memory = closed.encode_images(batch)
        memory = image_memory[batch["image_index"]]
        hidden = closed.text_hidden(batch, memory)
        neg_hidden = closed.text_hidden(rows, memory)
        expect = closed.scorer(
            image_memory.mean(1)[batch["image_index"]],
            masked_mean(hidden, batch["emotion_mask"]),
            masked_mean(neg_hidden, rows["explanation_mask"]),
        )
    torch.testing.assert_close(b.scores["neg_emotion"], expect, rtol=1e-5, atol=1e-5)


def batches_of(builder: SequenceBuilder) -> Any:
    def make(epoch: int) -> list[dict[str, torch.Tensor]]:
        return [pair_batch(builder, seed=epoch * 10 + k) for k in range(2)]

    return make


@pytest.mark.parametrize("negative_prompt", ["own", "positive"])
def test_both_negative_prompts_train(tok, builder, negative_prompt: str) -> None:
    model = micro_model(tok, seed=1, vad_head=True, contrastive=True, negative_prompt=negative_prompt)
    before = {k: v.clone() for k, v in model.scorer.state_dict().items()}
    config = TrainConfig(seed=0, max_steps=3, lr=1e-2, device="cpu", mixed_precision="no", clip_groups=True)
    groups = model.parameter_groups(1e-2, 2e-2, heads=True)
    history = Trainer(model, config, batches_of(builder), 2, param_groups=groups, quiet=True).fit()
    assert len(history.steps) == 3
    for row in history.steps:
        assert math.isfinite(row["contrastive"]) and row["grad_norm_heads"] > 0 and row["grad_norm_main"] > 0
        assert row["grad_norm"] == pytest.approx(math.hypot(row["grad_norm_main"], row["grad_norm_heads"]), rel=1e-5)
    assert any(not torch.equal(before[k], v) for k, v in model.scorer.state_dict().items())


def test_negative_prompt_config_name_and_validation(tok) -> None:
    cfg = tiny_config(contrastive=True)
    closed = cfg.with_switches(negative_prompt="positive")
    assert run_name(cfg) == "+contrastive" and run_name(closed) == "+contrastive-closed"
    assert SEVLMConfig.from_dict(closed.to_dict()).negative_prompt == "positive"
    assert cfg.to_dict() == SEVLMConfig.from_dict(cfg.to_dict()).to_dict() and "negative_prompt" not in cfg.to_dict()
    with pytest.raises(ValueError, match="negative_prompt"):
        cfg.with_switches(negative_prompt="partner")
    wide = tiny_config(vad_fusion=True, vad_width=8)
    assert wide.vad_encoder.d_model == 8 and run_name(wide) == "+fusion-vad8"


# ------------------------------------------------------------------------------ the control negatives


def test_control_rejection_by_hand(tok, builder) -> None:
    model = micro_model(tok, seed=2, contrastive=True)
    batch = pair_batch(builder)
    got = control_rejection(model, batch, seed=5)
    assert set(got) == {"words_swapped", "other_words", "prompt_swapped", "n"} and got["n"] == 6
    assert all(0.0 <= got[k] <= 1.0 for k in ("words_swapped", "other_words", "prompt_swapped"))
    scores = control_scores(model, batch, seed=5)
    donors = scores["words_from"].tolist()
    assert all(d // 2 != i // 2 and d % 2 == i % 2 for i, d in enumerate(donors))  # another artwork, same slot
    with torch.no_grad():
        image_memory = model.encode_images(batch)
        memory = image_memory[batch["image_index"]]
        image = image_memory.mean(1)[batch["image_index"]]
        hidden = model.text_hidden(batch, memory)
        emotion = masked_mean(hidden, batch["emotion_mask"])
        pos = model.scorer(image, emotion, masked_mean(hidden, batch["explanation_mask"]))
        hand = {}
        for name, pairs in {
            "words_swapped": [(PAIRS[i][0], PAIRS[i ^ 1][1]) for i in range(6)],
            "other_words": [(PAIRS[i][0], PAIRS[d][1]) for i, d in enumerate(donors)],
            "prompt_swapped": [(PAIRS[i ^ 1][0], PAIRS[i][1]) for i in range(6)],
        }.items():
            rows = hand_rows(builder, pairs)
            control = model.scorer(image, emotion, masked_mean(model.text_hidden(rows, memory), rows["explanation_mask"]))
            torch.testing.assert_close(scores[name], control, rtol=1e-5, atol=1e-5)
            hand[name] = float((pos > control).float().mean())
    for name in ("words_swapped", "other_words", "prompt_swapped"):
        assert got[name] == pytest.approx(hand[name]), name


def test_words_swapped_is_the_closed_heads_own_negative_1(tok, builder) -> None:
    """The issue's "words swapped" control is negative 1 encoded under the positive's prompt: for a head trained
    with the shortcut closed it is exactly the negative 1 the forward pass scores."""
    model = micro_model(tok, seed=4, contrastive=True, negative_prompt="positive").eval()
    batch = pair_batch(builder)
    with torch.no_grad():
        torch.manual_seed(0)
        out = model(batch)
    torch.testing.assert_close(control_scores(model, batch)["words_swapped"], out.scores["neg_emotion"])


# ------------------------------------------------------------------------------ the heads' own group


def test_heads_group_holds_the_scorer_and_the_vad_head(tok) -> None:
    model = micro_model(tok, vad_fusion=True, vad_head=True, contrastive=True)
    plain = model.parameter_groups(1e-3, 2e-3)
    assert [g["name"] for g in plain] == ["main", "vad"]
    groups = model.parameter_groups(1e-3, 2e-3, heads=True)
    assert [(g["name"], g["lr"]) for g in groups] == [("main", 1e-3), ("vad", 2e-3), ("heads", 1e-3)]
    heads = {id(p) for m in (model.scorer, model.vad_head) for p in m.parameters()}
    assert {id(p) for p in groups[2]["params"]} == heads
    assert not heads & {id(p) for p in groups[0]["params"]}
    everything = [id(p) for g in groups for p in g["params"]]
    assert sorted(everything) == sorted(id(p) for p in model.parameters() if p.requires_grad)
    assert [g["name"] for g in micro_model(tok).parameter_groups(heads=True)] == ["main"]  # no heads: no group


def test_recipe_clip_groups_reaches_the_train_config_and_keeps_default_fingerprints() -> None:
    assert "clip_groups" not in Recipe().to_dict() and "clip_groups" not in TrainConfig(max_steps=1).to_dict()
    recipe = Recipe(clip_groups=True)
    assert recipe.to_dict()["clip_groups"] is True
    assert recipe.train_config(seed=0, device="cpu").clip_groups is True
    assert Recipe(**Recipe().to_dict()) == Recipe()
    with pytest.raises(ValueError, match="clip_groups"):
        Recipe(clip_groups="yes")


# ------------------------------------------------------------------------------ the 3-wide VAD encoder


def test_a_three_wide_layernorm_output_lies_on_a_circle() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) * 5 + 2
    mean, norm = layernorm_circle(F.layer_norm(x, (3,), eps=1e-12))
    torch.testing.assert_close(mean, torch.zeros(500), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm, torch.full((500,), math.sqrt(3)), atol=1e-5, rtol=0)
    # LayerNorm's eps (1e-5) shrinks the norm only where the features barely vary: sqrt(3 var / (var + eps))
    _, norm = layernorm_circle(F.layer_norm(x, (3,)))
    var = x.var(-1, unbiased=False)
    torch.testing.assert_close(norm, (3 * var / (var + 1e-5)).sqrt(), atol=1e-5, rtol=0)
    # the 3-wide encoder's output is its last LayerNorm's: on the circle once the affine is undone
    torch.manual_seed(0)
    enc = VADEncoder(VADEncoderConfig(dropout=0.0)).eval()
    ln = encoder_output_norm(enc)
    assert ln is not None
    with torch.no_grad():
        ln.weight.uniform_(0.5, 2.0)
        ln.bias.normal_()
        y, _ = enc(torch.rand(8, 12, 3, generator=g))
    mean, norm = layernorm_circle(y, ln.weight, ln.bias)
    torch.testing.assert_close(mean, torch.zeros(8, 12), atol=1e-5, rtol=0)
    torch.testing.assert_close(norm, torch.full((8, 12), math.sqrt(3)), atol=1e-2, rtol=0)  # eps: see above


def test_a_wide_vad_encoder_is_not_on_the_circle() -> None:
    torch.manual_seed(0)
    enc = VADEncoder(VADEncoderConfig(d_model=8, n_heads=2, dropout=0.0)).eval()
    assert encoder_output_norm(enc) is None
    with torch.no_grad():
        y, _ = enc(torch.rand(8, 12, 3))
    assert y.shape == (8, 12, 3)
    mean, norm = layernorm_circle(y)
    assert mean.abs().max() > 0.05 and norm.std() > 0.05
    # and the default width is the paper's encoder, without projections
    names = set(VADEncoder(VADEncoderConfig()).state_dict())
    assert not any(n.startswith(("in_proj", "out_proj")) for n in names)


def test_variant_run_applies_the_balance_only_where_a_variant_has_it() -> None:
    from sevlm_lib import recipes

    for variant in ("baseline", "+fusion"):  # nothing to balance: the same run under both
        course, paper = (recipes.variant_run("tiny", variant, b) for b in recipes.BALANCES)
        assert course.config == paper.config and course.recipe == paper.recipe and course.name == variant
    paper = recipes.variant_run("tiny", "full", "paper")
    assert paper.name == "full" and paper.config == recipes.variant_config("tiny", "full")
    assert not paper.recipe.clip_groups
    course = recipes.variant_run("tiny", "full")
    bal = recipes.TINY_BALANCE
    assert course.recipe.clip_groups is bal.clip_groups
    assert course.config.contrastive_loss_weight == bal.contrastive_weight
    assert course.config.vad_loss_weight == bal.vad_weight
    assert course.config.negative_prompt == bal.negative_prompt
    assert course.name != paper.name and course.name.startswith("full")
    head = recipes.variant_run("tiny", "+head")
    assert head.config.negative_prompt == "own"  # no contrastive head: negative 1's prompt does not apply
    # the full profile keeps the paper's balance (set for its pre-trained decoder)
    assert recipes.variant_run("full", "full").name == "full"
    with pytest.raises(ValueError, match="unknown balance"):
        recipes.variant_run("tiny", "full", "mine")


def test_run_names_tell_weights_and_group_clipping_apart() -> None:
    cfg = tiny_config(contrastive=True)
    assert run_name(cfg) == "+contrastive"
    assert run_name(cfg.with_switches(contrastive_loss_weight=0.3)) == "+contrastive-cw0.3"
    assert run_name(tiny_config(vad_head=True, vad_loss_weight=0.1)) == "+head-vw0.1"
    assert run_name(tiny_config(vad_loss_weight=0.1)) == "baseline"  # a weight of a head that is off: no effect
    assert run_name(cfg, Recipe(clip_groups=True)) == "+contrastive-clip-groups"
    assert run_name(cfg, Recipe()) == "+contrastive"
