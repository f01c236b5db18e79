"""Smoke tests of ``benchmarks/``: each script still runs in ``--quick`` mode, and its checks still hold.

No timing is asserted here (speed is for the benchmarks themselves to report); what is asserted is what must
be true on any machine: the reference-style decoding produces exactly our tokens, the per-item VAD equals the
table lookup, the cached-feature loss equals the live-encoder loss up to fp16 rounding, the report renders.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_data, bench_decoding, bench_memory, bench_train_step, common, report  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread while these run (tiny ops on a shared 2-core machine), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bench-results")


@pytest.fixture(scope="module")
def lexicon():
    return common.load_bench_lexicon()


@pytest.fixture(scope="module")
def decoding(out_dir: Path) -> dict:
    bench_decoding.run(["--quick", "--out-dir", str(out_dir)])
    return json.loads((out_dir / "decoding.json").read_text(encoding="utf-8"))


def test_decoding_quick_tokens_identical_over_all_steps(decoding: dict) -> None:
    (cfg,) = decoding["configs"]
    assert cfg["identical_tokens"], cfg
    assert cfg["samples_differing_reference"] == 0 and cfg["samples_differing_no_cache"] == 0
    assert cfg["token_lengths"] == [cfg["new_tokens"]] == [25]  # <eos> suppressed: every step decoded
    for side in ("ours", "no_cache", "reference"):
        assert cfg["sides"][side]["median_s"] > 0
    assert math.isfinite(cfg["ratio_reference_over_ours"])
    assert decoding["machine"]["torch"] == torch.__version__
    assert set(cfg["reference_seconds_per_run_by_part"]) == {
        "image_encoder",
        "decoder",
        "top_p",
        "vad_python",
    }


def test_reference_generate_matches_generate_and_notices_a_different_table(lexicon) -> None:
    from sevlm_lib.generation import generate

    texts = [u for _, u in common.synthetic_annotations(lexicon, 40, seed=1)]
    model, _, builder = bench_decoding.build_model("tiny", lexicon, texts, seed=0)
    control = bench_decoding.StepControl(model, builder.eos_id, builder.because_ids[-1])
    px = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def both() -> tuple[list[list[int]], list[list[int]]]:
        control.reset()
        ours = generate(model, builder, {"pixel_values": px}, max_new_tokens=12).token_ids
        control.reset()
        return ours, bench_decoding.reference_generate(model, builder, lexicon, px, 12)

    try:
        ours, ref = both()
        assert ref == ours
        assert all(len(row) == 12 and row[1] == builder.because_ids[-1] for row in ours)
        # the check can fail: with a table that no longer matches the lexicon, our VAD path differs
        g = torch.Generator().manual_seed(1)
        model.token_vad.copy_(torch.rand(model.token_vad.shape, generator=g) * 2 - 1)
        model.token_vad_known.fill_(True)
        with torch.no_grad():
            model.fusion.weight.mul_(50)  # let the VAD half of the fusion dominate the embedding
        changed, ref_changed = both()
        assert changed != ref_changed
    finally:
        control.remove()


def test_fresh_lookup_equals_the_memoised_lexicon(lexicon) -> None:
    words = ["happy", "happier", "running", "cliffs", "sadness", "The", "zzzz", "", "don't", "calmest"]
    for word in words:
        assert common.fresh_word_vad(lexicon, word) == lexicon.vad(word), word
    assert common.fresh_token_vad(lexicon, " Happy") == lexicon.vad("happy")
    assert common.fresh_token_vad(lexicon, "<pad>") == (0.0, 0.0, 0.0)
    assert common.fresh_token_vad(lexicon, "a") == (
        0.0,
        0.0,
        0.0,
    )  # one letter: not looked up, as in the table


def test_reference_vad_equals_token_table(lexicon) -> None:
    from sevlm_lib.text import train_tiny_tokenizer

    tok = train_tiny_tokenizer([u for _, u in common.synthetic_annotations(lexicon, 40, seed=1)])
    table, _ = lexicon.token_vad_table(tok)
    ids = torch.arange(len(tok))[None]
    assert torch.equal(bench_data.reference_vad(tok, lexicon, ids)[0], table[ids][0])
    per_token = torch.stack([bench_decoding._sample_vad(tok, lexicon, [i]) for i in range(len(tok))])[:, 0]
    assert torch.equal(per_token, table)


def test_data_quick(out_dir: Path) -> None:
    bench_data.run(["--quick", "--out-dir", str(out_dir)])
    result = json.loads((out_dir / "data.json").read_text(encoding="utf-8"))
    assert result["identical_vad"]
    assert result["items_per_repeat"] == result["batch_sequences"] * result["batches_per_repeat"]
    for part in ("vad_part", "whole_batch"):
        assert result[part]["sides"]["ours"]["items_per_s"] > 0
        assert math.isfinite(result[part]["ratio_reference_over_ours"])


def test_train_step_quick(out_dir: Path) -> None:
    bench_train_step.run(["--quick", "--out-dir", str(out_dir)])
    (cfg,) = json.loads((out_dir / "train_step.json").read_text(encoding="utf-8"))["configs"]
    assert cfg["profile"] == "tiny" and cfg["batch_sequences"] == 2 * cfg["batch_artworks"]
    assert cfg["loss_abs_difference"] < 1e-3  # cached features = live tower output up to fp16 rounding
    assert cfg["tower_share_of_live_step"] > 0 and math.isfinite(cfg["ratio_live_over_cached"])


def test_memory_quick(out_dir: Path) -> None:
    bench_memory.run(["--quick", "--out-dir", str(out_dir)])
    result = json.loads((out_dir / "memory.json").read_text(encoding="utf-8"))
    (cpu,) = result["cpu_runs"]
    assert (
        cpu["peak_rss_bytes"] >= cpu["peak_before_full_steps_rss_bytes"] >= cpu["baseline_peak_rss_bytes"] > 0
    )
    assert cpu["estimate_cpu_fp32_bytes"] > 0 and cpu["steps"] == 1 and len(cpu["losses"]) == 1
    est = result["gpu"]["estimates_fp16_batch32"]
    assert est["live_encoder"]["estimate_device_bytes"] > est["cached_features"]["estimate_device_bytes"]


def test_report_renders_every_quick_result(out_dir: Path, decoding: dict) -> None:
    for name in ("data", "train_step", "memory"):
        if not (out_dir / f"{name}.json").is_file():
            pytest.skip(f"{name}.json missing: its smoke test did not run first")
    assert report.main(["--results", str(out_dir)]) == 0
    text = (out_dir / "RESULTS.md").read_text(encoding="utf-8")
    for title in (
        "Decoding, tiny (quick)",
        "Data pipeline, VAD part (quick)",
        "Training step, tiny (quick)",
        "Memory, full-size training, GPU fp16",
    ):
        assert title in text
    assert decoding["machine"]["cpu"] in text


def test_report_quotes_the_gpu_training_ratio(tmp_path: Path) -> None:
    base = {"device": "Some GPU", "batch_artworks": 32, "batch_sequences": 64, "precision": "fp16"}
    for name, steps in (("gpu_check", 20.0), ("gpu_check_live", 10.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({**base, "steps_per_s": steps}), encoding="utf-8")
    text = report.render(report.load_results(tmp_path))
    row = next(line for line in text.splitlines() if line.startswith("| Training step, full, GPU"))
    assert "| 2.00x | ≥ 2x | yes |" in row and "0.0500 s/step" in row and "0.1000 s/step" in row


def test_report_rejects_broken_json(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="data.json: line 1"):
        report.load_results(tmp_path)


def test_compare_alternates_and_counts_calls() -> None:
    calls: list[str] = []
    result = common.compare(
        {"a": lambda: calls.append("a") or 1, "b": lambda: calls.append("b") or 2},
        warmup=1,
        repeats=3,
        inner={"a": 2},
    )
    assert calls == ["a", "b", "a", "a", "b", "b", "a", "a", "a", "a", "b"]
    assert len(result.seconds["a"]) == len(result.seconds["b"]) == 3
    assert result.outputs == {"a": 1, "b": 2}
    with pytest.raises(ValueError):
        common.compare({"a": lambda: None}, repeats=0)


def test_the_recipe_tuning_rule_takes_the_cheapest_candidate_within_one_standard_error() -> None:
    from benchmarks import tune_tiny_recipe

    rows = [
        {"max_steps": 600, "lr": 3e-3, "best_val_emo_acc": 0.60},
        {"max_steps": 1000, "lr": 3e-3, "best_val_emo_acc": 0.63},
        {"max_steps": 1000, "lr": 5e-3, "best_val_emo_acc": 0.50},
    ]
    # 200 validation artworks: one standard error at 0.63 is 0.034, so 0.60 is close enough and cheaper
    assert tune_tiny_recipe.choose(rows, 200)["max_steps"] == 600
    # 2,000 artworks: the standard error is 0.011, so only the best candidate qualifies
    chosen = tune_tiny_recipe.choose(rows, 2000)
    assert (chosen["max_steps"], chosen["lr"]) == (1000, 3e-3)
    assert abs(chosen["rule_se"] - (0.63 * 0.37 / 2000) ** 0.5) < 1e-12
