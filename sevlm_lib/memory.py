"""How much GPU memory one SEVLM training step needs: a pencil-and-paper estimate you can check on a GPU.

:func:`estimate_memory` adds up, in bytes, what is alive at the busiest moment of a training step. It is
meant to be compared with ``torch.cuda.max_memory_allocated()`` (``benchmarks/gpu_check.py`` does both),
so it counts tensors only: the CUDA context (~0.3-0.5 GB) and the caching allocator's slack come on top
and are reported separately in :attr:`MemoryEstimate.device_bytes`.

Assumptions (the defaults describe the course's full run on one GPU):

* **Mixed precision is autocast** (``accelerate``'s ``mixed_precision="fp16"``): the weights, their
  gradients and AdamW's two moments stay fp32 (4 + 4 + 8 bytes per trainable parameter); matrix products
  run on fp16 copies of the weights (2 bytes per parameter, kept for the backward pass); layer norms,
  softmax, ``pow`` and the loss run in fp32 (autocast's fp32 list), so the residual stream is fp32.
* **Activations** are what autograd saves for the backward pass, per GPT-2 block (``E = N*T*d`` for
  ``N`` sequences of ``T`` tokens, ``M = N*P*d`` for the image memory each sequence attends to):

  - three layer-norm inputs, fp32: ``3 * 4E``;
  - five linear-layer inputs (``c_attn``, attention ``c_proj``, ``q_attn``, cross ``c_proj``, ``c_fc``) in
    the activation dtype: ``5 * aE``;
  - self-attention with CUDA's fused SDPA kernels (``attention="efficient"``): q, k, v, the output and a
    logsumexp: ``4aE``; the ``"math"`` path (eager, or CPU) saves q, kᵀ, v and three score tensors
    instead (``3aE + 3 * [N, H, T, T]``);
  - cross-attention: its query and output (``2aE``), keys and values over the ``P`` image tokens
    (``2aM``) and the image memory cast to the activation dtype (``aM``, per layer);
  - the MLP with GPT-2's ``gelu_new`` (five ``[N, T, 4d]`` tensors: ``pow`` runs in fp32 under autocast, so
    the input, ``tanh`` and ``1 + tanh`` are fp32 and two are fp16): ``(3*16 + 2*8) E`` bytes under fp16;
  - three dropout masks (1 byte per element on CUDA).

  The head adds ``ln_f`` and ``lm_head`` inputs, the fp16 logits ``[N, T, V]`` (kept by the model output)
  and the fp32 log-softmax of the cross-entropy; its backward briefly holds two more fp32 ``[N, T-1, V]``
  tensors. With ``V = 50,260`` this loss is the largest single item. The VAD path, the VAD head and the
  contrastive head add little (they are counted).
* **Peak** = max(backward peak, optimizer-step peak): during backward all of the above plus the gradients
  (counted in full, an upper bound); during the AdamW step the activations are gone but ``torch.optim``'s
  multi-tensor kernels hold about one more fp32 copy of the trainable parameters.
* **Feature cache** (``use_feature_cache=True``): batches carry fp32 patch features of the ``N / 2`` artworks
  and the CLIP tower is not on the GPU. Live encoding adds the frozen tower's fp32 weights and its
  (no-grad, short-lived) activations.
* **Gradient checkpointing** keeps only each block's fp32 input and recomputes one block at a time.

The estimate is monotone in the batch size and the sequence length: every term has a non-negative
coefficient. Parameter counts come from building the model on PyTorch's ``meta`` device (no memory, no
download).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sevlm_lib.models.sevlm import SEVLM, SEVLMConfig

GIB = 1024**3
GPT2_VOCAB = 50260  # GPT-2's 50,257 tokens + <pad>, <emotion>, <explanation>
PRECISIONS = {"fp16": 2, "bf16": 2, "fp32": 4}
OPTIMIZERS = {"adamw": 8, "sgd": 0, "sgd_momentum": 4}
ATTENTION = ("efficient", "math")
CUDA_CONTEXT_BYTES = 400 * 1024**2  # typical CUDA context + cuBLAS workspace; not in max_memory_allocated
ALLOCATOR_SLACK = 0.10  # caching-allocator fragmentation, as a fraction of the tensors' peak


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per component at the busiest moment of a training step, and the assumptions behind them."""

    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    total_bytes: int
    breakdown: dict[str, int]
    assumptions: dict[str, Any] = field(default_factory=dict)

    @property
    def total_gib(self) -> float:
        """The peak of allocated tensors, GiB (compare with ``torch.cuda.max_memory_allocated``)."""
        return self.total_bytes / GIB

    @property
    def device_bytes(self) -> int:
        """What the card must have free: the tensor peak plus allocator slack and the CUDA context."""
        return int(self.total_bytes * (1 + ALLOCATOR_SLACK)) + CUDA_CONTEXT_BYTES

    @property
    def device_gib(self) -> float:
        return self.device_bytes / GIB

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every byte count, the GiB totals and the assumptions."""
        return {
            "parameters": self.parameters,
            "gradients": self.gradients,
            "optimizer_state": self.optimizer_state,
            "activations": self.activations,
            "total_bytes": self.total_bytes,
            "total_gib": round(self.total_gib, 3),
            "device_bytes": self.device_bytes,
            "device_gib": round(self.device_gib, 3),
            "breakdown": dict(self.breakdown),
            "assumptions": dict(self.assumptions),
        }

    def table(self) -> str:
        """A small text table of the breakdown, largest first, in MiB."""
        rows = sorted(self.breakdown.items(), key=lambda kv: -kv[1])
        width = max(len(k) for k in self.breakdown)
        lines = [f"{k:<{width}}  {v / 1024**2:10.1f} MiB" for k, v in rows]
        lines.append(
            f"{'peak (tensors)':<{width}}  {self.total_bytes / 1024**2:10.1f} MiB = {self.total_gib:.2f} GiB"
        )
        lines.append(
            f"{'+ slack, CUDA context':<{width}}  {self.device_bytes / 1024**2:10.1f} MiB = {self.device_gib:.2f} GiB"
        )
        return "\n".join(lines)


def _with_vocab(config: SEVLMConfig) -> SEVLMConfig:
    """The config with a vocabulary (GPT-2's + the course's specials when it has none yet), offline."""
    d = config.to_dict()
    d["vision"]["hub_id"] = d["decoder"]["hub_id"] = None
    if d["vocab_size"] <= 0:
        d.update(
            vocab_size=GPT2_VOCAB,
            pad_id=GPT2_VOCAB - 3,
            emotion_segment_id=GPT2_VOCAB - 2,
            explanation_segment_id=GPT2_VOCAB - 1,
        )
    return SEVLMConfig.from_dict(d)


def parameter_counts(config: SEVLMConfig) -> dict[str, int]:
    """Parameters per part (``vision``, ``decoder``, ``vad_encoder``, ...) plus ``trainable`` and ``frozen``,
    counted on PyTorch's meta device (nothing is allocated or downloaded). A config without a vocabulary
    is counted with GPT-2's (50,260 tokens with the course's specials)."""

    with torch.device("meta"):
        model = SEVLM(_with_vocab(config))
    out = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    out.update(model.count_parameters())
    return out


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"estimate_memory: {name}={value!r}, expected a positive integer")


@dataclass(frozen=True)
class _StepShape:
    """The sizes one training step works with (element counts, bytes per element) for the estimate."""

    n: int  # sequences per step
    t: int  # tokens per sequence
    p: int  # image tokens per artwork
    d: int  # decoder width
    h: int  # decoder attention heads
    layers: int  # decoder blocks
    v: int  # vocabulary size
    dv: int  # vision width
    images: int  # artworks per step
    a: int  # bytes per activation element
    k: int  # bytes per dropout-mask element
    mixed: bool  # autocast (fp16/bf16) rather than fp32

    @property
    def e(self) -> int:
        """Elements of one ``[N, T, d]`` tensor."""
        return self.n * self.t * self.d

    @property
    def m(self) -> int:
        """Elements of the image memory the N sequences attend to."""
        return self.n * self.p * self.d


def _check_estimate_args(sizes: dict[str, int], precision: str, optimizer: str, attention: str) -> None:
    """``ValueError`` naming the first argument of :func:`estimate_memory` that is out of range."""
    for name, value in sizes.items():
        _check_positive(name, value)
    if precision not in PRECISIONS:
        raise ValueError(f"estimate_memory: precision={precision!r}, expected one of {', '.join(PRECISIONS)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"estimate_memory: optimizer={optimizer!r}, expected one of {', '.join(OPTIMIZERS)}")
    if attention not in ATTENTION:
        raise ValueError(f"estimate_memory: attention={attention!r}, expected one of {', '.join(ATTENTION)}")


def _static_bytes(s: _StepShape, trainable: int, frozen: int, use_feature_cache: bool) -> dict[str, int]:
    """Weights and their fp16 copies (kept for the backward pass), plus the vision tower when it runs live."""
    static: dict[str, int] = {"weights (fp32, trainable)": 4 * trainable}
    if s.mixed:
        static["fp16 weight copies (autocast)"] = s.a * trainable
    if not use_feature_cache:
        static["vision tower weights (frozen)"] = 4 * frozen
    return static


def _block_bytes(s: _StepShape, attention: str) -> int:
    """Activations one decoder block saves for the backward pass."""
    a, k, e, m, n, h, t, p = s.a, s.k, s.e, s.m, s.n, s.h, s.t, s.p
    wide = 4 * e  # one [N, T, 4d] MLP tensor
    ln_inputs = 3 * 4 * e
    linear_inputs = 5 * a * e
    if attention == "efficient":
        # q, k, v, output (+ logsumexp); the cross-attention's k and v cover the P image tokens
        self_attn = 4 * a * e + 4 * n * h * t
        cross_attn = 2 * a * e + 2 * a * m + 4 * n * h * t
    else:
        # q, k^T, v, and the softmax output + dropout mask + dropped probabilities
        self_attn = 3 * a * e + (2 * a + k) * n * h * t * t
        cross_attn = a * e + 2 * a * m + (2 * a + k) * n * h * t * p
    memory_cast = a * m if s.mixed else 0
    mlp = (3 * 4 + 2 * a) * wide if s.mixed else 5 * a * wide
    masks = 3 * k * e
    return ln_inputs + linear_inputs + self_attn + cross_attn + memory_cast + mlp + masks


def _activation_bytes(
    cfg: SEVLMConfig, s: _StepShape, attention: str, grad_checkpointing: bool
) -> dict[str, int]:
    """Activations saved for the backward pass: decoder blocks, image memory, embeddings and the heads."""
    a, k, e, n, t, v, d = s.a, s.k, s.e, s.n, s.t, s.v, s.d
    block = _block_bytes(s, attention)
    acts: dict[str, int] = {}
    if grad_checkpointing:
        acts["decoder blocks (checkpointed inputs)"] = s.layers * 4 * e
        acts["decoder block (recomputed one at a time)"] = block
    else:
        acts["decoder blocks (saved activations)"] = s.layers * block
    acts["image memory (batch features + [N, P, d] view)"] = 4 * s.images * s.p * s.dv + 4 * s.m
    acts["embeddings + dropout"] = 4 * e + k * e + 8 * n * t
    # head: ln_f input, lm_head input, fp16 logits kept by the output, fp32 log-softmax of the loss
    acts["lm head + loss (logits, log-softmax)"] = 4 * e + a * e + a * n * t * v + 4 * n * (t - 1) * v
    if cfg.vad_fusion:
        ve = cfg.vad_encoder
        per_layer = n * t * (4 * (6 * ve.d_model + 3 * ve.ffn) + 3 * ve.n_heads * 4 * t)
        acts["VAD encoder + fusion"] = ve.n_layers * per_layer + a * n * t * (d + 3) + 4 * n * t * 3 + n * t
    if cfg.vad_head:
        acts["VAD head"] = a * e + 4 * n * t * 3 * 3
    if cfg.contrastive:
        acts["contrastive head"] = 4 * e + 4 * n * (3 * d) * 3 * 2 + 4 * n * d * 12 * 3
    return acts


def _vision_transient(cfg: SEVLMConfig, s: _StepShape, use_feature_cache: bool) -> int:
    """The frozen tower's no-grad forward when images are encoded live: only its widest tensors at once."""
    if use_feature_cache:
        return 0
    tokens = cfg.vision.num_patches + 1
    return (
        s.a * s.images * tokens * (3 * cfg.vision.intermediate_size)
        + 4 * s.images * 3 * cfg.vision.image_size**2
        + 2 * s.a * s.images * cfg.vision.num_heads * tokens * tokens
    )


def _step_assumptions(
    s: _StepShape, trainable: int, frozen: int, total: int, backward_peak: int, step_peak: int
) -> dict[str, Any]:
    """The sizes and peaks behind an estimate, and which phase of the step is the busiest."""
    return {
        "batch_sequences": s.n,
        "images_per_batch": s.images,
        "seq_len": s.t,
        "n_patches": s.p,
        "vocab_size": s.v,
        "trainable_parameters": trainable,
        "frozen_parameters": frozen,
        "peak_phase": "backward"
        if total == backward_peak
        else ("optimizer step" if total == step_peak else "forward"),
        "optimizer_step_peak_bytes": step_peak,
        "backward_peak_bytes": backward_peak,
        "cuda_context_bytes": CUDA_CONTEXT_BYTES,
        "allocator_slack": ALLOCATOR_SLACK,
    }


def estimate_memory(
    config: SEVLMConfig,
    batch_sequences: int = 64,
    seq_len: int = 30,
    n_patches: int = 196,
    precision: str = "fp16",
    optimizer: str = "adamw",
    grad_checkpointing: bool = False,
    use_feature_cache: bool = True,
    *,
    attention: str = "efficient",
    dropout_mask_bytes: int = 1,
    sequences_per_image: int = 2,
    counts: dict[str, int] | None = None,
) -> MemoryEstimate:
    """Estimate the peak memory of one training step of ``config`` (see the module notes for the model).

    ``batch_sequences``: sequences per step (the course's pair batches: 2 per artwork, so 32 artworks = 64);
    ``n_patches``: image tokens per artwork (196 for ViT-B/16 at 224 px, 49 with a 2x2-pooled feature
    cache); ``precision``: ``fp16``/``bf16`` (autocast, fp32 master weights) or ``fp32``; ``optimizer``:
    ``adamw``, ``sgd`` or ``sgd_momentum``; ``attention``: ``efficient`` (CUDA's fused SDPA kernels) or
    ``math`` (scores materialised: eager attention or CPU); ``dropout_mask_bytes``: 1 on CUDA (bool masks),
    4 on CPU in fp32; ``counts``: :func:`parameter_counts` of ``config`` if already known (saves a model build).
    """
    _check_estimate_args(
        {
            "batch_sequences": batch_sequences,
            "seq_len": seq_len,
            "n_patches": n_patches,
            "sequences_per_image": sequences_per_image,
            "dropout_mask_bytes": dropout_mask_bytes,
        },
        precision,
        optimizer,
        attention,
    )
    cfg = _with_vocab(config)
    counts = dict(counts) if counts is not None else parameter_counts(cfg)
    trainable, frozen = counts["trainable"], counts["frozen"]
    s = _StepShape(
        n=batch_sequences,
        t=seq_len,
        p=n_patches,
        d=cfg.decoder.n_embd,
        h=cfg.decoder.n_head,
        layers=cfg.decoder.n_layer,
        v=cfg.vocab_size,
        dv=cfg.vision.hidden_size,
        images=-(-batch_sequences // sequences_per_image),
        a=PRECISIONS[precision],
        k=dropout_mask_bytes,
        mixed=precision != "fp32",
    )
    static = _static_bytes(s, trainable, frozen, use_feature_cache)
    grads = 4 * trainable
    opt = OPTIMIZERS[optimizer] * trainable
    acts = _activation_bytes(cfg, s, attention, grad_checkpointing)
    activations = sum(acts.values())

    # --- transients: the loss backward, the optimizer step, the frozen tower's no-grad forward
    loss_backward = 2 * 4 * s.n * (s.t - 1) * s.v + s.a * s.n * s.t * s.v
    optimizer_step = 4 * trainable if optimizer != "sgd" else 0
    vision_transient = _vision_transient(cfg, s, use_feature_cache)
    static_bytes = sum(static.values())
    backward_peak = static_bytes + activations + grads + opt + loss_backward
    step_peak = 4 * trainable + grads + opt + optimizer_step
    forward_live = static_bytes + opt + vision_transient
    total = max(backward_peak, step_peak, forward_live)
    b = {**static, **acts}
    if vision_transient:
        b["vision tower (transient, no grad)"] = vision_transient
    b["gradients (fp32)"] = grads
    b["optimizer state"] = opt
    b["loss backward (transient)"] = loss_backward
    assumptions = {
        "precision": precision,
        "optimizer": optimizer,
        "attention": attention,
        "grad_checkpointing": grad_checkpointing,
        "use_feature_cache": use_feature_cache,
        **_step_assumptions(s, trainable, frozen, int(total), backward_peak, step_peak),
    }
    return MemoryEstimate(static_bytes, grads, opt, activations, int(total), b, assumptions)
