"""A Show-Attend-Tell speaker grounded on an emotion: the small baseline of ArtEmis (Achlioptas et al., 2021).

Show, Attend and Tell (Xu et al., ICML 2015) decodes a caption with an LSTM that, at every step, looks at the
image again through *soft attention* over its regions. ArtEmis's emotion-grounded variant also feeds the
emotion label (embedded) at every step, so the speaker explains a *given* emotion: at test time that emotion
comes from a separate image-to-emotion classifier. The speaker never chooses the emotion itself.

Here the image regions are the patch features of the same frozen vision tower SEVLM uses (16 patches of the
tiny tower; 196 for CLIP ViT-B/16), so the comparison with SEVLM changes the decoder only. Each step:

* attention: ``e_p = w . tanh(W_v v_p + W_h h)``, ``alpha = softmax(e)``, context ``z = sigmoid(f(h)) * sum_p
  alpha_p v_p`` (the gate of Show-Attend-Tell, section 4.2.1);
* ``h, c = LSTMCell([embed(previous word); z; embed(emotion)], (h, c))``, next-word logits ``= W_o dropout(h)``.

The state starts from the mean patch feature (``h0, c0 = tanh(W mean_p v_p)``). The loss is the cross-entropy
of the explanation tokens plus the "doubly stochastic" attention penalty ``sum_p (1 - sum_t alpha_tp)^2``
that pushes the decoder to look at every region at some point (weight ``attention_reg``, 1 in the paper).

The speaker reads the course's training batches (``docs/architecture.md``) as they are: the emotion of each
sequence and its explanation tokens are taken from ``input_ids`` with ``emotion_mask`` and
``explanation_mask``, so it trains on exactly the batches the SEVLM variants see. Its own sequences are
``<bos> explanation <eos>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sevlm_lib.models.common import Captioner
from sevlm_lib.models.vision import VisionConfig, VisionEncoder, build_vision_encoder


@dataclass
class SATConfig:
    """Sizes of the speaker and the token ids it needs (``emotion_token_ids``: the tokens of each emotion word,
    in ``EMOTIONS`` order, used to read the emotion of a course batch)."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    vocab_size: int = 0
    pad_id: int = -1
    bos_id: int = -1
    eos_id: int = -1
    emotion_token_ids: list[list[int]] = field(default_factory=list)
    embed_dim: int = 64
    hidden_size: int = 64
    attention_dim: int = 64
    emotion_dim: int = 16
    dropout: float = 0.1
    attention_reg: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SATConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SATConfig fields {sorted(unknown)}")
        kw = dict(d)
        if isinstance(kw.get("vision"), dict):
            kw["vision"] = VisionConfig(**kw["vision"])
        kw["emotion_token_ids"] = [list(map(int, t)) for t in kw.get("emotion_token_ids", [])]
        return cls(**kw)

    @property
    def n_emotions(self) -> int:
        return len(self.emotion_token_ids)


@dataclass
class SATOutput:
    """``loss`` (cross-entropy + attention penalty), its parts, the logits ``[N, L-1, V]`` and the attention
    weights ``alphas [N, L-1, P]`` of the teacher-forced pass."""

    loss: torch.Tensor
    losses: dict[str, torch.Tensor]
    logits: torch.Tensor
    alphas: torch.Tensor


@dataclass
class SATGeneration:
    """Greedy (or sampled) token ids per image, without ``<bos>``/``<eos>``, and each step's attention
    ``[steps, P]`` (the steps that produced those tokens)."""

    token_ids: list[list[int]]
    alphas: list[torch.Tensor]


def explanation_targets(
    input_ids: torch.Tensor,
    emotion_mask: torch.Tensor,
    explanation_mask: torch.Tensor,
    emotion_token_ids: Sequence[Sequence[int]],
    *,
    bos_id: int,
    eos_id: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """From course sequences ``[N, T]`` to the speaker's ``<bos> explanation <eos>`` ids ``[N, L]`` (right
    padded with ``pad_id``) and the emotion index of each sequence ``[N]``.

    The emotion is the token run under ``emotion_mask``, looked up in ``emotion_token_ids``; a run that is no
    emotion raises ``ValueError`` naming the row (1-based).
    """
    lookup = {tuple(int(t) for t in ids): i for i, ids in enumerate(emotion_token_ids)}
    rows, emotions = [], []
    ids_list = input_ids.tolist()
    emo_list = emotion_mask.bool().tolist()
    expl_list = explanation_mask.bool().tolist()
    for r, (ids, emo, expl) in enumerate(zip(ids_list, emo_list, expl_list, strict=True), start=1):
        word = tuple(t for t, m in zip(ids, emo, strict=True) if m)
        if word not in lookup:
            raise ValueError(
                f"sequence {r}: its emotion tokens {list(word)} are none of the {len(lookup)} emotions"
            )
        emotions.append(lookup[word])
        rows.append([bos_id, *(t for t, m in zip(ids, expl, strict=True) if m), eos_id])
    width = max(map(len, rows))
    out = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(input_ids.device), torch.tensor(emotions, dtype=torch.long, device=input_ids.device)


class SATSpeaker(Captioner):
    """Emotion-grounded Show-Attend-Tell. ``forward(batch) -> SATOutput``; :meth:`generate` decodes."""

    def __init__(self, config: SATConfig, vision: VisionEncoder | None = None):
        super().__init__()
        if config.vocab_size <= 0 or min(config.pad_id, config.bos_id, config.eos_id) < 0:
            raise ValueError("SATConfig has no vocabulary: set vocab_size, pad_id, bos_id and eos_id")
        if config.n_emotions == 0:
            raise ValueError("SATConfig.emotion_token_ids is empty: give the token ids of each emotion")
        self.config = config
        # the tower first: with the same seed it gets the same weights as SEVLM's (also built first)
        self.vision = vision if vision is not None else build_vision_encoder(config.vision)
        dv, h, a = self.vision.hidden_size, config.hidden_size, config.attention_dim
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_id)
        self.emotion_embed = nn.Embedding(config.n_emotions, config.emotion_dim)
        self.att_v = nn.Linear(dv, a)
        self.att_h = nn.Linear(h, a)
        self.att_out = nn.Linear(a, 1)
        self.gate = nn.Linear(h, dv)
        self.init_h = nn.Linear(dv, h)
        self.init_c = nn.Linear(dv, h)
        self.lstm = nn.LSTMCell(config.embed_dim + dv + config.emotion_dim, h)
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(h, config.vocab_size)

    # ------------------------------------------------------------------ pieces
    def targets(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [N, L], emotion [N])``: ``sat_tokens``/``emotion_labels`` if the batch has them, else
        read from a course batch (:func:`explanation_targets`)."""
        if "sat_tokens" in batch and "emotion_labels" in batch:
            return batch["sat_tokens"], batch["emotion_labels"]
        c = self.config
        return explanation_targets(
            batch["input_ids"],
            batch["emotion_mask"],
            batch["explanation_mask"],
            c.emotion_token_ids,
            bos_id=c.bos_id,
            eos_id=c.eos_id,
            pad_id=c.pad_id,
        )

    def init_state(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = feats.mean(1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def step(
        self,
        feats: torch.Tensor,
        feats_proj: torch.Tensor,
        words: torch.Tensor,
        emotion: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One LSTM step: ``(alpha [N, P], (h, c))``; the next-word logits are ``self.logits(h)``.
        ``feats_proj = att_v(feats)``, ``emotion``: the embedded emotions ``[N, emotion_dim]``."""
        h, c = state
        scores = self.att_out(torch.tanh(feats_proj + self.att_h(h)[:, None])).squeeze(-1)
        alpha = scores.softmax(-1)
        context = torch.sigmoid(self.gate(h)) * torch.bmm(alpha.unsqueeze(1), feats).squeeze(1)
        h, c = self.lstm(torch.cat([self.embed(words), context, emotion], -1), (h, c))
        return alpha, (h, c)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-word logits from LSTM states (any leading shape)."""
        return self.out(self.drop(hidden))

    # ------------------------------------------------------------------ training
    def forward(self, batch: dict[str, torch.Tensor]) -> SATOutput:
        tokens, emotion = self.targets(batch)
        feats = self.image_features(batch)
        image_index = batch.get("image_index")
        if image_index is not None:
            feats = feats[image_index]
        if feats.shape[0] != tokens.shape[0]:
            raise ValueError(
                f"{feats.shape[0]} image rows for {tokens.shape[0]} sequences: pass 'image_index'"
            )
        proj = self.att_v(feats)
        emo = self.emotion_embed(emotion)
        state = self.init_state(feats)
        hiddens, alphas = [], []
        for t in range(tokens.shape[1] - 1):
            alpha, state = self.step(feats, proj, tokens[:, t], emo, state)
            hiddens.append(state[0])
            alphas.append(alpha)
        all_logits = self.logits(torch.stack(hiddens, 1))  # one projection for all steps
        all_alphas = torch.stack(alphas, 1)
        target = tokens[:, 1:]
        scored = target != self.config.pad_id
        xe = F.cross_entropy(
            all_logits.reshape(-1, all_logits.shape[-1]).float(),
            target.masked_fill(~scored, -100).reshape(-1),
            ignore_index=-100,
        )
        coverage = (all_alphas * scored.unsqueeze(-1)).sum(1)  # [N, P]: attention each region got
        attention = ((1.0 - coverage) ** 2).sum(-1).mean()
        loss = xe + self.config.attention_reg * attention
        return SATOutput(loss, {"xe": xe, "attention": attention}, all_logits, all_alphas)

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def generate(
        self,
        batch: dict[str, torch.Tensor],
        emotions: torch.Tensor,
        max_new_tokens: int = 25,
        *,
        strategy: str = "greedy",
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> SATGeneration:
        """Decode one explanation per image row for the given emotion indices ``[B]``; stops at ``<eos>``."""
        if strategy not in ("greedy", "sample"):
            raise ValueError(f"unknown decoding strategy {strategy!r}: expected 'greedy' or 'sample'")
        was_training = self.training
        self.eval()
        try:
            feats = self.image_features(batch)
            n = feats.shape[0]
            if emotions.shape != (n,):
                raise ValueError(
                    f"expected {n} emotion indices (one per image), got shape {tuple(emotions.shape)}"
                )
            proj = self.att_v(feats)
            emo = self.emotion_embed(emotions.to(feats.device))
            state = self.init_state(feats)
            words = torch.full((n,), self.config.bos_id, dtype=torch.long, device=feats.device)
            finished = torch.zeros(n, dtype=torch.bool, device=feats.device)
            tokens, alphas = [], []
            for _ in range(max_new_tokens):
                alpha, state = self.step(feats, proj, words, emo, state)
                logits = self.logits(state[0])
                if strategy == "greedy":
                    words = logits.argmax(-1)
                else:
                    probs = (logits.float() / max(temperature, 1e-6)).softmax(-1)
                    words = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
                words = torch.where(finished, torch.full_like(words, self.config.eos_id), words)
                tokens.append(words)
                alphas.append(alpha)
                finished |= words == self.config.eos_id
                if bool(finished.all()):
                    break
        finally:
            self.train(was_training)
        rows = torch.stack(tokens, 1).tolist()
        att = torch.stack(alphas, 1).cpu()
        eos = self.config.eos_id
        ids = [row[: row.index(eos)] if eos in row else row for row in rows]
        return SATGeneration(ids, [att[i, : len(r)] for i, r in enumerate(ids)])
