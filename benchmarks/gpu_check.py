"""GPU check: a few hundred training steps of the full-size SEVLM with random weights.

    python benchmarks/gpu_check.py                       # CUDA, 300 steps, cached-feature input (~1-3 min)
    python benchmarks/gpu_check.py --live-encoder        # the CLIP tower runs every step instead
    python benchmarks/gpu_check.py --device cpu --steps 3 --batch-artworks 2 --out /tmp/gpu_check.json  # smoke test

What it runs: ``random_weights(full_config(vad_fusion=True, vad_head=True, contrastive=True))`` (CLIP ViT-B/16
tower + distilgpt2-sized decoder with cross-attention, GPT-2's vocabulary of 50,257 + 3 course tokens = 50,260),
batches of 32 artworks = 64 sequences of 30 tokens, image input as cached CLIP features (random fp16
``196 x 768`` per artwork, handed to the model as fp32 exactly as ``FeatureCache`` does) or, with
``--live-encoder``, 224-px images through the frozen tower. Training goes through the course's own
``sevlm_lib.engine.Trainer`` (accelerate, fp16 autocast + GradScaler on CUDA, AdamW, clipping), so the
numbers are those of the real code path. No data and no downloads are needed.

What it reports (and writes to ``benchmarks/results/gpu_check.json``): steps/s after ``--warmup`` steps,
``torch.cuda.max_memory_allocated`` (and reserved) beside ``sevlm_lib.memory.estimate_memory``'s number for
the same setting, and the projected ArtEmis epoch time. **Assumption for the projection:** SEVLM epochs are
over artworks, not utterances: ArtEmis has 80,031 artworks and the 85% training split ~68,000 of them
(fewer still after dropping artworks without two distinct emotions), so an epoch is ~68,000 / 32 = 2,125
steps of 32 artworks (64 sequences); the paper trains 35 epochs. The measured step time depends on the
GPU: the JSON names the device it came from. A ``--time-limit`` (default 240 s) stops the timed loop
early so that the whole check stays under 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

VOCAB = 50260  # GPT-2's 50,257 tokens + <pad>, <emotion>, <explanation>
TRAIN_ARTWORKS = 68_000  # ~85% of ArtEmis's 80,031 artworks (see the module notes)
EPOCHS = 35


def full_model_config() -> Any:
    from sevlm_lib.models.sevlm import SEVLMConfig, full_config, random_weights

    d = random_weights(full_config(vad_fusion=True, vad_head=True, contrastive=True)).to_dict()
    d.update(
        vocab_size=VOCAB, pad_id=VOCAB - 3, emotion_segment_id=VOCAB - 2, explanation_segment_id=VOCAB - 1
    )
    return SEVLMConfig.from_dict(d)


def synthetic_batch(
    cfg: Any, artworks: int, seq_len: int, live: bool, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """One pair batch shaped like the course's: 2 sequences per artwork, ``[a0, a0', a1, a1', ...]``."""
    n = 2 * artworks
    pad, emo_seg, expl_seg = cfg.pad_id, cfg.emotion_segment_id, cfg.explanation_segment_id
    ids = torch.randint(0, VOCAB - 3, (n, seq_len), generator=generator)
    lengths = torch.randint(max(10, seq_len - 8), seq_len + 1, (n,), generator=generator)
    lengths[0] = seq_len  # the batch is padded to its longest sequence
    pos = torch.arange(seq_len)[None]
    real = pos < lengths[:, None]
    ids = ids.masked_fill(~real, pad)
    because = 6  # "<bos> the emotion is X" = 5 tokens (one-token emotion), then " because"
    labels = ids.masked_fill(~real, -100)
    labels[:, 0] = -100
    batch = {
        "input_ids": ids,
        "attention_mask": real.long(),
        "segment_ids": torch.where(pos < because, emo_seg, expl_seg).expand(n, -1).clone(),
        "labels": labels,
        "emotion_mask": ((pos >= 4) & (pos < because)).expand(n, -1).clone(),
        "explanation_mask": (pos > because) & (pos < lengths[:, None] - 1),
        "explanation_segment": (pos >= because) & real,
        "image_index": torch.arange(artworks).repeat_interleave(2),
        "pair_index": torch.arange(n) ^ 1,
    }
    if live:
        size = cfg.vision.image_size
        batch["pixel_values"] = torch.randn(artworks, 3, size, size, generator=generator)
    else:
        p, dv = cfg.vision.num_patches, cfg.vision.hidden_size
        batch["image_features"] = torch.randn(artworks, p, dv, generator=generator).to(torch.float16).float()
    return batch


class _TimeUp(KeyboardInterrupt):
    """Raised from the batch stream when the time limit is reached (the trainer re-raises interrupts)."""


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sevlm_lib.engine import TrainConfig, Trainer
    from sevlm_lib.memory import GIB, estimate_memory
    from sevlm_lib.models.sevlm import SEVLM
    from sevlm_lib.settings import seed_everything

    device = args.device
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: CUDA is not available here; use --device cpu for a smoke test")
    cfg = full_model_config()
    seed_everything(0)
    model = SEVLM(cfg)
    g = torch.Generator().manual_seed(0)
    known = torch.rand(VOCAB, generator=g) > 0.5
    model.set_token_vad((torch.rand(VOCAB, 3, generator=g) * 2 - 1) * known[:, None], known)
    if args.grad_checkpointing:
        if hasattr(model.decoder, "activation_checkpointing_enable"):  # newer transformers 5.x
            model.decoder.activation_checkpointing_enable(
                activation_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            model.decoder.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    counts = model.count_parameters()
    batches = [
        synthetic_batch(cfg, args.batch_artworks, args.seq_len, args.live_encoder, g) for _ in range(4)
    ]

    stamps: list[float] = []
    deadline = [math.inf]

    def make_batches(epoch: int):
        for i in range(args.steps):
            now = time.perf_counter()
            stamps.append(now)
            if now > deadline[0]:
                raise _TimeUp
            yield batches[i % len(batches)]

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config = TrainConfig(
        seed=0,
        max_steps=args.steps,
        lr=2e-5,
        max_grad_norm=1.0,
        log_every=1,
        mixed_precision="fp16" if cuda else "no",
        device=device,
    )
    trainer = Trainer(
        model, config, make_batches, args.steps, param_groups=model.parameter_groups(2e-5, 4e-5), quiet=True
    )
    started = time.perf_counter()
    deadline[0] = started + args.time_limit
    stopped_early = False
    try:
        history = trainer.fit()
        losses = [row["loss"] for row in history.steps]
    except _TimeUp:
        stopped_early = True
        losses = []
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    stamps.append(time.perf_counter())
    # stamps[i] = when batch i was requested (= the end of step i-1); the last one = the end of training
    done = len(stamps) - 2 if stopped_early else len(stamps) - 1
    warm = min(args.warmup, max(0, done - 1))
    timed = done - warm
    seconds = stamps[done] - stamps[warm] if timed > 0 else float("nan")
    steps_per_s = timed / seconds if timed > 0 and seconds > 0 else float("nan")

    precision = "fp16" if cuda else "fp32"
    estimate = estimate_memory(
        cfg,
        batch_sequences=2 * args.batch_artworks,
        seq_len=args.seq_len,
        n_patches=cfg.vision.num_patches,
        precision=precision,
        grad_checkpointing=args.grad_checkpointing,
        use_feature_cache=not args.live_encoder,
        attention="efficient" if cuda else "math",
        dropout_mask_bytes=1 if cuda else 4,
    )
    steps_per_epoch = math.ceil(TRAIN_ARTWORKS / args.batch_artworks)
    device_name = (
        torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()})"
    )
    result: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "model": "random_weights(full_config(vad_fusion=True, vad_head=True, contrastive=True)), vocab 50260",
        "parameters": counts,
        "batch_artworks": args.batch_artworks,
        "batch_sequences": 2 * args.batch_artworks,
        "seq_len": args.seq_len,
        "input": "live CLIP encoder (224-px images)" if args.live_encoder else "cached features (196 x 768)",
        "precision": "fp16 autocast + GradScaler" if cuda else "fp32",
        "grad_checkpointing": args.grad_checkpointing,
        "steps_requested": args.steps,
        "steps_done": done,
        "warmup_steps": warm,
        "stopped_at_time_limit": stopped_early,
        "wall_seconds": round(wall, 2),
        "steps_per_s": steps_per_s,
        "seconds_per_step": 1 / steps_per_s if steps_per_s and steps_per_s == steps_per_s else None,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "estimate_bytes": estimate.total_bytes,
        "estimate_gib": round(estimate.total_gib, 3),
        "estimate_device_gib": round(estimate.device_gib, 3),
        "estimate_breakdown_mib": {k: round(v / 1024**2, 1) for k, v in estimate.breakdown.items()},
        "projection_assumption": (
            f"SEVLM epochs are over artworks: ~{TRAIN_ARTWORKS:,} training artworks (85% of 80,031) / "
            f"{args.batch_artworks} per step = {steps_per_epoch:,} steps per epoch; {EPOCHS} epochs"
        ),
        "steps_per_epoch": steps_per_epoch,
    }
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        result.update(
            peak_allocated_bytes=peak,
            peak_allocated_gib=round(peak / GIB, 3),
            peak_reserved_gib=round(torch.cuda.max_memory_reserved() / GIB, 3),
            measured_over_estimate=round(peak / estimate.total_bytes, 3),
            fits_11gb_card=bool(estimate.device_bytes < 11 * 1000**3 and peak < 11 * 1000**3),
        )
    else:
        import resource

        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if steps_per_s == steps_per_s and steps_per_s > 0:
        epoch_s = steps_per_epoch / steps_per_s
        result.update(
            projected_epoch_minutes=round(epoch_s / 60, 1),
            projected_35_epochs_hours=round(EPOCHS * epoch_s / 3600, 2),
        )
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20, help="steps left out of the timing")
    parser.add_argument("--batch-artworks", type=int, default=32, help="artworks per step (2 sequences each)")
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument("--live-encoder", action="store_true", help="run the CLIP tower on images every step")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--time-limit", type=float, default=240.0, help="seconds of training at most")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 2 or args.batch_artworks < 2 or args.seq_len < 12:
        raise SystemExit("gpu_check: needs --steps >= 2, --batch-artworks >= 2 and --seq-len >= 12")
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    keys = (
        "device",
        "steps_done",
        "steps_per_s",
        "peak_allocated_gib",
        "estimate_gib",
        "measured_over_estimate",
        "projected_epoch_minutes",
        "projected_35_epochs_hours",
        "loss_first",
        "loss_last",
    )
    for k in keys:
        if k in result:
            print(f"{k:>26}: {result[k]}")
    print(f"{'written':>26}: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
