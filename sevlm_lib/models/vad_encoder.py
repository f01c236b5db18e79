"""The VAD encoder: a tiny transformer over the sequence of per-token (valence, arousal, dominance) vectors.

As in the paper: ``d_model`` 3, 3 layers, 1 head, FFN 128, learned positions, post-norm layers. Unlike the
reference it is **causal** by default: position ``t`` only sees VAD of tokens ``<= t``. The reference's
non-causal encoder lets every teacher-forced position peek at the VAD of *later* words (future leakage) and
forces decoding to recompute the whole VAD path at every step. With a causal encoder each new token's VAD
is one table lookup plus one incremental step with a key/value cache, exactly like the decoder's.

``d_model`` 3 is the paper's width, and a narrow one: a post-norm layer's output then lies on a circle
(:func:`layernorm_circle`). ``VADEncoderConfig(d_model=8)`` (``with_switches(vad_width=8)``) runs the layers
``d_model`` wide between a ``Linear(3, d_model)`` input projection and a ``Linear(d_model, 3)`` output
projection, so the fusion layer still receives 3 values; at 3 both projections are identities.

``VADEncoderConfig.style`` picks one of three encoders:

* ``"causal"`` (default): the course's layer (as ``nn.TransformerEncoderLayer``: attention with an output
  projection, post-norm), a causal mask and a padding mask;
* ``"noncausal"``: the same layer without the causal mask (the old ``causal=False``). It is **not** the
  reference's layer;
* ``"reference"``: the reference implementation's encoder, equation for equation (docs/reference.md)::

      x_0     = LayerNorm_in(v + P[pos])                                 # over the 3 values, eps 1e-5
      s       = LayerNorm_1(x + Dropout(softmax(Q K^T / sqrt(d_h)) V))   # no output projection
      f(x)    = LayerNorm_2(s + Dropout(W_2 ReLU(W_1 s + b_1) + b_2))    # no dropout inside the FFN
      x_{l+1} = x_l + f_l(x_l)                                           # an outer residual per layer

  with no causal mask and no padding mask (padding positions are attended to). ``Q K V`` come from one
  ``Linear(d, 3d)`` (``qkv``): rows ``[0, d)`` are the reference's ``query``, ``[d, 2d)`` its ``key``,
  ``[2d, 3d)`` its ``value`` (:func:`load_reference_state_dict` maps a reference state dict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sevlm_lib.models.checks import check_divides, check_probability, check_sizes

STYLES = ("causal", "noncausal", "reference")


@dataclass
class VADEncoderConfig:
    """The VAD encoder's sizes and its ``style`` (``causal`` | ``noncausal`` | ``reference``, see above).

    ``causal`` is the old boolean switch, kept so that old configs and checkpoints load: ``causal=False``
    with the default style means ``style="noncausal"``. After construction ``causal`` always equals
    ``style == "causal"``.
    """

    d_model: int = 3
    n_layers: int = 3
    n_heads: int = 1
    ffn: int = 128
    max_len: int = 64
    dropout: float = 0.1
    causal: bool = True
    style: str = "causal"

    def __post_init__(self) -> None:
        check_sizes(self, ("d_model", "n_layers", "n_heads", "ffn", "max_len"))
        check_divides(self, "n_heads", "d_model")
        check_probability(self, "dropout")
        if self.style not in STYLES:
            raise ValueError(f"VADEncoderConfig.style={self.style!r}: expected one of {', '.join(STYLES)}")
        if self.style == "causal" and not self.causal:
            self.style = "noncausal"
        self.causal = self.style == "causal"
        if self.style == "reference" and self.d_model != 3:
            raise ValueError(
                f"VADEncoderConfig: style='reference' needs d_model=3 (the reference encodes the VAD 3-vector "
                f"itself), got d_model={self.d_model}"
            )


LayerCache = tuple[torch.Tensor, torch.Tensor]


class VADEncoderLayer(nn.Module):
    """A post-norm transformer encoder layer (as ``nn.TransformerEncoderLayer``) that can run incrementally."""

    def __init__(self, cfg: VADEncoderConfig):
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model={cfg.d_model} is not divisible by n_heads={cfg.n_heads}")
        self.n_heads = cfg.n_heads
        self.reference = cfg.style == "reference"
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        # The reference's attention has no output projection.
        self.out: nn.Module = nn.Identity() if self.reference else nn.Linear(cfg.d_model, cfg.d_model)
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
        hidden = F.relu(self.ff1(x))
        if not self.reference:  # the reference's FFN has no dropout between its two layers
            hidden = self.drop(hidden)
        x = self.norm2(x + self.drop(self.ff2(hidden)))
        return x, (k, v)


class VADEncoder(nn.Module):
    """``forward(vad [B, T, 3], attention_mask [B, T]) -> [B, T, 3]``, optionally with a cache for decoding."""

    def __init__(self, cfg: VADEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.in_proj = nn.Identity() if cfg.d_model == 3 else nn.Linear(3, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_len, cfg.d_model)
        if cfg.style == "reference":
            self.in_norm = nn.LayerNorm(cfg.d_model)  # over the 3-vector after the learned positions
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

        ``attention_mask`` covers all ``past_len + T`` key positions (1 = real token); the reference style
        ignores it (the reference attends to padding). A non-causal encoder cannot be run incrementally: call
        it on the whole sequence with ``cache=None``.
        """
        b, t, _ = vad.shape
        s = past_len + t
        if s > self.cfg.max_len:
            raise ValueError(f"sequence of {s} tokens exceeds the VAD encoder's max_len={self.cfg.max_len}")
        if cache is not None and not self.cfg.causal:
            raise ValueError("the non-causal VAD encoder sees future tokens, so it cannot decode incrementally")
        pos = torch.arange(past_len, s, device=vad.device)
        x = self.in_proj(vad) + self.pos(pos)[None]
        if self.cfg.style == "reference":
            return self._reference_forward(x)
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

    def _reference_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[LayerCache]]:
        """The reference's encoder on ``x = vad + positions``: input norm, then ``x + layer(x)`` per layer."""
        x = self.in_norm(x)
        bias = torch.zeros(1, 1, 1, 1, device=x.device, dtype=x.dtype)
        new_cache: list[LayerCache] = []
        for layer in self.layers:
            y, kv = layer(x, bias)
            x = x + y
            new_cache.append(kv)
        return self.out_proj(x), new_cache


def layernorm_circle(
    x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where vectors ``x [..., d]`` lie relative to the LayerNorm constraint: ``(mean, norm)`` over the last
    dimension of ``(x - bias) / weight`` (the LayerNorm's affine undone; identity when not given).

    A post-LayerNorm output (before its affine) has mean 0 and norm ``sqrt(d)`` (up to LayerNorm's ``eps``).
    For ``d = 3``, the paper's VAD encoder, that leaves one degree of freedom: every output vector lies on a
    circle, the plane ``x + y + z = 0`` cut by the sphere of radius ``sqrt(3)`` (after the affine, an
    ellipse), so the 3-vector the fusion layer receives is an angle, not three numbers. A wider encoder
    (``VADEncoderConfig(d_model > 3)``) projects its ``d``-wide output back to 3 with a ``Linear`` and is not
    so constrained.
    """
    if weight is not None:
        x = x - (bias if bias is not None else 0.0)
        x = x / weight
    return x.mean(-1), x.norm(dim=-1)


def encoder_output_norm(encoder: VADEncoder) -> nn.LayerNorm | None:
    """The LayerNorm whose output a :class:`VADEncoder` returns unchanged (``d_model = 3``, not the reference
    style, whose outer residual adds the layer's input back), or ``None`` when its output is not one."""
    if encoder.cfg.d_model != 3 or encoder.cfg.style == "reference":
        return None
    return encoder.layers[-1].norm2


# The reference's parameter names (its ``Transformer`` module) -> this module's, for a reference-style encoder.
def load_reference_state_dict(encoder: VADEncoder, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict of the reference's VAD encoder into a ``style="reference"`` :class:`VADEncoder`.

    The reference's names: ``pos_encoder.weight``, ``norm.*`` (input norm), and per layer ``i``
    ``encoder.layers.{i}.self_attention.{query,key,value}.*``, ``.fc.0.*``, ``.fc.2.*``, ``.norm1.*``,
    ``.norm2.*``; its ``decoder.*`` (a ``Linear(3, 1)`` whose output SEVLM never uses) is ignored. The
    positional table may be longer than ``max_len``: its first ``max_len`` rows are used. A missing or
    unexpected key is an error naming it.
    """
    if encoder.cfg.style != "reference":
        raise ValueError(f"load_reference_state_dict needs a style='reference' encoder, not {encoder.cfg.style!r}")
    state = dict(state)
    own: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name not in state:
            raise KeyError(f"reference VAD-encoder state dict has no {name!r}")
        return state.pop(name)

    own["pos.weight"] = take("pos_encoder.weight")[: encoder.cfg.max_len]
    for p in ("weight", "bias"):
        own[f"in_norm.{p}"] = take(f"norm.{p}")
        for i in range(encoder.cfg.n_layers):
            src, dst = f"encoder.layers.{i}.", f"layers.{i}."
            own[dst + f"qkv.{p}"] = torch.cat([take(src + f"self_attention.{n}.{p}") for n in ("query", "key", "value")])
            own[dst + f"ff1.{p}"] = take(src + f"fc.0.{p}")
            own[dst + f"ff2.{p}"] = take(src + f"fc.2.{p}")
            own[dst + f"norm1.{p}"] = take(src + f"norm1.{p}")
            own[dst + f"norm2.{p}"] = take(src + f"norm2.{p}")
    extra = [k for k in state if not k.startswith("decoder.")]
    if extra:
        raise KeyError(f"unexpected keys in the reference VAD-encoder state dict: {sorted(extra)}")
    encoder.load_state_dict(own)
