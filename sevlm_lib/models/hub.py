"""Loading pretrained parts from the Hugging Face hub: fail fast offline, quiet expected reports, clear errors.

* **Fail fast.** With ``HF_HUB_OFFLINE`` unset, a machine without internet makes every hub call wait on
  retries (about two minutes per process). :func:`load_from_hub` first tries one TCP connection to the hub
  (or to the HTTPS proxy), :data:`PROBE_TIMEOUT_S` seconds at most, once per process. When that fails it
  switches this process's hub client offline (:func:`offline_if_unreachable`), reads the local cache only and
  says, once, to set ``HF_HUB_OFFLINE=1``; nothing then waits on the network. Call
  :func:`offline_if_unreachable` before any other hub access (e.g. a tokenizer) for the same effect there.
* **Quiet, explained load reports.** transformers prints a table of every weight it did not use
  ("UNEXPECTED": CLIP's text tower, which SEVLM never uses) or had to create ("MISSING": GPT-2's new
  cross-attention, which SEVLM trains). When every row is one of these expected kinds the table is dropped
  and one line says what happened; any other row (a real mismatch) is shown as transformers printed it.
* **Download advice** names only the files the course needs (:data:`HUB_FILES`, :func:`download_command`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

PROBE_TIMEOUT_S = 3.0
# The files the course reads from each hub repository (everything else in the repo is never used).
HUB_FILES: dict[str, tuple[str, ...]] = {
    "openai/clip-vit-base-patch16": ("config.json", "model.safetensors"),
    "distilgpt2": (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
    ),
}
# Weights a checkpoint holds but a SEVLM part does not use, and weights SEVLM adds: (prefix or substring, why).
_EXPECTED_UNUSED = (
    ("text_model.", "CLIP's text tower"),
    ("text_projection", "CLIP's text tower"),
    ("visual_projection", "CLIP's contrastive projection"),
    ("logit_scale", "CLIP's contrastive temperature"),
)
_EXPECTED_NEW = (("crossattention", "cross-attention"), ("ln_cross_attn", "cross-attention"))

_probe_result: dict[str, bool] = {}
_explained: set[str] = set()


def download_command(hub_id: str, revision: str | None = None) -> str:
    """``hf download REPO --revision REV --include FILE ...``: only the files the course needs."""
    rev = f" --revision {revision}" if revision else ""
    files = HUB_FILES.get(hub_id)
    include = f" --include {' '.join(files)}" if files else ""
    return f"hf download {hub_id}{rev}{include}"


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is switched on in this process."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _probe_target() -> tuple[str, int]:
    """The host and port the first hub request would connect to: the HTTPS proxy if one is set, else the hub."""
    from huggingface_hub import constants

    proxy = next(
        (os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)),
        None,
    )
    url = urllib.parse.urlsplit(proxy or constants.ENDPOINT)
    if not url.hostname:
        raise ValueError(f"cannot tell the host of the hub endpoint {proxy or constants.ENDPOINT!r}")
    return url.hostname, url.port or (443 if url.scheme == "https" else 80)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection to the hub endpoint (``HF_ENDPOINT``) or the HTTPS proxy; cached for the process."""
    host, port = _probe_target()
    key = f"{host}:{port}"
    if key not in _probe_result:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                _probe_result[key] = True
        except OSError:
            _probe_result[key] = False
    return _probe_result[key]


def _note(message: str) -> None:
    print(f"[sevlm] {message}", file=sys.stderr, flush=True)


def _kinds(keys: Sequence[str], expected: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(the kinds of the expected keys, the keys that are not expected)."""
    kinds, other = [], []
    for key in keys:
        kind = next((why for pattern, why in expected if pattern in key), None)
        if kind is None:
            other.append(key)
        elif kind not in kinds:
            kinds.append(kind)
    return kinds, other


class _HoldLoadReports(logging.Filter):
    """Keeps transformers' "LOAD REPORT" records back while a model loads (released if unexpected)."""

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.held.append(record)
            return False
        return True


def _from_pretrained_quietly(cls: Any, hub_id: str, revision: str | None, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` with transformers' load report replaced by one line when it holds no surprise."""
    load: Callable[..., Any] = cls.from_pretrained
    if not hasattr(cls, "_load_pretrained_model"):  # a tokenizer or config: nothing to report
        return load(hub_id, revision=revision, **kwargs)
    from transformers.utils import logging as hf_logging

    target = logging.getLogger("transformers.modeling_utils")
    hold = _HoldLoadReports()
    target.addFilter(hold)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the "Loading weights" bar of a few-second load
    try:
        model, info = load(hub_id, revision=revision, output_loading_info=True, **kwargs)
    finally:
        target.removeFilter(hold)
        if bars:
            hf_logging.enable_progress_bar()
    unused, other_unused = _kinds(sorted(info.get("unexpected_keys", ())), _EXPECTED_UNUSED)
    new, other_new = _kinds(sorted(info.get("missing_keys", ())), _EXPECTED_NEW)
    if other_unused or other_new or info.get("mismatched_keys"):
        for record in hold.held:  # something unexpected: show transformers' own report
            target.handle(record)
        return model
    n_unused, n_new = len(info.get("unexpected_keys", ())), len(info.get("missing_keys", ()))
    if (n_unused or n_new) and hub_id not in _explained:
        _explained.add(hub_id)
        parts = []
        if n_unused:
            parts.append(f"{n_unused} weights not used ({', '.join(unused)})")
        if n_new:
            parts.append(f"{n_new} new weights ({', '.join(new)}; trained by SEVLM)")
        _note(f"{cls.__name__} from {hub_id}: {' and '.join(parts)}, as expected")
    return model


def offline_if_unreachable() -> bool:
    """``True`` when this process must not use the network for the hub: ``HF_HUB_OFFLINE`` is set, or the
    hub cannot be reached (:func:`hub_reachable`), in which case the hub client is switched offline for the
    rest of the process (every hub call then reads the cache, with no retries) and a note says, once, to set
    ``HF_HUB_OFFLINE=1``."""
    if hub_offline():
        return True
    if hub_reachable():
        return False
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub and transformers
    if "probe" not in _explained:
        _explained.add("probe")
        host, port = _probe_target()
        _note(
            f"the Hugging Face hub ({host}:{port}) cannot be reached: reading the local cache only. "
            "Set HF_HUB_OFFLINE=1 to skip this check (and the hub's retries) when working offline."
        )
    return True


def load_from_hub(cls: Any, hub_id: str, revision: str | None, **kwargs: Any) -> Any:
    """``cls.from_pretrained(hub_id, revision=...)``, failing fast when the hub cannot be reached.

    Offline (``HF_HUB_OFFLINE=1``) only the local cache is read. Otherwise, when a short connection probe
    to the hub fails, the local cache is read (``local_files_only=True``) with a note to set
    ``HF_HUB_OFFLINE=1``. A copy that is not cached raises an ``OSError`` with the command that fetches it.
    """
    if not kwargs.get("local_files_only") and offline_if_unreachable():
        kwargs["local_files_only"] = True
    unreachable = "probe" in _explained  # this process found the hub unreachable (and went offline)
    offline = hub_offline() and not unreachable
    try:
        return _from_pretrained_quietly(cls, hub_id, revision, **kwargs)
    except OSError as err:
        if offline:
            why = "it is not in the Hugging Face cache and HF_HUB_OFFLINE is set"
        elif unreachable:
            why = "it is not in the Hugging Face cache and the hub cannot be reached (set HF_HUB_OFFLINE=1 offline)"
        else:
            why = f"it could not be read from the Hugging Face cache or the hub ({err})"
        raise OSError(
            f"could not load {hub_id!r} ({getattr(cls, '__name__', cls)}, revision {(revision or 'main')[:10]}): "
            f"{why}. With internet access, fetch it once:\n    {download_command(hub_id, revision)}\n"
            "then run offline with HF_HUB_OFFLINE=1. `python -m sevlm_lib.check --profile full` lists everything "
            "the full profile needs."
        ) from err
