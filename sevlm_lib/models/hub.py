"""Loading pretrained parts from the Hugging Face hub, with an error that says what to fetch."""

from __future__ import annotations

from typing import Any


def load_from_hub(cls: Any, hub_id: str, revision: str | None, **kwargs: Any) -> Any:
    """``cls.from_pretrained(hub_id, revision=...)``; offline without a cached copy raises a clear ``OSError``."""
    try:
        return cls.from_pretrained(hub_id, revision=revision, **kwargs)
    except OSError as err:
        rev = f" --revision {revision}" if revision else ""
        raise OSError(
            f"could not load {hub_id!r} ({cls.__name__}): it is not in the Hugging Face cache and the hub "
            f"cannot be reached. With internet access, fetch it once:\n    hf download {hub_id}{rev}\n"
            "then run offline with HF_HUB_OFFLINE=1. `python -m sevlm_lib.check --profile full` lists everything "
            "the full profile needs."
        ) from err
