"""The batch stream: every optimizer step reads the same batches, whatever was interrupted where.

Data comes from the caller as ``make_batches(epoch) -> Iterable[dict]`` that yields exactly
``steps_per_epoch`` batches, the same ones every time it is called with the same ``epoch``. It is called with
the global random generators seeded from ``(seed, epoch)`` and restored afterwards, so even a
``DataLoader(shuffle=True)`` without its own generator gives the same order on every call and does not
disturb the dropout stream of the model. If ``make_batches`` accepts a ``start`` keyword it is called as
``make_batches(epoch, start=k)`` on resume and must then yield the batches from index ``k`` on (a cheap skip);
otherwise a sequence is sliced and any other iterable is iterated past the ``k`` batches already used.
Under several processes, process ``r`` takes every ``r``-th batch of the one stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from sevlm_lib.engine.checkpoint import capture_rng_state, restore_rng_state
from sevlm_lib.settings import seed_everything

MakeBatches = Callable[..., Iterable[Mapping[str, Any]]]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed the global generators get while an epoch's batches are made."""
    digest = hashlib.sha256(f"sevlm-batches:{seed}:{epoch}".encode()).hexdigest()
    return int(digest[:12], 16)


@contextlib.contextmanager
def seeded_rng(seed: int | None) -> Iterator[None]:
    """Run a block with the global generators seeded with ``seed`` (or untouched if None), then restore them."""
    saved = capture_rng_state()
    try:
        if seed is not None:
            seed_everything(seed)
        yield
    finally:
        restore_rng_state(saved)


def accepts_start(make_batches: MakeBatches) -> bool:
    """Whether ``make_batches`` takes a ``start`` keyword (a cheap skip on resume)."""
    try:
        return "start" in inspect.signature(make_batches).parameters
    except (TypeError, ValueError):
        return False


def batch_stream(
    make_batches: MakeBatches,
    steps_per_epoch: int,
    *,
    seed: int,
    start_batch: int,
    rank: int = 0,
    num_processes: int = 1,
) -> Iterator[Mapping[str, Any]]:
    """This process's batches from global batch ``start_batch`` on, across epochs, forever."""
    epoch, skip = divmod(start_batch, steps_per_epoch)
    while True:
        for index, batch in epoch_batches(make_batches, steps_per_epoch, seed=seed, epoch=epoch, skip=skip):
            if (epoch * steps_per_epoch + index) % num_processes == rank:
                yield batch
        epoch, skip = epoch + 1, 0


def _skipped(batches: Iterable[Mapping[str, Any]], skip: int, what: str, spe: int) -> Iterator[Any]:
    if hasattr(batches, "__len__") and len(batches) != spe:  # type: ignore[arg-type]
        raise ValueError(f"{what} has {len(batches)} batches, but steps_per_epoch={spe}")  # type: ignore[arg-type]
    if skip and isinstance(batches, Sequence):
        return iter(batches[skip:])
    iterator = iter(batches)
    if skip:
        consumed = sum(1 for _ in islice(iterator, skip))
        if consumed < skip:
            raise ValueError(f"{what} yielded {consumed} batches, but steps_per_epoch={spe}")
    return iterator


def epoch_batches(
    make_batches: MakeBatches, spe: int, *, seed: int, epoch: int, skip: int
) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """``(index, batch)`` for one epoch from batch ``skip`` on, checking that it has ``spe`` batches."""
    what = f"make_batches({epoch})"
    with seeded_rng(epoch_seed(seed, epoch)):
        if skip and accepts_start(make_batches):
            iterator = iter(make_batches(epoch, start=skip))
        else:
            iterator = _skipped(make_batches(epoch), skip, what, spe)
        # The first batch of an epoch is fetched seeded too: a generator's set-up code or a DataLoader's
        # sampler runs at the first ``next``. Later batches are fetched in the training stream, in the
        # same place whether the run was resumed or not.
        first = [] if skip else list(islice(iterator, 1))
    index = skip
    while True:
        try:
            batch = first.pop() if first else next(iterator)
        except StopIteration:
            break
        if index >= spe:
            raise ValueError(f"{what} yielded more than steps_per_epoch={spe} batches")
        if not isinstance(batch, Mapping):
            raise TypeError(
                f"{what}: batch {index + 1} is a {type(batch).__name__}, expected a dict of tensors"
            )
        yield index, batch
        index += 1
    if index < spe:
        raise ValueError(f"{what} yielded {index} batches, but steps_per_epoch={spe}")
