"""The VAD encoder: a tiny transformer over the sequence of per-token (valence, arousal, dominance) vectors.

As in the paper: ``d_model`` 3, 3 layers, 1 head, FFN 128, learned positions, post-norm layers. Unlike the
reference it is **causal** by default: position ``t`` only sees VAD of tokens ``<= t``. The reference's
non-causal encoder lets every teacher-forced position peek at the VAD of *later* words (future leakage) and
forces decoding to recompute the whole VAD path at every step. With a causal encoder each new token's VAD
is one table lookup plus one incremental step with a key/value cache, exactly like the decoder's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VADEncoderConfig:
    d_model: int = 3
    n_layers: int = 3
    n_heads: int = 1
    ffn: int = 128
    max_len: int = 64
    dropout: float = 0.1
    causal: bool = True


LayerCache = tuple[torch.Tensor, torch.Tensor]


class VADEncoderLayer(nn.Module):
    """A post-norm transformer encoder layer (as ``nn.TransformerEncoderLayer``) that can run incrementally."""

    def __init__(self, cfg: VADEncoderConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.ff1 = nn.Linear(cfg.d_model, cfg.ffn)
        self.ff2 = nn.Linear(cfg.ffn, cfg.d_model)
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor, cache: LayerCache | None = None
    ) -> tuple[torch.Tensor, LayerCache]:
        """``x [B, T, d]``; ``attn_bias [B, 1, T, S]`` additive (0 or -inf); ``cache`` holds earlier keys/values."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)
            v = torch.cat([cache[1], v], dim=2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + attn_bias
        attn = self.drop(torch.softmax(scores, dim=-1))
        b, _, t, _ = q.shape
        ctx = (attn @ v).transpose(1, 2).reshape(b, t, -1)
        x = self.norm1(x + self.drop(self.out(ctx)))
        x = self.norm2(x + self.drop(self.ff2(self.drop(F.relu(self.ff1(x))))))
        return x, (k, v)


class VADEncoder(nn.Module):
    """``forward(vad [B, T, 3], attention_mask [B, T]) -> [B, T, 3]``, optionally with a cache for decoding."""

    def __init__(self, cfg: VADEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Identity() if cfg.d_model == 3 else nn.Linear(3, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        self.layers = nn.ModuleList(VADEncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.out_proj = nn.Identity() if cfg.d_model == 3 else nn.Linear(cfg.d_model, 3)

    def forward(
        self,
        vad: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: list[LayerCache] | None = None,
        past_len: int = 0,
    ) -> tuple[torch.Tensor, list[LayerCache]]:
        """Encode ``T`` new positions that follow ``past_len`` cached ones. Returns ``(output, new_cache)``.

        ``attention_mask`` covers all ``past_len + T`` key positions (1 = real token). A non-causal encoder
        cannot be run incrementally: call it on the whole sequence with ``cache=None``.
        """
        b, t, _ = vad.shape
        s = past_len + t
        if s > self.cfg.max_len:
            raise ValueError(f"sequence of {s} tokens exceeds the VAD encoder's max_len={self.cfg.max_len}")
        if cache is not None and not self.cfg.causal:
            raise ValueError("the non-causal VAD encoder sees future tokens, so it cannot decode incrementally")
        pos = torch.arange(past_len, s, device=vad.device)
        x = self.in_proj(vad) + self.pos(pos)[None]
        bias = torch.zeros(b, 1, t, s, device=vad.device, dtype=x.dtype)
        if attention_mask is not None:
            bias = bias.masked_fill(~attention_mask[:, None, None, :s].bool(), float("-inf"))
        if self.cfg.causal:
            future = torch.ones(t, s, dtype=torch.bool, device=vad.device).triu(past_len + 1)
            bias = bias.masked_fill(future, float("-inf"))
        # A padded query row with every key masked would give NaN; let it attend to itself (it is ignored).
        all_masked = torch.isinf(bias).all(dim=-1, keepdim=True)
        bias = bias.masked_fill(all_masked, 0.0)
        new_cache: list[LayerCache] = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, bias, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.out_proj(x), new_cache
