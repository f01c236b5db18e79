"""Data-parallel training with 2 CPU processes (gloo), the way ``accelerate launch``/``torchrun`` runs it.

Each process gets the environment a launcher sets (RANK, WORLD_SIZE, MASTER_ADDR, ...) and runs the course's
``Trainer`` on a micro SEVLM. Checked: the parameters stay identical across ranks, each rank trains on its
own share of the batch stream (rank r takes every r-th batch), and the result equals one process
accumulating the gradients of the same batches (dropout is 0 in the micro config, so this is exact up to
float rounding).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import torch

from sevlm_lib.data.artemis import ArtworkAnnotations
from sevlm_lib.data.datasets import PairBatches, TensorBank
from sevlm_lib.text import SequenceBuilder
from tests.model_fixtures import TEXTS, micro_model, tokenizer

STEPS, WORLD = 3, 2
EMOTIONS = ("awe", "sadness", "anger", "contentment", "fear")


def make_batches_fn(tok):
    """A deterministic pair-batch stream of 8 batches per epoch, each tagged with its index."""
    keys = [("Style", f"painting-{i}") for i in range(16)]
    g = torch.Generator().manual_seed(0)
    images = TensorBank(keys, torch.randn(16, 3, 32, 32, generator=g), "pixel_values")
    items = [
        ArtworkAnnotations(s, p, (EMOTIONS[i % 5], EMOTIONS[(i + 2) % 5]), (TEXTS[i % 5], TEXTS[(i + 1) % 5]))
        for i, (s, p) in enumerate(keys)
    ]
    pairs = PairBatches(items, SequenceBuilder(tok, max_len=30), images, batch_size=2, seed=0)

    def batches(epoch: int = 0):
        for i, batch in enumerate(pairs.batches(epoch)):
            batch["batch_id"] = torch.tensor(epoch * len(pairs) + i)
            yield batch

    return batches, len(pairs)


def _digest(model: torch.nn.Module) -> str:
    from sevlm_lib.features import weights_sha256

    return weights_sha256(model)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        GROUP_RANK="0",
    )
    torch.set_num_threads(1)
    from sevlm_lib.engine import TrainConfig, Trainer

    tok = tokenizer()
    model = micro_model(tok, seed=0, vad_fusion=True, vad_head=True, contrastive=True)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(int(args[0]["batch_id"])))
    batches, per_epoch = make_batches_fn(tok)
    cfg = TrainConfig(seed=0, max_steps=STEPS, lr=1e-3, device="cpu", mixed_precision="no")
    trainer = Trainer(
        model, cfg, batches, per_epoch, param_groups=model.parameter_groups(1e-3, 2e-3), quiet=True
    )
    trainer.fit(checkpoint_dir=Path(out) / "ckpt")
    result = {"rank": rank, "world": trainer.num_processes, "seen": seen, "sha256": _digest(model)}
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_stay_in_sync_and_split_the_batches(tmp_path: Path) -> None:
    import torch.multiprocessing as mp
    from safetensors.torch import load_file

    from sevlm_lib.engine import TrainConfig, Trainer

    mp.start_processes(
        _worker, args=(WORLD, _free_port(), str(tmp_path)), nprocs=WORLD, join=True, start_method="spawn"
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(WORLD)]
    assert [r["world"] for r in ranks] == [WORLD, WORLD]
    assert ranks[0]["sha256"] == ranks[1]["sha256"]  # in sync after every step
    assert ranks[0]["seen"] == [0, 2, 4] and ranks[1]["seen"] == [1, 3, 5]  # distinct shares of one stream
    state = json.loads(next((tmp_path / "ckpt").glob("step-*/state.json")).read_text())
    assert state["num_processes"] == WORLD and state["step"] == STEPS

    # one process accumulating the gradients of the same 2 batches per step ends at the same weights
    tok = tokenizer()
    model = micro_model(tok, seed=0, vad_fusion=True, vad_head=True, contrastive=True)
    initial = _digest(model)
    batches, per_epoch = make_batches_fn(tok)
    cfg = TrainConfig(
        seed=0,
        max_steps=STEPS,
        lr=1e-3,
        device="cpu",
        mixed_precision="no",
        gradient_accumulation_steps=WORLD,
    )
    Trainer(model, cfg, batches, per_epoch, param_groups=model.parameter_groups(1e-3, 2e-3), quiet=True).fit()
    assert ranks[0]["sha256"] != initial
    saved = load_file(str(next((tmp_path / "ckpt").glob("step-*/model.safetensors"))))
    single = model.state_dict()
    # The scorer's last bias adds the same constant to all three InfoNCE logits: its true gradient is 0, so
    # AdamW turns float noise (different in the two runs) into lr-sized steps. It cancels in the loss.
    zero_grad = {"scorer.mlp.6.bias"}
    assert set(saved) <= set(single) and len(saved) > 50  # (tied weights are saved once)
    for name, tensor in saved.items():
        if name not in zero_grad:
            torch.testing.assert_close(tensor, single[name], rtol=1e-4, atol=1e-6, msg=name)
