"""SEVLM: a frozen CLIP vision tower, a GPT-2 decoder with cross-attention, and three switchable additions.

``SEVLMConfig`` holds real boolean switches (the reference's ``argparse type=bool`` flags cannot be turned
off: ``--flag False`` is still true). With every switch off the model *is* the NLX-GPT-style baseline: no
extra parameters, the same loss.

* ``vad_fusion``: per-token VAD -> causal VAD encoder -> concatenated to the word embedding at explanation
  positions -> ``Linear(d + 3 -> d)``;
* ``vad_head``: ``Linear(d -> 3)`` predicts the next token's VAD, masked MSE;
* ``contrastive``: an MLP scores (image, emotion, explanation) against two kinds of negatives.

Optional modules are created *after* the shared ones, so every variant built with the same seed starts
from the same vision tower and decoder weights.

**Reference mode.** Where the course departs from the public reference implementation (BetterZH/SEVLM-code),
``SEVLMConfig`` has a switch per difference, off by default; :func:`reference_config` turns them all on.
docs/reference.md lists every difference, its switch and its test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sevlm_lib.models.common import Captioner
from sevlm_lib.models.decoder import DecoderConfig, build_decoder
from sevlm_lib.models.heads import (
    ContrastiveScorer,
    VADHead,
    contrastive_loss,
    derangement,
    masked_mean,
    masked_vad_mse,
    reference_contrastive_loss,
    reference_negative_ids,
)
from sevlm_lib.models.negatives import NEGATIVE_PROMPTS, negative_one_rows
from sevlm_lib.models.vad_encoder import STYLES, LayerCache, VADEncoder, VADEncoderConfig
from sevlm_lib.models.vision import (
    CLIP_HUB_ID,
    CLIP_REVISION,
    VisionConfig,
    VisionEncoder,
    build_vision_encoder,
)
from sevlm_lib.text import EMOTION_SEGMENT, EXPLANATION_SEGMENT, PAD

SWITCHES = ("vad_fusion", "vad_head", "contrastive")

# The reference-mode fields of SEVLMConfig, their course defaults and the reference's values. ``to_dict``
# leaves a field out while it has its default, so the saved configs (and run fingerprints) of the course's
# variants do not change.
REFERENCE_DEFAULTS: dict[str, Any] = {
    "fusion_input": "word",
    "fusion_span": "explanation",
    "embedding_spans": "course",
    "vad_head_span": "explanation",
    "reference_offset": 6,
    "decoder_padding_mask": True,
    "visual_negatives": "derangement",
    "contrastive_eps": 0.0,
    "decode_stop": "eos",
    "prompt_lead_space": False,
    "pad_to_max_len": False,
    "truncation": "explanation",
    "image_transform": "clip",
    "fusion_lr_group": "vad",
}
REFERENCE_VALUES: dict[str, Any] = {
    "fusion_input": "embedding_sum",
    "fusion_span": "offset",
    "embedding_spans": "offset",
    "vad_head_span": "offset",
    "reference_offset": 6,
    "decoder_padding_mask": False,
    "visual_negatives": "reference",
    "contrastive_eps": 1e-8,
    "decode_stop": "any_special",
    "prompt_lead_space": True,
    "pad_to_max_len": True,
    "truncation": "sequence",
    "image_transform": "reference",
    "fusion_lr_group": "main",
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "fusion_input": ("word", "embedding_sum"),
    "fusion_span": ("explanation", "offset"),
    "embedding_spans": ("course", "offset"),
    "vad_head_span": ("explanation", "offset"),
    "visual_negatives": ("derangement", "reference"),
    "decode_stop": ("eos", "any_special"),
    "truncation": ("explanation", "sequence"),
    "image_transform": ("clip", "reference"),
    "fusion_lr_group": ("vad", "main"),
    "negative_prompt": NEGATIVE_PROMPTS,
}
# Course options that are not reference-mode fields; ``to_dict`` also leaves them out at their defaults, so
# the saved configs (and run fingerprints) of runs that do not use them stay the same.
OPTION_DEFAULTS: dict[str, Any] = {"negative_prompt": "own"}


@dataclass
class SEVLMConfig:
    """Everything needed to rebuild a SEVLM (saved as JSON with every checkpoint)."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vad_encoder: VADEncoderConfig = field(default_factory=VADEncoderConfig)
    vocab_size: int = 0
    pad_id: int = -1
    emotion_segment_id: int = -1
    explanation_segment_id: int = -1
    vad_fusion: bool = False
    vad_head: bool = False
    contrastive: bool = False
    vad_loss_weight: float = 1.0
    contrastive_loss_weight: float = 1.0

    # ---- reference mode (docs/reference.md); every default is the course's behaviour ----
    fusion_input: str = "word"
    """What the fusion layer sees besides the VAD code: ``"word"`` (the word embedding; the course) or
    ``"embedding_sum"`` (word + position + segment embedding, the reference; the decoder's own position
    embedding is then not added again at fused positions)."""
    fusion_span: str = "explanation"
    """Where VAD is fused: ``"explanation"`` (the explanation segment, from `` because``, padding excluded;
    the course) or ``"offset"`` (every position ``>= reference_offset``, padding included; the reference)."""
    embedding_spans: str = "course"
    """The contrastive head's emotion / explanation embeddings: ``"course"`` (means over the emotion word's
    tokens and the explanation words) or ``"offset"`` (means over positions ``[0, reference_offset)`` and
    ``[reference_offset, T)``, padding included; the reference)."""
    vad_head_span: str = "explanation"
    """Which VAD targets score: ``"explanation"`` (next tokens in the explanation segment with a known VAD;
    the course) or ``"offset"`` (next tokens at positions ``>= reference_offset`` whose VAD has any non-zero
    value, padding included; the reference)."""
    reference_offset: int = 6
    """The reference's fixed prompt length (``<bos> the emotion is X`` is 5 tokens for one-token emotions,
    so position 5 is `` because``; it is wrong for ``contentment`` and ``something else``)."""
    decoder_padding_mask: bool = True
    """Give the decoder the attention mask (the course). The reference passes none: real positions are
    unchanged (causal), but padding positions, which its explanation mean includes, attend to padding."""
    visual_negatives: str = "derangement"
    """Negative 2: ``"derangement"`` (one random derangement of the artworks for both sequences of an
    artwork; the course) or ``"reference"`` (two independent draws of the reference's ``neg_ids``)."""
    contrastive_eps: float = 0.0
    """0: the contrastive loss is a stable cross-entropy (the course). ``> 0``: the reference's
    ``-log(eps + e^s+ / (eps + e^s+ + e^s1 + e^s2))`` with this ``eps`` (1e-8 there)."""
    decode_stop: str = "eos"
    """Decoding stops at ``"eos"`` (the course) or at ``"any_special"`` token (the reference)."""
    prompt_lead_space: bool = False
    """The prompt starts with ``Ġthe`` (the reference: it tokenizes `` the emotion is``) instead of ``the``."""
    pad_to_max_len: bool = False
    """Batches are padded to ``max_len`` (the reference) instead of the longest sequence (the course)."""
    truncation: str = "explanation"
    """A too-long sequence loses explanation words and keeps ``<eos>`` (``"explanation"``, the course) or is
    cut at ``max_len`` whatever that drops, ``<eos>`` included (``"sequence"``, the reference)."""
    image_transform: str = "clip"
    """``"clip"``: resize the short side (bicubic), centre-crop, CLIP's statistics (the course).
    ``"reference"``: squash to a square (bilinear) and ImageNet's statistics (the reference)."""
    fusion_lr_group: str = "vad"
    """Which learning rate the fusion layer trains at: ``"vad"`` (with the VAD encoder at ``vad_lr``; the
    course) or ``"main"`` (with the decoder at ``lr``; the reference, where it is part of its GPT-2 model)."""

    # ---- course options (OPTION_DEFAULTS): the default is the paper's and the reference's behaviour ----
    negative_prompt: str = "own"
    """Negative 1 (the same artwork's other explanation) is encoded under ``"own"`` prompt (``the emotion is
    X'`` with the other annotation's emotion; the paper) or under the ``"positive"``'s prompt, so that only the
    explanation words differ and the prompt cannot give the negative away (``run_name`` suffix ``-closed``;
    one more decoder pass over the batch's sequences)."""

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"SEVLMConfig.{name}={getattr(self, name)!r}: expected one of {', '.join(choices)}")
        if isinstance(self.reference_offset, bool) or not isinstance(self.reference_offset, int) or self.reference_offset < 1:
            raise ValueError(f"SEVLMConfig.reference_offset={self.reference_offset!r}: expected an integer >= 1")
        if self.contrastive_eps < 0:
            raise ValueError(f"SEVLMConfig.contrastive_eps={self.contrastive_eps!r}: expected a number >= 0")

    def to_dict(self) -> dict[str, Any]:
        """``asdict``, less the reference-mode fields at their defaults (so default configs are unchanged)."""
        d = asdict(self)
        for name, default in {**REFERENCE_DEFAULTS, **OPTION_DEFAULTS}.items():
            if d[name] == default and type(d[name]) is type(default):
                del d[name]
        if d["vad_encoder"]["style"] != "reference":
            del d["vad_encoder"]["style"]  # implied by ``causal``
        return d

    @property
    def is_reference(self) -> bool:
        """Whether every reference-mode switch is on (as :func:`reference_config` sets them)."""
        on = all(getattr(self, k) == v for k, v in REFERENCE_VALUES.items())
        return on and self.vad_encoder.style == "reference"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SEVLMConfig:
        sub = {"vision": VisionConfig, "decoder": DecoderConfig, "vad_encoder": VADEncoderConfig}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SEVLMConfig fields {sorted(unknown)}")
        kw = {k: (sub[k](**v) if k in sub else v) for k, v in d.items()}
        return cls(**kw)

    def with_tokenizer(self, tokenizer: Any) -> SEVLMConfig:
        """A copy whose vocabulary and special ids match ``tokenizer`` (a course tokenizer)."""

        ids = tokenizer.convert_tokens_to_ids
        d = self.to_dict()
        d.update(
            vocab_size=len(tokenizer),
            pad_id=ids(PAD),
            emotion_segment_id=ids(EMOTION_SEGMENT),
            explanation_segment_id=ids(EXPLANATION_SEGMENT),
        )
        return SEVLMConfig.from_dict(d)

    def with_switches(self, **switches: Any) -> SEVLMConfig:
        """A copy with some switches changed: the three additions, loss weights, reference-mode fields, and
        the VAD encoder's style via ``vad_style=`` (``vad_causal=True/False`` is the old boolean form), and a small
        vision tower's weights via ``tower="random"|"tiny-clip"``, the VAD encoder's width via ``vad_width=``
        (``VADEncoderConfig.d_model``; 3 is the paper's), and ``negative_prompt="own"|"positive"``."""
        d = self.to_dict()
        plain = {f.name for f in fields(self)} - {"vision", "decoder", "vad_encoder"}
        for k, v in switches.items():
            if k == "vad_causal":
                d["vad_encoder"]["causal"] = bool(v)
                d["vad_encoder"]["style"] = "causal" if v else "noncausal"
            elif k == "vad_style":
                if v not in STYLES:
                    raise ValueError(f"vad_style={v!r}: expected one of {', '.join(STYLES)}")
                d["vad_encoder"]["style"] = v
                d["vad_encoder"]["causal"] = v == "causal"
            elif k == "tower":  # a small tower's weights: "random" or "tiny-clip" (VisionConfig.weights)
                d["vision"]["weights"] = v
            elif k == "vad_width":  # the VAD encoder's width (a Linear 3 -> d in, d -> 3 out when d > 3)
                d["vad_encoder"]["d_model"] = v
            elif k in plain:
                d[k] = v
            else:
                raise ValueError(
                    f"unknown switch {k!r}: expected one of {SWITCHES}, loss weights, reference-mode fields "
                    f"({', '.join(REFERENCE_DEFAULTS)}), negative_prompt, vad_style, vad_causal, vad_width or tower"
                )
        return SEVLMConfig.from_dict(d)

    @property
    def variant(self) -> str:
        """A short name: ``baseline``, ``+fusion``, ``+head``, ``+contrastive``, ``full`` or a ``+a+b`` mix."""
        on = [s for s in SWITCHES if getattr(self, s)]
        if not on:
            return "baseline"
        if len(on) == 3:
            return "full"
        short = {"vad_fusion": "fusion", "vad_head": "head", "contrastive": "contrastive"}
        return "".join(f"+{short[s]}" for s in on)


def tiny_config(**switches: bool | float) -> SEVLMConfig:
    """The tiny profile: a ~0.1M-parameter CLIP tower (64 px, 16 patches) pre-trained on the course data as a
    tiny CLIP (``weights="tiny-clip"``, :mod:`sevlm_lib.tower`) and a 2-layer, 64-wide GPT-2.

    ``tiny_config(tower="random")`` keeps the tower's random initialisation (notebook 02's comparison)."""
    cfg = SEVLMConfig(vision=VisionConfig(weights="tiny-clip"))
    return cfg.with_switches(**switches) if switches else cfg


def full_config(**switches: bool | float) -> SEVLMConfig:
    """The full profile: CLIP ViT-B/16 (frozen, 196 patches) and distilgpt2 with new cross-attention."""
    cfg = SEVLMConfig(
        vision=VisionConfig(hub_id=CLIP_HUB_ID, revision=CLIP_REVISION, image_size=224, patch_size=16,
                            hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, frozen=True),
        decoder=DecoderConfig(hub_id="distilgpt2", revision="2290a62682d06624634c1f46a6ad5be0f47f38aa",
                              n_embd=768, n_layer=6, n_head=12, n_positions=1024),
    )
    return cfg.with_switches(**switches) if switches else cfg


def reference_config(config: SEVLMConfig) -> SEVLMConfig:
    """A copy of ``config`` with every reference behaviour on (docs/reference.md): the reference's VAD-encoder
    layer, fusion of the word + position + segment sum from position 6 on, the contrastive embeddings as
    means over positions ``[0, 6)`` / ``[6, T)`` (padding included, the decoder run without a padding mask),
    the VAD loss from position 6 with the any-non-zero mask, two independent draws of visual negatives, the
    reference's contrastive loss, decoding that stops at any special token, the `` the`` prompt, padding to
    ``max_len``, whole-sequence truncation, the squash-to-square ImageNet image transform, and the fusion
    layer in the decoder's learning-rate group.

    The additions switched on in ``config`` stay as they are (the reference trains all three). Recipe-level
    differences (optimiser, model selection) are not model settings: see configs/sevlm_full_reference.yaml.
    """
    return config.with_switches(vad_style="reference", **REFERENCE_VALUES)


def builder_options(config: SEVLMConfig) -> dict[str, Any]:
    """The ``SequenceBuilder`` keyword arguments that ``config`` implies (prompt, padding, truncation)."""
    return {
        "prompt_lead_space": config.prompt_lead_space,
        "pad_to_max_len": config.pad_to_max_len,
        "truncation": config.truncation,
    }


def random_weights(cfg: SEVLMConfig) -> SEVLMConfig:
    """The same architecture with ``hub_id`` cleared, so it builds offline with random weights (benchmarks)."""
    d = cfg.to_dict()
    d["vision"]["hub_id"] = d["decoder"]["hub_id"] = None
    return SEVLMConfig.from_dict(d)


@dataclass
class SEVLMOutput:
    """What ``SEVLM.forward`` returns: the weighted total ``loss``, its named parts, logits and hidden states."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    logits: torch.Tensor
    hidden_states: torch.Tensor
    vad_pred: torch.Tensor | None = None
    scores: dict[str, torch.Tensor] | None = None


@dataclass
class DecodeState:
    """Caches carried between incremental decoding steps."""

    cache: Any = None
    vad_cache: list[LayerCache] | None = None
    past_len: int = 0


class SEVLM(Captioner):
    """The model. ``forward(batch) -> SEVLMOutput``; see docs/architecture.md for the batch keys."""

    def __init__(self, config: SEVLMConfig, vision: VisionEncoder | None = None, decoder: nn.Module | None = None):
        super().__init__()
        if config.vocab_size <= 0 or min(config.pad_id, config.emotion_segment_id, config.explanation_segment_id) < 0:
            raise ValueError("SEVLMConfig has no vocabulary: call config.with_tokenizer(tokenizer) first")
        self.config = config
        self.vision = vision if vision is not None else build_vision_encoder(config.vision)
        self.decoder = decoder if decoder is not None else build_decoder(config.decoder, config.vocab_size)
        d = self.decoder.config.n_embd
        dv = self.vision.hidden_size
        self.image_proj: nn.Module = nn.Identity() if dv == d else nn.Linear(dv, d)
        self.register_buffer("token_vad", torch.zeros(config.vocab_size, 3))
        self.register_buffer("token_vad_known", torch.zeros(config.vocab_size, dtype=torch.bool))
        if config.vad_fusion:
            self.vad_encoder = VADEncoder(config.vad_encoder)
            self.fusion = nn.Linear(d + 3, d)
        if config.vad_head:
            self.vad_head = VADHead(d)
        if config.contrastive:
            self.scorer = ContrastiveScorer(d)

    # ------------------------------------------------------------------ pieces
    @property
    def d_model(self) -> int:
        return self.decoder.config.n_embd

    def set_token_vad(self, table: torch.Tensor, known: torch.Tensor) -> None:
        """Install the ``[vocab, 3]`` token VAD table and its known-mask (from ``Lexicon.token_vad_table``)."""
        if table.shape != self.token_vad.shape or known.shape != self.token_vad_known.shape:
            raise ValueError(f"token VAD table of shape {tuple(table.shape)} does not match vocab {self.config.vocab_size}")
        self.token_vad.copy_(table)
        self.token_vad_known.copy_(known.bool())

    def encode_images(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The memory the decoder cross-attends to: ``[B, P, d]``."""
        return self.image_proj(self.image_features(batch))

    def embed(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        explanation_segment: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: DecodeState | None = None,
        vad: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Word embeddings (VAD-fused at explanation positions when switched on) + segment embeddings.

        ``vad [B, T, 3]``, when given, replaces the token-table lookup as the VAD encoder's input (for
        feeding the reference's per-word VAD). With ``fusion_input="embedding_sum"`` the fused positions
        hold ``fusion(word + position + segment, VAD code) - position``: the decoder adds the position
        embedding back, so the first block sees the reference's fused vector.
        """
        cfg = self.config
        wte = self.decoder.transformer.wte
        words = wte(input_ids)
        if not cfg.vad_fusion:
            return words + wte(segment_ids)
        if vad is None:
            vad = self.token_vad[input_ids]
        elif vad.shape != (*input_ids.shape, 3):
            raise ValueError(f"vad of shape {tuple(vad.shape)} does not match input_ids {tuple(input_ids.shape)} x 3")
        if state is None:
            enc, _ = self.vad_encoder(vad, attention_mask)
        else:
            enc, state.vad_cache = self.vad_encoder(vad, attention_mask, state.vad_cache, state.past_len)
        if cfg.fusion_input == "word" and cfg.fusion_span == "explanation":  # the course
            fused = self.fusion(torch.cat([words, enc.to(words.dtype)], dim=-1))
            words = torch.where(explanation_segment.unsqueeze(-1), fused, words)
            return words + wte(segment_ids)
        past = 0 if state is None else state.past_len
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)
        if cfg.fusion_span == "explanation":
            span = explanation_segment
        else:
            span = (positions >= cfg.reference_offset)[None].expand_as(input_ids)
        plain = words + wte(segment_ids)
        if cfg.fusion_input == "word":
            fused = self.fusion(torch.cat([words, enc.to(words.dtype)], dim=-1)) + wte(segment_ids)
            return torch.where(span.unsqueeze(-1), fused, plain)
        wpe = self.decoder.transformer.wpe(positions)[None]
        total = words + wpe + wte(segment_ids)  # the reference's order: (word + position) + segment
        fused = self.fusion(torch.cat([total, enc.to(total.dtype)], dim=-1))
        return torch.where(span.unsqueeze(-1), fused - wpe, plain)

    def decode(
        self,
        inputs_embeds: torch.Tensor,
        memory: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        state: DecodeState | None = None,
        output_attentions: bool = False,
    ) -> Any:
        """Run the GPT-2 trunk with cross-attention over ``memory``; returns the transformers output."""
        kwargs: dict[str, Any] = {}
        if state is not None:
            kwargs.update(cache=state.cache, use_cache=True)
            pos = torch.arange(state.past_len, state.past_len + inputs_embeds.shape[1], device=inputs_embeds.device)
            kwargs["position_ids"] = pos[None].expand(inputs_embeds.shape[0], -1)
        else:
            kwargs["use_cache"] = False
        if output_attentions:
            kwargs["output_attentions"] = True
        out = self.decoder.transformer(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            encoder_hidden_states=memory,
            **kwargs,
        )
        if state is not None:
            state.cache = out.cache
            state.past_len += inputs_embeds.shape[1]
        return out

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> SEVLMOutput:
        cfg = self.config
        ids, attn = batch["input_ids"], batch["attention_mask"]
        expl_seg = batch["explanation_segment"]
        memory_per_image = self.encode_images(batch)
        image_index = batch.get("image_index")
        if image_index is None:
            image_index = torch.arange(ids.shape[0], device=ids.device)
        memory = memory_per_image[image_index]
        vad_values = batch.get("vad_values")
        hidden = self.text_hidden(batch, memory)
        logits = self.decoder.lm_head(hidden)
        labels = batch["labels"]
        xe = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        losses = {"xe": xe}
        total = xe
        vad_pred = None
        if cfg.vad_head:
            vad_pred = self.vad_head(hidden)
            nxt = ids[:, 1:]
            if vad_values is None:
                target, known = self.token_vad[nxt], self.token_vad_known[nxt]
            else:
                target = vad_values[:, 1:].float()
                known = (target != 0).any(-1)
            if cfg.vad_head_span == "explanation":
                mask = known & expl_seg[:, 1:] & attn[:, 1:].bool()
            else:  # the reference: targets from position reference_offset on, kept when any value is non-zero
                at = torch.arange(1, ids.shape[1], device=ids.device) >= cfg.reference_offset
                mask = (target != 0).any(-1) & at[None]
            losses["vad"] = masked_vad_mse(vad_pred[:, :-1].float(), target, mask)
            total = total + cfg.vad_loss_weight * losses["vad"]
        scores = None
        if cfg.contrastive:
            losses["contrastive"], scores = self._contrastive(batch, memory_per_image, image_index, hidden, memory)
            total = total + cfg.contrastive_loss_weight * losses["contrastive"]
        return SEVLMOutput(total, losses, logits, hidden, vad_pred, scores)

    def text_hidden(self, batch: dict[str, torch.Tensor], memory: torch.Tensor) -> torch.Tensor:
        """The decoder's last hidden states ``[N, T, d]`` for the token rows of ``batch`` over ``memory [N, P, d]``
        (one image memory per row), as in :meth:`forward` (``vad_values`` used when the batch has it)."""
        ids, attn = batch["input_ids"], batch["attention_mask"]
        vad_values = batch.get("vad_values")  # passed only when given: subclasses may override embed() without it
        extra = {} if vad_values is None else {"vad": vad_values}
        embeds = self.embed(ids, batch["segment_ids"], batch["explanation_segment"], attn, **extra)
        mask = attn if self.config.decoder_padding_mask else None
        return self.decode(embeds, memory, mask).last_hidden_state

    def span_embeddings(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The contrastive head's emotion and explanation embeddings ``[N, d]`` (``embedding_spans``)."""
        if self.config.embedding_spans == "course":
            return masked_mean(hidden, batch["emotion_mask"]), masked_mean(hidden, batch["explanation_mask"])
        k = self.config.reference_offset
        if hidden.shape[1] <= k:
            raise ValueError(
                f"embedding_spans='offset': sequences of {hidden.shape[1]} positions have no explanation "
                f"after position {k} (reference_offset)"
            )
        return hidden[:, :k].mean(1), hidden[:, k:].mean(1)

    def negative_one_explanations(
        self, batch: dict[str, torch.Tensor], memory: torch.Tensor, explanation: torch.Tensor
    ) -> torch.Tensor:
        """Negative 1's explanation embeddings ``[N, d]``: the partner's (``negative_prompt="own"``), or the
        partner's explanation segment re-encoded under each positive's prompt (``"positive"``)."""
        if self.config.negative_prompt == "own":
            return explanation[batch["pair_index"]]
        cfg = self.config
        rows = negative_one_rows(
            batch, "positive", pad_id=cfg.pad_id, explanation_segment_id=cfg.explanation_segment_id
        )
        return self.span_embeddings(self.text_hidden(rows, memory), rows)[1]

    def _contrastive(
        self,
        batch: dict[str, torch.Tensor],
        memory: torch.Tensor,
        image_index: torch.Tensor,
        hidden: torch.Tensor,
        row_memory: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        n_images, n_seq = memory.shape[0], hidden.shape[0]
        expected = torch.arange(n_images, device=hidden.device).repeat_interleave(2)
        if n_seq != 2 * n_images or not torch.equal(image_index, expected) or "pair_index" not in batch:
            raise ValueError(
                "the contrastive head needs pair batches: two annotations per artwork, ordered "
                "[a0, a0', a1, a1', ...] with 'pair_index' (use data.datasets.PairDataset)"
            )
        cfg = self.config
        image = memory.mean(1)[image_index]
        emotion, explanation = self.span_embeddings(hidden, batch)
        pos = self.scorer(image, emotion, explanation)
        neg_emotion = self.scorer(image, emotion, self.negative_one_explanations(batch, row_memory, explanation))
        if cfg.visual_negatives == "derangement":
            other = derangement(n_images).to(hidden.device)
            slot = torch.arange(n_seq, device=hidden.device) % 2
            negative = 2 * other[image_index] + slot
        else:  # the reference: one draw for the first sequences of the artworks, another for the second
            first, second = reference_negative_ids(n_images), reference_negative_ids(n_images)
            negative = torch.stack([2 * first, 2 * second + 1], dim=1).reshape(-1).to(hidden.device)
        neg_visual = self.scorer(image, emotion, explanation[negative])
        scores = {"pos": pos, "neg_emotion": neg_emotion, "neg_visual": neg_visual}
        if cfg.contrastive_eps > 0:
            return reference_contrastive_loss(pos, neg_emotion, neg_visual, cfg.contrastive_eps), scores
        return contrastive_loss(pos, neg_emotion, neg_visual), scores

    def parameter_groups(self, lr: float = 2e-5, vad_lr: float = 4e-5, *, heads: bool = False) -> list[dict[str, Any]]:
        """AdamW groups: the VAD path (encoder + fusion) at ``vad_lr``, everything else trainable at ``lr``.

        With ``fusion_lr_group="main"`` (reference mode) only the VAD encoder is in the ``vad`` group.
        ``heads=True`` moves the contrastive scorer and the VAD head (those switched on) out of ``main`` into
        a ``heads`` group, also at ``lr``: with ``TrainConfig.clip_groups`` each group is clipped on its own.
        """
        vad_ids: set[int] = set()
        if self.config.vad_fusion:
            vad_path = (self.vad_encoder, self.fusion) if self.config.fusion_lr_group == "vad" else (self.vad_encoder,)
            vad_ids = {id(p) for m in vad_path for p in m.parameters()}
        head_ids: set[int] = set()
        if heads:
            modules = [getattr(self, n) for n in ("scorer", "vad_head") if hasattr(self, n)]
            head_ids = {id(p) for m in modules for p in m.parameters() if p.requires_grad}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in vad_ids | head_ids]
        groups = [{"name": "main", "params": main, "lr": lr}]
        if vad_ids:
            vad = [p for p in self.parameters() if id(p) in vad_ids]
            groups.append({"name": "vad", "params": vad, "lr": vad_lr})
        if head_ids:
            groups.append({"name": "heads", "params": [p for p in self.parameters() if id(p) in head_ids], "lr": lr})
        return groups
