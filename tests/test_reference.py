"""Reference mode (docs/reference.md): each behaviour re-derived by hand, in plain torch, from the reference
implementation's equations, and compared with the library within 1e-5; and the default mode unchanged.

The by-hand functions below never call the course's modules: they read weights (under the reference's own
parameter names where it has them) and redo the arithmetic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sevlm_lib.generation import generate
from sevlm_lib.models.heads import reference_contrastive_loss, reference_negative_ids
from sevlm_lib.models.sevlm import (
    REFERENCE_DEFAULTS,
    REFERENCE_VALUES,
    SEVLM,
    SEVLMConfig,
    builder_options,
    reference_config,
    tiny_config,
)
from sevlm_lib.models.vad_encoder import VADEncoder, VADEncoderConfig, load_reference_state_dict
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import TEXTS, micro_config, pair_batch

TOL = dict(rtol=1e-5, atol=1e-5)


def _set_vad_table(model: SEVLM, n: int) -> None:
    g = torch.Generator().manual_seed(123)
    table = torch.rand(n, 3, generator=g) * 2 - 1
    known = torch.rand(n, generator=g) > 0.3
    model.set_token_vad(table * known[:, None], known)


def reference_model(tok, seed: int = 0, **switches) -> SEVLM:
    cfg = reference_config(micro_config(tok, vad_fusion=True, vad_head=True, contrastive=True, **switches))
    torch.manual_seed(seed)
    model = SEVLM(cfg)
    _set_vad_table(model, len(tok))
    return model


# ------------------------------------------------------------------------------ the reference's VAD encoder


def random_reference_state(n_layers: int, d: int = 3, ffn: int = 128, max_len: int = 100, seed: int = 0):
    """A state dict under the reference's ``Transformer`` parameter names, with random values."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.7

    state = {"pos_encoder.weight": r(max_len, d), "norm.weight": 1 + r(d), "norm.bias": r(d),
             "decoder.weight": r(1, d), "decoder.bias": r(1)}
    for i in range(n_layers):
        p = f"encoder.layers.{i}."
        for name in ("query", "key", "value"):
            state[p + f"self_attention.{name}.weight"] = r(d, d)
            state[p + f"self_attention.{name}.bias"] = r(d)
        state[p + "fc.0.weight"], state[p + "fc.0.bias"] = r(ffn, d), r(ffn)
        state[p + "fc.2.weight"], state[p + "fc.2.bias"] = r(d, ffn) / 4, r(d)
        for n in ("norm1", "norm2"):
            state[p + f"{n}.weight"], state[p + f"{n}.bias"] = 1 + r(d), r(d)
    return state


def reference_vad_encoder_by_hand(state: dict[str, torch.Tensor], vad: torch.Tensor, n_layers: int,
                                  n_heads: int) -> torch.Tensor:
    """The reference's encoder in eval mode: x = LN(v + P); per layer x = x + layer(x); no masks at all."""
    b, t, d = vad.shape
    dh = d // n_heads

    def ln(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * w + bias

    x = ln(vad + state["pos_encoder.weight"][:t][None], state["norm.weight"], state["norm.bias"])
    for i in range(n_layers):
        p = f"encoder.layers.{i}."

        def lin(z: torch.Tensor, name: str, p: str = p) -> torch.Tensor:
            return z @ state[p + name + ".weight"].T + state[p + name + ".bias"]

        heads = []
        q, k, v = (lin(x, f"self_attention.{n}") for n in ("query", "key", "value"))
        for h in range(n_heads):
            sl = slice(h * dh, (h + 1) * dh)
            scores = q[..., sl] @ k[..., sl].transpose(-1, -2) / math.sqrt(dh)
            heads.append(torch.softmax(scores, -1) @ v[..., sl])
        a = torch.cat(heads, -1)  # no output projection
        s = ln(x + a, state[p + "norm1.weight"], state[p + "norm1.bias"])
        s = ln(s + lin(torch.relu(lin(s, "fc.0")), "fc.2"), state[p + "norm2.weight"], state[p + "norm2.bias"])
        x = x + s  # the outer residual
    return x


@pytest.mark.parametrize("n_layers,n_heads", [(3, 1), (2, 3)])
def test_reference_vad_encoder_matches_its_equations(n_layers, n_heads):
    cfg = VADEncoderConfig(n_layers=n_layers, n_heads=n_heads, max_len=40, style="reference")
    enc = VADEncoder(cfg).eval()
    state = random_reference_state(n_layers, seed=n_layers)
    load_reference_state_dict(enc, state)
    vad = torch.rand(4, 17, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    vad[1, 12:] = 0.0  # padding: the reference attends to it like any token
    mask = torch.ones(4, 17, dtype=torch.long)
    mask[1, 12:] = 0
    expected = reference_vad_encoder_by_hand(state, vad, n_layers, n_heads)
    out, _ = enc(vad, mask)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(enc(vad)[0], out, rtol=0, atol=0)  # the padding mask is ignored


def test_reference_vad_encoder_is_not_the_noncausal_course_layer():
    ref = VADEncoder(VADEncoderConfig(style="reference"))
    noncausal = VADEncoder(VADEncoderConfig(causal=False))
    ref_keys, nc_keys = set(ref.state_dict()), set(noncausal.state_dict())
    assert "in_norm.weight" in ref_keys and "in_norm.weight" not in nc_keys
    assert not any(".out." in k for k in ref_keys) and any(".out." in k for k in nc_keys)
    assert noncausal.cfg.style == "noncausal" and ref.cfg.causal is False
    # every position sees later ones (non-causal)
    enc = ref.eval()
    vad = torch.rand(1, 8, 3)
    later = vad.clone()
    later[0, 6, 0] += 1.0  # (a shift of all three values would vanish in the input LayerNorm)
    assert not torch.allclose(enc(vad)[0][0, :6], enc(later)[0][0, :6])


def test_load_reference_state_dict_names_bad_keys():
    enc = VADEncoder(VADEncoderConfig(n_layers=1, style="reference"))
    state = random_reference_state(1)
    with pytest.raises(KeyError, match="norm.bias"):
        load_reference_state_dict(enc, {k: v for k, v in state.items() if k != "norm.bias"})
    with pytest.raises(KeyError, match="encoder.layers.1.fc.0.weight"):
        load_reference_state_dict(enc, {**state, "encoder.layers.1.fc.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="style='reference'"):
        load_reference_state_dict(VADEncoder(VADEncoderConfig()), state)


def test_vad_encoder_style_maps_the_old_boolean():
    assert VADEncoderConfig().style == "causal" and VADEncoderConfig().causal is True
    assert VADEncoderConfig(causal=False).style == "noncausal"
    assert VADEncoderConfig(style="noncausal").causal is False
    with pytest.raises(ValueError, match="style='bogus'"):
        VADEncoderConfig(style="bogus")
    with pytest.raises(ValueError, match="d_model=3"):
        VADEncoderConfig(style="reference", d_model=6)
    cfg = tiny_config(vad_fusion=True, vad_causal=False)
    assert cfg.vad_encoder.style == "noncausal" and "style" not in cfg.to_dict()["vad_encoder"]
    assert SEVLMConfig.from_dict({**cfg.to_dict()}).vad_encoder.style == "noncausal"
    ref = tiny_config(vad_style="reference")
    assert ref.to_dict()["vad_encoder"]["style"] == "reference"
    assert SEVLMConfig.from_dict(ref.to_dict()).vad_encoder.style == "reference"
    assert ref.with_switches(vad_causal=True).vad_encoder.style == "causal"


# ------------------------------------------------------------------------------ the model in reference mode


def _vad_encoder_state_under_reference_names(model: SEVLM) -> dict[str, torch.Tensor]:
    """Read the model's encoder weights back under the reference's names (to feed the by-hand encoder)."""
    sd = model.vad_encoder.state_dict()
    out = {"pos_encoder.weight": sd["pos.weight"], "norm.weight": sd["in_norm.weight"], "norm.bias": sd["in_norm.bias"]}
    for i in range(model.config.vad_encoder.n_layers):
        p, q = f"layers.{i}.", f"encoder.layers.{i}."
        for part in ("weight", "bias"):
            wq, wk, wv = sd[p + f"qkv.{part}"].chunk(3, 0)
            out[q + f"self_attention.query.{part}"] = wq
            out[q + f"self_attention.key.{part}"] = wk
            out[q + f"self_attention.value.{part}"] = wv
            out[q + f"fc.0.{part}"], out[q + f"fc.2.{part}"] = sd[p + f"ff1.{part}"], sd[p + f"ff2.{part}"]
            out[q + f"norm1.{part}"], out[q + f"norm2.{part}"] = sd[p + f"norm1.{part}"], sd[p + f"norm2.{part}"]
    return out


def _first_block_input(model: SEVLM, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, object]:
    seen: list[torch.Tensor] = []
    hook = model.decoder.transformer.h[0].register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(args[0] if args else kwargs["hidden_states"]), with_kwargs=True
    )
    try:
        out = model(batch)
    finally:
        hook.remove()
    return seen[0], out


def test_fusion_of_the_embedding_sum_from_position_6(tok, builder):
    model = reference_model(tok, seed=1).eval()
    batch = pair_batch(builder)
    ids, seg = batch["input_ids"], batch["segment_ids"]
    t = ids.shape[1]
    tr = model.decoder.transformer
    # by hand: h = (wte[ids] + wpe[pos]) + wte[seg]; from position 6 on (padding too): Linear([h, VAD code])
    h = tr.wte.weight[ids] + tr.wpe.weight[:t][None] + tr.wte.weight[seg]
    vad = model.token_vad[ids]
    code = reference_vad_encoder_by_hand(_vad_encoder_state_under_reference_names(model), vad,
                                         model.config.vad_encoder.n_layers, model.config.vad_encoder.n_heads)
    fused = torch.cat([h, code], -1) @ model.fusion.weight.T + model.fusion.bias
    expected = torch.cat([h[:, :6], fused[:, 6:]], 1)
    with torch.no_grad():
        got, _ = _first_block_input(model, batch)
    torch.testing.assert_close(got, expected, **TOL)
    # position 5 (" because" after a one-token GPT-2 emotion, which the course fuses) is never fused
    torch.testing.assert_close(got[:, 5], h[:, 5], **TOL)
    assert not torch.allclose(got[:, 6:], h[:, 6:])


def test_vad_values_in_the_batch_replace_the_token_table(tok, builder):
    model = reference_model(tok, seed=2).eval()
    batch = pair_batch(builder)
    vad = torch.rand(*batch["input_ids"].shape, 3, generator=torch.Generator().manual_seed(3)) - 0.5
    vad[:, -3:] = 0.0
    ids = batch["input_ids"]
    tr = model.decoder.transformer
    h = tr.wte.weight[ids] + tr.wpe.weight[: ids.shape[1]][None] + tr.wte.weight[batch["segment_ids"]]
    code = reference_vad_encoder_by_hand(_vad_encoder_state_under_reference_names(model), vad, 3, 1)
    fused = torch.cat([h, code], -1) @ model.fusion.weight.T + model.fusion.bias
    with torch.no_grad():
        got, out = _first_block_input(model, {**batch, "vad_values": vad})
    torch.testing.assert_close(got[:, 6:], fused[:, 6:], **TOL)
    # the VAD loss scores those values: predictions from position 5 on against targets from 6 on, a target
    # kept when any of its three values is non-zero
    pred = out.hidden_states @ model.vad_head.proj.weight.T + model.vad_head.proj.bias
    p, target = pred[:, 5:-1], vad[:, 6:]
    keep = (target != 0).any(-1)
    torch.testing.assert_close(out.losses["vad"], ((p - target)[keep] ** 2).mean(), **TOL)
    with pytest.raises(ValueError, match="does not match input_ids"):
        model({**batch, "vad_values": vad[:, :-1]})


def hand_negative_ids(size: int) -> torch.Tensor:
    """The reference's ``neg_ids``, from its definition: [mid] + perm(mid+1..size-1) + perm(0..mid-1)."""
    mid = int(size / 2)
    left = torch.randperm(size - mid - 1) + mid + 1
    right = torch.randperm(mid)
    return torch.cat([torch.tensor([mid]), left, right])


def test_losses_and_contrastive_embeddings_by_hand(tok, builder):
    model = reference_model(tok, seed=3).eval()
    batch = pair_batch(builder)
    ids, labels = batch["input_ids"], batch["labels"]
    torch.manual_seed(42)
    with torch.no_grad():
        out = model(batch)
    hidden = out.hidden_states
    # the decoder ran without a padding mask: padding positions attend to padding
    memory = model.encode_images(batch)[batch["image_index"]]
    embeds = model.embed(ids, batch["segment_ids"], batch["explanation_segment"], batch["attention_mask"])
    with torch.no_grad():
        unmasked = model.decoder.transformer(inputs_embeds=embeds, encoder_hidden_states=memory).last_hidden_state
        masked = model.decoder.transformer(inputs_embeds=embeds, encoder_hidden_states=memory,
                                           attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(hidden, unmasked, **TOL)
    pad = batch["attention_mask"] == 0
    assert pad.any() and not torch.allclose(hidden[pad], masked[pad])

    # cross-entropy: logits[:-1] against labels[1:], -100 ignored
    logits = hidden @ model.decoder.lm_head.weight.T
    logp = logits[:, :-1].log_softmax(-1)
    keep = labels[:, 1:] != -100
    xe = -logp.gather(-1, labels[:, 1:].clamp_min(0)[..., None]).squeeze(-1)[keep].mean()
    torch.testing.assert_close(out.losses["xe"], xe, **TOL)

    # contrastive: image = mean of the patch features; emotion = mean of positions 0..5; explanation = mean of
    # positions 6.. (padding included); negative 1 = the partner's explanation; negative 2 = two draws of neg_ids
    feats = model.vision(batch["pixel_values"])
    image = feats.mean(1)[batch["image_index"]]
    emotion, explanation = hidden[:, :6].mean(1), hidden[:, 6:].mean(1)

    def score(e: torch.Tensor) -> torch.Tensor:
        x = torch.cat([image, emotion, e], -1)
        layers = [m for m in model.scorer.mlp if isinstance(m, torch.nn.Linear)]
        for lin in layers[:-1]:
            x = torch.relu(x @ lin.weight.T + lin.bias)
        return (x @ layers[-1].weight.T + layers[-1].bias).squeeze(-1)

    torch.manual_seed(42)
    n = ids.shape[0] // 2
    first, second = hand_negative_ids(n) * 2, hand_negative_ids(n) * 2 + 1
    visual = torch.stack([first, second], 1).reshape(-1)
    swap = torch.tensor([i + 1 if i % 2 == 0 else i - 1 for i in range(2 * n)])
    pos, s1, s2 = score(explanation), score(explanation[swap]), score(explanation[visual])
    torch.testing.assert_close(out.scores["pos"], pos, **TOL)
    torch.testing.assert_close(out.scores["neg_emotion"], s1, **TOL)
    torch.testing.assert_close(out.scores["neg_visual"], s2, **TOL)
    eps = 1e-8
    cl = -torch.log(eps + torch.exp(pos) / (eps + torch.exp(pos) + torch.exp(s1) + torch.exp(s2))).mean()
    torch.testing.assert_close(out.losses["contrastive"], cl, **TOL)

    # VAD head: predictions from position 5, targets from position 6, kept when any value is non-zero
    pred = hidden @ model.vad_head.proj.weight.T + model.vad_head.proj.bias
    target = model.token_vad[ids][:, 6:]
    keep = (target != 0).any(-1)
    vad = ((pred[:, 5:-1] - target)[keep] ** 2).mean()
    torch.testing.assert_close(out.losses["vad"], vad, **TOL)
    torch.testing.assert_close(out.loss, xe + cl + vad, **TOL)


def test_reference_negative_ids_follow_the_reference_draw():
    for n in (2, 3, 5, 8, 16):
        torch.manual_seed(n)
        mine = reference_negative_ids(n)
        torch.manual_seed(n)
        assert torch.equal(mine, hand_negative_ids(n))
        assert sorted(mine.tolist()) == list(range(n))
        assert not (mine == torch.arange(n)).any()
    with pytest.raises(ValueError, match="at least 2 artworks"):
        reference_negative_ids(1)


def test_reference_contrastive_loss_is_the_eps_form():
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(7, generator=g) * 3 for _ in range(3))
    expected = -torch.log(1e-8 + a.exp() / (1e-8 + a.exp() + b.exp() + c.exp())).mean()
    torch.testing.assert_close(reference_contrastive_loss(a, b, c), expected, rtol=0, atol=0)


def test_offset_spans_need_an_explanation(tok, builder):
    model = reference_model(tok).eval()
    batch = pair_batch(builder)
    short = {k: (v[:, :6] if k in ("input_ids", "segment_ids", "labels", "attention_mask", "emotion_mask",
                                  "explanation_mask", "explanation_segment") else v) for k, v in batch.items()}
    with pytest.raises(ValueError, match="no explanation after position 6"):
        model(short)


# ------------------------------------------------------------------------------ tokenisation, images, decoding


def test_builder_reference_options(tok):
    course = SequenceBuilder(tok, max_len=30)
    ref = SequenceBuilder(tok, max_len=30, **builder_options(reference_config(tiny_config())))
    assert ref.prompt_ids[1:] == tuple(tok(" the emotion is", add_special_tokens=False)["input_ids"])
    assert course.prompt_ids[1:] == tuple(tok("the emotion is", add_special_tokens=False)["input_ids"])
    assert ref.prompt_ids != course.prompt_ids
    batch = ref.collate([ref.encode("awe", "a calm sea")])
    assert batch["input_ids"].shape == (1, 30) and int(batch["attention_mask"].sum()) < 30
    long = " ".join(TEXTS[:6])
    seq_ref, seq_course = ref.encode("awe", long), course.encode("awe", long)
    assert len(seq_ref) == len(seq_course) == 30 and seq_ref.truncated and seq_course.truncated
    assert seq_course.input_ids[-1] == course.eos_id  # the course keeps <eos>
    assert seq_ref.input_ids[-1] != ref.eos_id  # the reference cuts it off
    assert seq_ref.explanation_span[1] == 30 and seq_ref.labels[-1] == seq_ref.input_ids[-1]
    with pytest.raises(ValueError, match="truncation='middle'"):
        SequenceBuilder(tok, truncation="middle")


def test_reference_image_transform_is_squash_and_imagenet_statistics():
    from PIL import Image

    from sevlm_lib.models.vision import image_transform

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (37, 61, 3), dtype=np.uint8))
    got = image_transform(32, style="reference")(img)
    squashed = np.asarray(img.resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = torch.from_numpy(((squashed - mean) / std).astype(np.float32)).permute(2, 0, 1)
    torch.testing.assert_close(got, expected, **TOL)
    assert not torch.allclose(image_transform(32)(img), got)
    with pytest.raises(ValueError, match="style='other'"):
        image_transform(32, style="other")


class _ForceToken(torch.nn.Module):
    """An LM head that always prefers ``token`` (to test where decoding stops)."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.vocab, self.token = vocab, token

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        logits[..., self.token] = 1.0
        return logits


def test_decoding_stops_at_any_special_token_in_reference_mode(tok, builder):
    pixels = pair_batch(builder)["pixel_values"]
    pad = builder.pad_id
    course = reference_model(tok).eval()
    course.config = course.config.with_switches(decode_stop="eos")
    ref = reference_model(tok).eval()
    for m in (course, ref):
        m.decoder.lm_head = _ForceToken(len(tok), pad)
    g_course = generate(course, builder, {"pixel_values": pixels}, max_new_tokens=5)
    g_ref = generate(ref, builder, {"pixel_values": pixels}, max_new_tokens=5)
    assert g_course.token_ids == [[pad] * 5] * 3  # <pad> is not <eos>: the course writes on
    assert g_ref.token_ids == [[]] * 3  # the reference stops at the first special token


# ------------------------------------------------------------------------------ the switches and the default


def test_reference_config_switches_everything_and_round_trips(tok):
    base = micro_config(tok, vad_fusion=True, vad_head=True, contrastive=True)
    ref = reference_config(base)
    assert ref.is_reference and not base.is_reference
    assert ref.vad_encoder.style == "reference" and (ref.vad_fusion, ref.vad_head, ref.contrastive) == (True,) * 3
    assert all(getattr(ref, k) == v for k, v in REFERENCE_VALUES.items())
    assert SEVLMConfig.from_dict(ref.to_dict()) == ref
    assert set(REFERENCE_DEFAULTS) == set(REFERENCE_VALUES)
    assert not set(REFERENCE_DEFAULTS) & set(base.to_dict())  # defaults are left out of saved configs
    with pytest.raises(ValueError, match="fusion_span='middle'"):
        base.with_switches(fusion_span="middle")
    with pytest.raises(ValueError, match="unknown switch 'bogus'"):
        base.with_switches(bogus=True)


# Numbers produced by the code BEFORE reference mode existed (commit 182f89e), for micro models with every
# addition on: losses, a weighted sum of the hidden states, the VAD predictions, the three score sums and
# 8 sampled tokens per image. The default variants must reproduce them.
BEFORE = {
    "causal": {"xe": 5.979942321777344, "vad": 0.544511079788208, "contrastive": 1.099032998085022,
               "hidden_w": 1.9167073375252812, "vad_pred": 49.61615319456905,
               "scores": [0.3598955497145653, 0.36676325276494026, 0.36056220531463623]},
    "noncausal": {"xe": 5.979951858520508, "vad": 0.5439173579216003, "contrastive": 1.0990376472473145,
                  "hidden_w": 1.8919794753808787, "vad_pred": 49.51034458633512,
                  "scores": [0.3597266711294651, 0.3667757920920849, 0.36029745638370514]},
    "dropout": {"xe": 5.985705375671387, "vad": 0.5343230962753296, "contrastive": 1.0990914106369019,
                "hidden_w": 1.7266688209998051, "vad_pred": 45.98235597088933,
                "scores": [0.3624630980193615, 0.3633156232535839, 0.3702102527022362]},
}
BEFORE_TOKENS = [[170, 251, 346, 254, 185, 372, 367, 101], [324, 271, 226, 348, 388, 390, 154, 144],
                 [98, 269, 229, 180, 273, 324, 121, 138]]


@pytest.mark.parametrize("variant", sorted(BEFORE))
def test_default_mode_is_unchanged(tok, builder, variant):
    cfg = micro_config(tok, vad_fusion=True, vad_head=True, contrastive=True, vad_causal=variant != "noncausal")
    if variant == "dropout":
        cfg.decoder.dropout = 0.1
        cfg.vad_encoder.dropout = 0.1
    torch.manual_seed(7)
    model = SEVLM(cfg)
    _set_vad_table(model, len(tok))
    batch = pair_batch(builder)
    model.train()
    torch.manual_seed(11)
    with torch.no_grad():
        out = model(batch)
    w = torch.arange(out.hidden_states.numel(), dtype=torch.float64).view_as(out.hidden_states) / 1000
    want = BEFORE[variant]
    for k in ("xe", "vad", "contrastive"):
        assert float(out.losses[k]) == pytest.approx(want[k], rel=1e-6), k
    # a weighted sum over every hidden state: another CPU model's rounding moves it by ~1.4e-5 (AMD EPYC vs the
    # Intel Xeon these numbers came from), while the losses above still agree to 1e-6
    assert float((out.hidden_states.double() * w).sum()) == pytest.approx(want["hidden_w"], rel=1e-4)
    assert float(out.vad_pred.double().sum()) == pytest.approx(want["vad_pred"], rel=1e-5)
    got_scores = [float(out.scores[k].double().sum()) for k in ("pos", "neg_emotion", "neg_visual")]
    assert got_scores == pytest.approx(want["scores"], rel=1e-5)
    g = generate(model, builder, {"pixel_values": batch["pixel_values"]}, max_new_tokens=8, strategy="sample",
                 generator=torch.Generator().manual_seed(5))
    assert g.token_ids == BEFORE_TOKENS


def test_default_configs_save_as_before():
    d = tiny_config(vad_fusion=True, vad_head=True, contrastive=True, vad_causal=False).to_dict()
    assert d["vad_encoder"] == {"d_model": 3, "n_layers": 3, "n_heads": 1, "ffn": 128, "max_len": 64,
                                "dropout": 0.1, "causal": False}
    assert list(d) == ["vision", "decoder", "vad_encoder", "vocab_size", "pad_id", "emotion_segment_id",
                       "explanation_segment_id", "vad_fusion", "vad_head", "contrastive", "vad_loss_weight",
                       "contrastive_loss_weight"]


def test_reference_run_configs_load():
    from pathlib import Path

    from sevlm_lib.cli.run_config import load_run_config

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("tiny_sevlm_reference.yaml", "sevlm_full_reference.yaml"):
        run = load_run_config(root / name)
        cfg = run.model_config()
        assert cfg.vad_encoder.style == "reference", name
        assert (cfg.vad_fusion, cfg.vad_head, cfg.contrastive) == (True, True, True)


def test_fusion_layer_sees_what_the_course_fuses_by_default(tok, builder):
    """Sanity check of the by-hand helpers against the course's default (word embedding, from because)."""
    torch.manual_seed(0)
    model = SEVLM(micro_config(tok, vad_fusion=True)).eval()
    _set_vad_table(model, len(tok))
    batch = pair_batch(builder)
    with torch.no_grad():
        got, _ = _first_block_input(model, batch)
        enc, _ = model.vad_encoder(model.token_vad[batch["input_ids"]], batch["attention_mask"])
    tr = model.decoder.transformer
    ids, seg = batch["input_ids"], batch["segment_ids"]
    words = tr.wte.weight[ids]
    fused = torch.cat([words, enc], -1) @ model.fusion.weight.T + model.fusion.bias
    words = torch.where(batch["explanation_segment"][..., None], fused, words)
    expected = words + tr.wte.weight[seg] + tr.wpe.weight[: ids.shape[1]][None]
    torch.testing.assert_close(got, expected, **TOL)
    assert F.mse_loss(got, expected) < 1e-10


def test_offset_fusion_decodes_the_same_with_and_without_the_cache(tok, builder):
    """A causal encoder with the reference's fusion keeps the KV cache valid (positions counted from the start)."""
    cfg = micro_config(tok, vad_fusion=True, fusion_input="embedding_sum", fusion_span="offset")
    torch.manual_seed(5)
    model = SEVLM(cfg).eval()
    _set_vad_table(model, len(tok))
    pixels = {"pixel_values": pair_batch(builder)["pixel_values"]}
    kw = dict(max_new_tokens=10, strategy="sample", generator=None)
    cached = generate(model, builder, pixels, use_cache=True, **{**kw, "generator": torch.Generator().manual_seed(1)})
    full = generate(model, builder, pixels, use_cache=False, **{**kw, "generator": torch.Generator().manual_seed(1)})
    assert cached.token_ids == full.token_ids and any(len(t) > 3 for t in cached.token_ids)


def test_fusion_layer_trains_with_the_decoder_in_reference_mode(tok):
    course = SEVLM(micro_config(tok, vad_fusion=True))
    ref = reference_model(tok)
    groups = {g["name"]: g for g in course.parameter_groups(lr=1.0, vad_lr=2.0)}
    assert any(p is course.fusion.weight for p in groups["vad"]["params"])
    groups = {g["name"]: g for g in ref.parameter_groups(lr=1.0, vad_lr=2.0)}
    assert any(p is ref.fusion.weight for p in groups["main"]["params"])
    assert not any(p is ref.fusion.weight for p in groups["vad"]["params"])
    assert {id(p) for p in groups["vad"]["params"]} == {id(p) for p in ref.vad_encoder.parameters()}


def test_reference_run_configs_switch_on_the_whole_reference_mode():
    from pathlib import Path

    from sevlm_lib.cli.run_config import load_run_config
    from sevlm_lib.recipes import run_name

    root = Path(__file__).resolve().parents[1] / "configs"
    for name in ("tiny_sevlm_reference.yaml", "sevlm_full_reference.yaml"):
        run = load_run_config(root / name)
        cfg, recipe = run.model_config(), run.recipe(run.profile)
        assert cfg.is_reference, name
        assert run_name(cfg) == "full-reference"
        train = recipe.train_config(seed=0, device="cpu")
        assert (train.optimizer, train.adam_eps, train.max_grad_norm) == ("adamw_hf", 1e-6, 0.0)
        assert (train.monitor, train.select_metrics, train.patience) == ("emo_acc", ("emo_acc", "bleu4"), 11)


def test_a_reference_run_trains_and_decodes_through_the_pipeline(tmp_path):
    """A few steps of the tiny reference run: the reference's builder (lead space, padded to max_len), image
    transform and optimizer reach training; the selected best checkpoints are written and reload."""
    import pytest

    from sevlm_lib import pipeline
    from sevlm_lib.data import mini
    from sevlm_lib.models.sevlm import reference_config, tiny_config
    from sevlm_lib.recipes import recipe_for
    from sevlm_lib.settings import Settings

    real = Settings.from_env()
    settings = Settings.from_env(
        data_dir=tmp_path / "data", cache_dir=real.cache_dir, runs_dir=tmp_path / "runs", quiet=True,
        checkpoint_dir=tmp_path / "runs" / "checkpoints",
    )  # fmt: skip
    cfg = reference_config(tiny_config(vad_fusion=True, vad_head=True, contrastive=True))
    real_ensure = mini.ensure_artemis_mini
    with pytest.MonkeyPatch.context() as mp:
        small = lambda s=None, **kw: real_ensure(s, n_artworks=120)  # noqa: E731
        mp.setattr(pipeline, "ensure_artemis_mini", small)
        clip_data = pipeline.load_course_data(settings, progress=False)
        with pytest.raises(ValueError, match="image_style='reference'"):
            pipeline.build_model(clip_data, cfg, seed=0)
        data = pipeline.load_course_data(settings, progress=False, image_style="reference")
    builder = pipeline.builder_for(data, cfg)
    assert builder is not data.builder and builder.tokenizer.decode(builder.prompt_ids[1:2]).startswith(" the")
    assert builder.collate([builder.encode("awe", "a tall dark cliff")])["input_ids"].shape[1] == builder.max_len
    recipe = recipe_for("tiny", max_steps=4, eval_every=2, monitor="emo_acc", select_metrics=("bleu4",),
                        optimizer="adamw_hf", adam_eps=1e-6, max_grad_norm=0.0)  # fmt: skip
    calls = []

    def eval_fn(model):
        metrics, _ = pipeline.evaluate_model(model, data, "val", max_new_tokens=8)
        calls.append(metrics["emo_acc"])
        return {k: metrics[k] for k in ("emo_acc", "bleu4")}

    trained = pipeline.train_model(data, cfg, recipe, seed=0, name="ref", eval_fn=eval_fn)
    assert len(calls) == 2 and trained.history.best_step in (2, 4)
    assert (trained.checkpoint_dir / "best").is_dir() and (trained.checkpoint_dir / "best-bleu4").is_dir()
    model, loaded_builder = pipeline.load_from_checkpoint(trained.checkpoint_dir)
    assert model.config.is_reference and loaded_builder.prompt_ids == builder.prompt_ids
    state = json.loads((trained.checkpoint_dir / "best" / "state.json").read_text())
    assert (state["config"]["optimizer"], state["config"]["adam_eps"]) == ("adamw_hf", 1e-6)
