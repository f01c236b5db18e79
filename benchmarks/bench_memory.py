"""Memory: peak RSS of full-size training steps on CPU, beside ``sevlm_lib.memory.estimate_memory``.

    python benchmarks/bench_memory.py                   # full-size, 32 artworks = 64 sequences, fp32, ~1-3 min
    python benchmarks/bench_memory.py --live-encoder    # the same with the CLIP tower run every step
    python benchmarks/bench_memory.py --quick           # seconds: tiny config, in this process

Each measurement runs in a fresh child process (``--child``), so that its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) belongs to that run alone. The child records its RSS after
the imports (the baseline: Python, torch, transformers), after building the model and the optimizer, and its
peak over ``--steps`` full-batch training steps (forward, backward, clipping, AdamW; one by default). AdamW
allocates its two moments in its first ``step()``, so one step on a 2-artwork slice of the batch runs first:
the full-batch step then holds weights, moments, gradients and activations at once (the steady-state peak
of training), at the cost of one full step instead of two.

Model: ``random_weights(full_config(vad_fusion=True, vad_head=True, contrastive=True))`` with GPT-2's 50,260
tokens, 32 artworks = 64 sequences of 30 tokens, fp32 on CPU, image input as cached features (fp16 values in
fp32, as ``FeatureCache`` hands them over) unless ``--live-encoder``. The model object keeps its frozen CLIP
tower either way (the course's ``SEVLM`` always holds it), so its weights are in the RSS.

The estimator is asked the same question for the CPU (fp32, ``attention="math"``, 4-byte dropout masks) and
its tensor peak is compared with the measured increase over the baseline (plus the tower's weights when
features are cached, which the estimator leaves out because it assumes the tower is not loaded). The 11 GB
budget (the reference's RTX 2080 Ti) is for the GPU in fp16: that number is the estimator's
``device_bytes`` (tensors + allocator slack + CUDA context); the measured CUDA peak comes from
``benchmarks/gpu_check.py`` on a GPU and is quoted here when ``results/gpu_check.json`` exists.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    base_parser,
    gpt2_vocab_config,
    log,
    pair_batch,
    random_token_vad,
    setup_run,
    write_result,
)

BUDGET_BYTES = 11 * 1000**3  # "11 GB": the RTX 2080 Ti of the reference (11,264 MiB); the smaller reading
MIB = 1024**2
GIB = 1024**3


def peak_rss_bytes() -> int:
    """This process's peak resident set size (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def current_rss_bytes() -> int | None:
    """The current resident set size from ``/proc/self/status`` (Linux); ``None`` elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def model_config(profile: str) -> Any:
    from sevlm_lib.models.sevlm import full_config, random_weights, tiny_config

    switches = {"vad_fusion": True, "vad_head": True, "contrastive": True}
    if profile == "full":
        return gpt2_vocab_config(random_weights(full_config(**switches)))
    if profile == "tiny":
        return gpt2_vocab_config(tiny_config(**switches), vocab_size=1028)
    raise ValueError(f"unknown profile {profile!r}: expected 'tiny' or 'full'")


def measure(profile: str, artworks: int, seq_len: int, steps: int, live: bool, seed: int) -> dict[str, Any]:
    """Build the model and optimizer, run ``steps`` training steps; RSS snapshots and step times."""
    from sevlm_lib.models.sevlm import SEVLM
    from sevlm_lib.settings import seed_everything

    baseline_peak, baseline_now = peak_rss_bytes(), current_rss_bytes()
    cfg = model_config(profile)
    seed_everything(seed)
    model = SEVLM(cfg)
    model.set_token_vad(*random_token_vad(cfg.vocab_size, seed))
    model.train()
    optimizer = torch.optim.AdamW(model.parameter_groups(lr=2e-5, vad_lr=4e-5), lr=2e-5, weight_decay=0.0)
    params = [p for p in model.parameters() if p.requires_grad]
    built_now = current_rss_bytes()
    g = torch.Generator().manual_seed(seed + 1)
    batch = pair_batch(cfg, artworks, seq_len, g)
    if live:
        size = cfg.vision.image_size
        batch["pixel_values"] = torch.randn(artworks, 3, size, size, generator=g)
    else:
        shape = (artworks, cfg.vision.num_patches, cfg.vision.hidden_size)
        batch["image_features"] = torch.randn(shape, generator=g).to(torch.float16).float()

    def step(b: dict[str, torch.Tensor]) -> tuple[float, float]:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out = model(b)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return time.perf_counter() - start, out.loss.item()

    # a first step on a 2-artwork slice creates AdamW's moments (it allocates them in its first step()), so
    # the full-batch steps below see the steady state: weights, moments, gradients and activations together
    small = {k: (v[:2] if k in ("image_features", "pixel_values") else v[:4]) for k, v in batch.items()}
    small["pair_index"] = torch.arange(4) ^ 1
    small["image_index"] = torch.arange(2).repeat_interleave(2)
    step(small)
    before_steps_peak = peak_rss_bytes()
    step_s, losses = [], []
    for _ in range(steps):
        seconds, loss = step(batch)
        step_s.append(seconds)
        losses.append(loss)
    counts = model.count_parameters()
    return {
        "profile": profile,
        "batch_artworks": artworks,
        "batch_sequences": 2 * artworks,
        "seq_len": seq_len,
        "input": "live CLIP encoder" if live else "cached features",
        "steps": steps,
        "step_s": step_s,
        "losses": losses,
        "parameters": counts,
        "baseline_rss_bytes": baseline_now,
        "baseline_peak_rss_bytes": baseline_peak,
        "after_build_rss_bytes": built_now,
        "peak_before_full_steps_rss_bytes": before_steps_peak,
        "peak_rss_bytes": peak_rss_bytes(),
        "torch_threads": torch.get_num_threads(),
    }


def run_child(args: Any, live: bool) -> dict[str, Any]:
    """Run :func:`measure` in a fresh Python process and read its JSON."""
    out = Path(args.out_dir) / f".memory-child-{os.getpid()}-{int(live)}.json"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--child-out",
        str(out),
        "--artworks",
        str(args.artworks),
        "--seq-len",
        str(args.seq_len),
        "--steps",
        str(args.steps),
        "--seed",
        str(args.seed),
    ]
    if live:
        cmd.append("--live-encoder")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    log(
        f"memory: child process, full-size, {args.artworks} artworks, {'live encoder' if live else 'cached features'}"
    )
    done = subprocess.run(cmd, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory child failed (exit {done.returncode}): {' '.join(cmd)}")
    try:
        return json.loads(out.read_text(encoding="utf-8"))
    finally:
        out.unlink(missing_ok=True)


def compare_with_estimate(m: dict[str, Any], cfg: Any) -> dict[str, Any]:
    """The estimator's CPU numbers for the measured setting, and measured / estimated."""
    from sevlm_lib.memory import estimate_memory

    live = m["input"] == "live CLIP encoder"
    est = estimate_memory(
        cfg,
        batch_sequences=m["batch_sequences"],
        seq_len=m["seq_len"],
        n_patches=cfg.vision.num_patches,
        precision="fp32",
        attention="math",
        dropout_mask_bytes=4,
        use_feature_cache=not live,
    )
    tower_weights = 0 if live else 4 * m["parameters"]["frozen"]  # in our model object, not in the estimate
    increase = m["peak_rss_bytes"] - m["baseline_rss_bytes"]
    predicted = est.total_bytes + tower_weights
    return {
        "estimate_cpu_fp32_bytes": est.total_bytes,
        "estimate_cpu_fp32_gib": round(est.total_gib, 3),
        "tower_weights_not_in_estimate_bytes": tower_weights,
        "measured_peak_rss_gib": round(m["peak_rss_bytes"] / GIB, 3),
        "measured_baseline_rss_gib": round(m["baseline_rss_bytes"] / GIB, 3),
        "measured_increase_gib": round(increase / GIB, 3),
        "predicted_increase_gib": round(predicted / GIB, 3),
        "measured_over_predicted": round(increase / predicted, 3),
    }


def gpu_budget(cfg: Any, out_dir: Path) -> dict[str, Any]:
    """The fp16 GPU estimate at 32 artworks against the 11 GB budget, and gpu_check's measurement if any."""
    from sevlm_lib.memory import estimate_memory

    rows = {}
    for name, cached in (("cached_features", True), ("live_encoder", False)):
        est = estimate_memory(
            cfg,
            batch_sequences=64,
            seq_len=30,
            n_patches=cfg.vision.num_patches,
            precision="fp16",
            use_feature_cache=cached,
        )
        rows[name] = {
            "estimate_tensors_gib": round(est.total_gib, 3),
            "estimate_device_gib": round(est.device_gib, 3),
            "estimate_device_bytes": est.device_bytes,
            "fits_11gb_by_estimate": est.device_bytes < BUDGET_BYTES,
            "peak_phase": est.assumptions["peak_phase"],
        }
    out: dict[str, Any] = {
        "budget_bytes": BUDGET_BYTES,
        "budget_note": "11 GB = 11e9 bytes (the card has 11,264 MiB)",
        "estimates_fp16_batch32": rows,
    }
    for folder in dict.fromkeys([Path(out_dir), RESULTS_DIR]):
        path = folder / "gpu_check.json"
        if path.is_file():
            try:
                gpu = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                continue
            out["gpu_check"] = {
                k: gpu.get(k)
                for k in (
                    "device",
                    "input",
                    "batch_artworks",
                    "precision",
                    "peak_allocated_gib",
                    "peak_reserved_gib",
                    "estimate_gib",
                    "measured_over_estimate",
                    "fits_11gb_card",
                )
            }
            out["gpu_check"]["file"] = str(path)
            break
    return out


def run(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Parse options; as the parent, run the child(ren) and write ``memory.json``; returns the result."""
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--artworks", type=int, default=32, help="artworks per step (2 sequences each)")
    parser.add_argument("--seq-len", type=int, default=30)
    parser.add_argument(
        "--steps", type=int, default=1, help="full-batch steps (after a small one, see notes)"
    )
    parser.add_argument("--live-encoder", action="store_true", help="also measure the live-encoder step")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child_out is None:
            parser.error("--child needs --child-out FILE")
        if args.threads:
            torch.set_num_threads(args.threads)
        m = measure("full", args.artworks, args.seq_len, args.steps, args.live_encoder, args.seed)
        args.child_out.write_text(json.dumps(m) + "\n", encoding="utf-8")
        return None
    run_info = setup_run(args)
    if args.quick:
        # seconds-long: tiny config in this process (the child path is the same function)
        m = measure("tiny", 4, args.seq_len, 1, False, args.seed)
        runs = [{**m, "process": "this process (quick)", **compare_with_estimate(m, model_config("tiny"))}]
    else:
        cfg = model_config("full")
        runs = []
        for live in (False, True) if args.live_encoder else (False,):
            m = run_child(args, live)
            runs.append({**m, "process": "fresh child", **compare_with_estimate(m, cfg)})
    full_cfg = model_config("full")
    result = {
        "quick": args.quick,
        "what": "peak RSS of training steps on CPU (fp32) vs the estimator; the fp16 GPU estimate vs 11 GB",
        "target": "full-size training at batch 32 artworks fits 11 GB by the estimator (and by gpu_check on a GPU)",
        "cpu_runs": runs,
        "gpu": gpu_budget(full_cfg, args.out_dir),
    }
    for r in runs:
        log(
            f"memory: {r['profile']} {r['input']}: peak RSS {r['measured_peak_rss_gib']:.2f} GiB (baseline "
            f"{r['measured_baseline_rss_gib']:.2f}); increase {r['measured_increase_gib']:.2f} GiB vs predicted "
            f"{r['predicted_increase_gib']:.2f} GiB"
        )
    est = result["gpu"]["estimates_fp16_batch32"]["cached_features"]
    log(
        f"memory: fp16 GPU estimate at 32 artworks: {est['estimate_device_gib']:.2f} GiB on the card; fits 11 GB: "
        f"{est['fits_11gb_by_estimate']}"
    )
    path = write_result("memory", result, run_info, args.out_dir)
    log(f"written {path}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
