"""Where our cached decoding spends its time (tiny config, batch 64, 25 new tokens), by part of the model.

    python benchmarks/profile_decoding.py      # ~30 s; writes benchmarks/results/decoding_profile.json

cProfile's cumulative time of each part over a few runs of ``generate(use_cache=True)``, with the same
``StepControl`` as ``bench_decoding.py`` (every sample decodes 25 tokens, in the explanation segment after
step 1). ``torch kernels`` is the time inside torch's compiled operators (linear, attention, layer norm,
cat, ...); the rest of each part is Python: module dispatch, transformers' wrappers, shape bookkeeping.
On the tiny model (64 wide) the kernels are a small share, so the step is bounded by per-call overhead.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_decoding  # noqa: E402
import torch  # noqa: E402
from common import load_bench_lexicon, synthetic_annotations  # noqa: E402

from sevlm_lib.generation import generate  # noqa: E402

PARTS = {
    "image encoder (once)": ("models/sevlm.py", "encode_images"),
    "decoder (GPT-2 + cross-attention, cached)": ("models/sevlm.py", "decode"),
    "embeddings + VAD encoder (cached)": ("models/sevlm.py", "embed"),
    "of which the VAD encoder": ("models/vad_encoder.py", "forward"),
}


def profile(runs: int = 5, batch: int = 64, new_tokens: int = 25) -> dict[str, object]:
    """Seconds per run in each part, and the share of torch's own operators."""
    torch.set_num_threads(1)
    lexicon = load_bench_lexicon()
    texts = [u for _, u in synthetic_annotations(lexicon, 400, seed=2024)]
    model, _tok, builder = bench_decoding.build_model("tiny", lexicon, texts, 0)
    control = bench_decoding.StepControl(model, builder.eos_id, builder.because_ids[-1])
    size = model.config.vision.image_size
    images = {"pixel_values": torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))}

    def run() -> None:
        control.reset()
        generate(model, builder, images, max_new_tokens=new_tokens, use_cache=True)

    run()
    started = time.perf_counter()
    for _ in range(runs):
        run()
    wall = (time.perf_counter() - started) / runs
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        run()
    prof.disable()
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(tt for (_f, _l, _n), (_cc, _nc, tt, _ct, _callers) in stats.items())
    parts = {}
    for label, (file, name) in PARTS.items():
        # the outermost function of that name in that file (the VAD encoder's forward calls its layers')
        parts[label] = max(
            (ct for (f, _l, n), (_cc, _nc, _tt, ct, _callers) in stats.items() if f.endswith(file) and n == name),
            default=0.0,
        ) / runs
    kernels = sum(
        tt for (f, _l, n), (_cc, _nc, tt, _ct, _callers) in stats.items() if f == "~" and "torch" in n
    ) / runs
    return {
        "config": f"tiny, batch {batch}, {new_tokens} new tokens, 1 torch thread",
        "seconds_per_run_unprofiled": wall,
        "tokens_per_second_unprofiled": batch * new_tokens / wall,
        "seconds_per_run_profiled": total / runs,
        "parts_seconds_per_run": parts,
        "torch_kernels_seconds_per_run": kernels,
        "torch_kernels_share": kernels / (total / runs),
    }


def main() -> int:
    result = profile()
    out = ROOT / "benchmarks" / "results" / "decoding_profile.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
