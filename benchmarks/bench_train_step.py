"""Training-step speed: image features from the CLIP feature cache against the live frozen encoder.

    python benchmarks/bench_train_step.py            # full-size (4 artworks/step) + tiny (32), ~1-2 min
    python benchmarks/bench_train_step.py --quick    # seconds: tiny config, small batch

Both sides run the same model object, the same optimizer and the same text batches; only the image input
differs:

* **cached**: ``sevlm_lib.features.FeatureCache.batch(keys)``, i.e. fp16 patch features read from the
  ``.npy`` shards (memory-mapped, every row checked against its CRC32) and cast to fp32, built beforehand with
  ``build_feature_cache`` from the same images and the same frozen tower;
* **live**: ``pixel_values`` (already decoded and normalised, held in memory: image decoding from disk is
  left out, which favours the live side) through the frozen CLIP tower at every step, as the reference does.

One step = ``zero_grad``, ``model(batch)`` (XE + VAD + contrastive losses, every switch on), ``backward``,
gradient clipping at 1.0, ``AdamW.step`` with the course's two parameter groups. The learning rate is 0, so
the weights (and so both sides' work) stay the same from step to step; AdamW still does all its arithmetic.
Pair batches as in training: two sequences of 30 tokens per artwork. Before timing, the losses of both sides
on the same batch (eval mode) are compared: they differ only by the fp16 rounding of the cached features.

Configs: full-size (``random_weights(full_config(...))``: CLIP ViT-B/16 at 224 px, 196 patches, distilgpt2-
sized decoder, GPT-2's vocabulary of 50,260) at 4 artworks (8 sequences) per step on CPU, and tiny
(``tiny_config``, 64-px tower) at 32 artworks (64 sequences). The share of the frozen tower in a step does
not depend much on the batch size (artworks and sequences grow together), but the optimizer step is a fixed
cost that weighs more at a small batch, so the small CPU batch understates the ratio a little.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    base_parser,
    compare,
    fmt_ratio,
    gpt2_vocab_config,
    log,
    pair_batch,
    random_token_vad,
    setup_run,
    write_result,
)

CACHED, LIVE = "cached_features", "live_encoder"


def model_config(profile: str) -> Any:
    """Every switch on; tiny: the tiny architecture with a 1,028-token vocabulary; full: random weights."""
    from sevlm_lib.models.sevlm import full_config, random_weights, tiny_config

    switches = {"vad_fusion": True, "vad_head": True, "contrastive": True}
    if profile == "tiny":
        return gpt2_vocab_config(tiny_config(**switches), vocab_size=1028)
    if profile == "full":
        return gpt2_vocab_config(random_weights(full_config(**switches)))
    raise ValueError(f"unknown profile {profile!r}: expected 'tiny' or 'full'")


def bench_config(
    profile: str,
    *,
    artworks: int,
    n_batches: int,
    warmup: int,
    repeats: int,
    seq_len: int,
    seed: int,
    work_dir: Path,
) -> dict[str, Any]:
    """Build the model and a feature cache for ``n_batches * artworks`` artworks; time both kinds of step."""
    from sevlm_lib.data.datasets import TensorBank
    from sevlm_lib.features import FeatureCache, build_feature_cache
    from sevlm_lib.models.sevlm import SEVLM
    from sevlm_lib.settings import seed_everything

    cfg = model_config(profile)
    seed_everything(seed)
    model = SEVLM(cfg)
    model.set_token_vad(*random_token_vad(cfg.vocab_size, seed))
    g = torch.Generator().manual_seed(seed + 1)
    size = cfg.vision.image_size
    n_images = n_batches * artworks
    keys = [("Synthetic", f"artwork-{i:04d}") for i in range(n_images)]
    pixels = TensorBank(keys, torch.randn(n_images, 3, size, size, generator=g), "pixel_values")
    log(f"train_step/{profile}: building a feature cache of {n_images} artworks")
    cache_dir = work_dir / f"features-{profile}"
    build_feature_cache(model.vision, keys, pixels, cache_dir, batch_size=8)
    cache = FeatureCache(cache_dir)
    texts = [pair_batch(cfg, artworks, seq_len, g) for _ in range(n_batches)]
    batch_keys = [keys[i * artworks : (i + 1) * artworks] for i in range(n_batches)]

    with torch.no_grad():
        model.eval()
        first_cached = model({**texts[0], **cache.batch(batch_keys[0])}).loss.item()
        first_live = model({**texts[0], **pixels.batch(batch_keys[0])}).loss.item()
    model.train()
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=0.0, vad_lr=0.0), lr=0.0, weight_decay=0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    step_no = {CACHED: 0, LIVE: 0}
    phases: dict[str, dict[str, list[float]]] = {
        side: {"image_input": [], "forward": [], "backward": [], "optimizer": []} for side in (CACHED, LIVE)
    }

    def step(side: str) -> float:
        i = step_no[side] % n_batches
        step_no[side] += 1
        t0 = time.perf_counter()
        images = cache.batch(batch_keys[i]) if side == CACHED else pixels.batch(batch_keys[i])
        optimizer.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        out = model({**texts[i], **images})
        t2 = time.perf_counter()
        out.loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        t4 = time.perf_counter()
        for name, seconds in zip(phases[side], (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            phases[side][name].append(seconds)
        return out.loss.item()

    log(
        f"train_step/{profile}: {artworks} artworks ({2 * artworks} sequences) per step, warm-up {warmup}, "
        f"repeats {repeats}"
    )
    result = compare({CACHED: lambda: step(CACHED), LIVE: lambda: step(LIVE)}, warmup=warmup, repeats=repeats)

    # the frozen tower alone on one batch of images: the part the cache removes
    tower = compare(
        {"tower": lambda: model.encode_images(pixels.batch(batch_keys[0]))},
        warmup=1,
        repeats=max(1, min(repeats, 3)),
    )
    summary = result.summary()
    for side in summary:
        summary[side]["artworks_per_s"] = artworks / result.median(side)
    counts = model.count_parameters()
    out = {
        "profile": profile,
        "model": ("tiny_config(...)" if profile == "tiny" else "random_weights(full_config(...))")
        + f" with vad_fusion, vad_head, contrastive; vocab {cfg.vocab_size}",
        "parameters": counts,
        "image_size": size,
        "patches": cfg.vision.num_patches,
        "batch_artworks": artworks,
        "batch_sequences": 2 * artworks,
        "seq_len": seq_len,
        "precision": "fp32 (CPU)",
        "sides": summary,
        "ratio_live_over_cached": result.ratio(LIVE, CACHED),
        "median_s_by_phase": {
            side: {name: statistics.median(v[warmup:] or v) for name, v in p.items()}
            for side, p in phases.items()
        },
        "tower_forward_s": tower.median("tower"),
        "tower_share_of_live_step": tower.median("tower") / result.median(LIVE),
        "loss_cached_features": first_cached,
        "loss_live_encoder": first_live,
        "loss_abs_difference": abs(first_cached - first_live),
    }
    log(
        f"train_step/{profile}: cached {result.median(CACHED):.3f} s/step, live {result.median(LIVE):.3f} s/step: "
        f"{fmt_ratio(out['ratio_live_over_cached'])}"
    )
    return out


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options, run the configs, write ``train_step.json``; returns the result."""
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--full-artworks", type=int, default=4, help="full-size config: artworks per step")
    parser.add_argument("--tiny-artworks", type=int, default=32, help="tiny config: artworks per step")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per side, full-size config")
    parser.add_argument("--tiny-repeats", type=int, default=10, help="timed steps per side, tiny config")
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args(argv)
    run_info = setup_run(args)
    configs = []
    with tempfile.TemporaryDirectory(prefix="sevlm-bench-") as tmp:
        work = Path(tmp)
        if args.quick:
            configs.append(
                bench_config(
                    "tiny",
                    artworks=4,
                    n_batches=2,
                    warmup=1,
                    repeats=1,
                    seq_len=args.seq_len,
                    seed=args.seed,
                    work_dir=work,
                )
            )
        else:
            if not args.skip_full:
                configs.append(
                    bench_config(
                        "full",
                        artworks=args.full_artworks,
                        n_batches=2,
                        warmup=1,
                        repeats=args.repeats,
                        seq_len=args.seq_len,
                        seed=args.seed,
                        work_dir=work,
                    )
                )
            configs.append(
                bench_config(
                    "tiny",
                    artworks=args.tiny_artworks,
                    n_batches=4,
                    warmup=2,
                    repeats=args.tiny_repeats,
                    seq_len=args.seq_len,
                    seed=args.seed,
                    work_dir=work,
                )
            )
    result = {
        "quick": args.quick,
        "what": "seconds per training step (forward, backward, clip, AdamW); ratio = live encoder / cached features",
        "target": "live / cached >= 2x on the full-size config",
        "configs": configs,
    }
    path = write_result("train_step", result, run_info, args.out_dir)
    log(f"written {path}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
