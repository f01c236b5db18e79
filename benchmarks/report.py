"""Turn ``benchmarks/results/*.json`` into ``benchmarks/results/RESULTS.md`` (one table + details).

    python benchmarks/report.py                     # reads and writes benchmarks/results/
    python benchmarks/report.py --results DIR       # another folder (the smoke test uses a temporary one)

``gpu_check.json`` and ``gpu_check_live.json`` (``gpu_check.py`` and ``gpu_check.py --live-encoder --out
benchmarks/results/gpu_check_live.json``, run on a GPU) are quoted when present.

Nothing is measured here: every number comes from the JSON files the benchmark scripts wrote, with the
machine facts and load averages they recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
NAMES = ("decoding", "data", "train_step", "memory", "gpu_check", "gpu_check_live")


def load_results(folder: Path) -> dict[str, dict[str, Any]]:
    """The JSON result of each benchmark found in ``folder`` (missing ones are simply absent)."""
    out = {}
    for name in NAMES:
        path = folder / f"{name}.json"
        if path.is_file():
            try:
                out[name] = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from None
    return out


def _x(ratio: float | None) -> str:
    if ratio is None:
        return "n/a"
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _config(result: dict[str, Any], profile: str) -> dict[str, Any] | None:
    return next((c for c in result.get("configs", []) if c.get("profile") == profile), None)


def _machine(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    load = result.get("load_average_start")
    load_end = result.get("load_average_end")
    gpu = m.get("gpu") or "no GPU"
    return (
        f"{m.get('cpu', '?')}, {m.get('logical_cores', '?')} cores ({m.get('torch_threads', '?')} torch threads), "
        f"{m.get('memory_gib', '?')} GiB, torch {m.get('torch', '?')}, {gpu}; load average "
        f"{load} at start, {load_end} at end; {result.get('date_utc', '?')}"
    )


def summary_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per headline claim: what, setting, ours, reference, ratio, target, met."""
    rows: list[list[str]] = []
    dec = results.get("decoding")
    if dec:
        for profile in ("tiny", "full"):
            c = _config(dec, profile)
            if not c:
                continue
            s = c["sides"]
            ratio = c["ratio_reference_over_ours"]
            target = "≥ 10x" if profile == "tiny" else "(none)"
            met = ratio >= 10 if profile == "tiny" and c["batch"] == 64 and c["new_tokens"] == 25 else None
            rows.append(
                [
                    f"Decoding, {profile}" + (" (quick)" if dec.get("quick") else ""),
                    f"batch {c['batch']}, {c['new_tokens']} new tokens; identical tokens: "
                    f"{'yes' if c['identical_tokens'] else 'NO'}",
                    f"{_rate(s['ours']['tokens_per_s'])} tok/s",
                    f"{_rate(s['reference']['tokens_per_s'])} tok/s",
                    _x(ratio),
                    target,
                    _met(met and c["identical_tokens"] if met is not None else None),
                ]
            )
    data = results.get("data")
    if data:
        v = data["vad_part"]
        w = data["whole_batch"]
        rows.append(
            [
                "Data pipeline, VAD part" + (" (quick)" if data.get("quick") else ""),
                f"batches of {data['batch_sequences']} sequences; identical VAD: {'yes' if data['identical_vad'] else 'NO'}",
                f"{v['sides']['ours']['items_per_s']:,.0f} items/s",
                f"{v['sides']['reference']['items_per_s']:,.0f} items/s",
                _x(v["ratio_reference_over_ours"]),
                "≥ 20x",
                _met(v["ratio_reference_over_ours"] >= 20 and data["identical_vad"]),
            ]
        )
        rows.append(
            [
                "Data pipeline, whole batch (collate + VAD)",
                "same batches, from encoded sequences",
                f"{w['sides']['ours']['items_per_s']:,.0f} items/s",
                f"{w['sides']['reference']['items_per_s']:,.0f} items/s",
                _x(w["ratio_reference_over_ours"]),
                "(none)",
                "n/a",
            ]
        )
    ts = results.get("train_step")
    if ts:
        for profile in ("full", "tiny"):
            c = _config(ts, profile)
            if not c:
                continue
            s = c["sides"]
            ratio = c["ratio_live_over_cached"]
            rows.append(
                [
                    f"Training step, {profile}" + (" (quick)" if ts.get("quick") else ""),
                    f"{c['batch_artworks']} artworks = {c['batch_sequences']} sequences, {c['precision']}",
                    f"{s['cached_features']['median_s']:.3f} s/step (cached features)",
                    f"{s['live_encoder']['median_s']:.3f} s/step (live encoder)",
                    _x(ratio),
                    "≥ 2x" if profile == "full" else "(none)",
                    _met(ratio >= 2) if profile == "full" else "n/a",
                ]
            )
    gpu, gpu_live = results.get("gpu_check"), results.get("gpu_check_live")
    if gpu and gpu_live and gpu.get("steps_per_s") and gpu_live.get("steps_per_s"):
        ratio = gpu["steps_per_s"] / gpu_live["steps_per_s"]
        rows.append(
            [
                "Training step, full, GPU (gpu_check.py)",
                f"{gpu['batch_artworks']} artworks = {gpu['batch_sequences']} sequences, {gpu['precision']}, "
                f"{gpu['device']}; two separate runs",
                f"{1 / gpu['steps_per_s']:.4f} s/step (cached features)",
                f"{1 / gpu_live['steps_per_s']:.4f} s/step (live encoder)",
                _x(ratio),
                "≥ 2x",
                _met(ratio >= 2),
            ]
        )
    mem = results.get("memory")
    if mem:
        est = mem["gpu"]["estimates_fp16_batch32"]["cached_features"]
        gpu = mem["gpu"].get("gpu_check")
        measured = (
            f"{gpu['peak_allocated_gib']} GiB CUDA peak on {gpu['device']}"
            if gpu and gpu.get("peak_allocated_gib")
            else "GPU: not measured here (run gpu_check.py)"
        )
        rows.append(
            [
                "Memory, full-size training, GPU fp16",
                "32 artworks = 64 sequences, cached features",
                f"estimate {est['estimate_device_gib']:.2f} GiB on the card ({est['estimate_tensors_gib']:.2f} GiB tensors)",
                measured,
                "n/a",
                "fits 11 GB",
                _met(
                    est["fits_11gb_by_estimate"]
                    and (gpu is None or gpu.get("fits_11gb_card") in (None, True))
                ),
            ]
        )
        for r in mem["cpu_runs"]:
            rows.append(
                [
                    f"Memory, {'full-size' if r['profile'] == 'full' else r['profile']} training, CPU fp32"
                    + (" (quick)" if mem.get("quick") else ""),
                    f"{r['batch_artworks']} artworks = {r['batch_sequences']} sequences, {r['input']}",
                    f"peak RSS {r['measured_peak_rss_gib']:.2f} GiB (baseline {r['measured_baseline_rss_gib']:.2f})",
                    f"increase {r['measured_increase_gib']:.2f} GiB vs estimate+tower {r['predicted_increase_gib']:.2f} GiB",
                    f"{r['measured_over_predicted']:.2f} measured/estimated",
                    "(none)",
                    "n/a",
                ]
            )
    return rows


def render(results: dict[str, dict[str, Any]]) -> str:
    """The markdown text of RESULTS.md."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by hand. How each",
        "benchmark works and what the reference side re-implements: `benchmarks/README.md`. Ratios compare both",
        "sides measured alternately in one process on the same machine, inputs and weights; absolute times",
        "depend on the machine and on its load at the time (recorded below).",
        "",
    ]
    if not results:
        lines.append("No results yet: run `make bench`.")
        return "\n".join(lines) + "\n"
    lines += [
        "| benchmark | setting | ours | reference | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    lines += ["", "## Where the numbers come from", ""]
    for name, result in results.items():
        if name.startswith("gpu_check"):
            lines.append(
                f"- `{name}.json` (from `gpu_check.py`): {result.get('device')}, torch {result.get('torch')}, "
                f"{result.get('input')}, {result.get('precision')}, {result.get('steps_done')} steps"
            )
            continue
        lines.append(f"- `{name}.json`: {_machine(result)}; {result.get('wall_s', '?')} s")
    dec = results.get("decoding")
    if dec:
        lines += [
            "",
            "## Decoding: where the reference's time goes (seconds per run)",
            "",
            "| config | image encoder | decoder + LM head | top-p filter | VAD in Python | "
            "no-cache side / ours |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for c in dec.get("configs", []):
            p = c["reference_seconds_per_run_by_part"]
            lines.append(
                f"| {c['profile']}, batch {c['batch']} | {p['image_encoder']:.3f} | {p['decoder']:.3f} | "
                f"{p['top_p']:.3f} | {p['vad_python']:.3f} | {_x(c['ratio_no_cache_over_ours'])} |"
            )
    ts = results.get("train_step")
    if ts:
        lines += [
            "",
            "## Training step: the frozen tower's share",
            "",
            "| config | tower forward (s) | share of the live step | loss cached vs live |",
            "| --- | --- | --- | --- |",
        ]
        for c in ts.get("configs", []):
            lines.append(
                f"| {c['profile']}, {c['batch_artworks']} artworks | {c['tower_forward_s']:.3f} | "
                f"{c['tower_share_of_live_step'] * 100:.0f}% | {c['loss_cached_features']:.5f} vs "
                f"{c['loss_live_encoder']:.5f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="folder of the JSON results")
    parser.add_argument("--out", type=Path, default=None, help="default: RESULTS.md in --results")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    out = args.out or args.results / "RESULTS.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(results), encoding="utf-8")
    os.replace(tmp, out)
    print(f"written {out} ({len(results)} result files)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
