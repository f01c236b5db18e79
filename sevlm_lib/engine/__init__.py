"""The training engine: one loop (:mod:`.trainer`), its config (:mod:`.config`), the batch stream
(:mod:`.batches`), checkpoints (:mod:`.checkpoint`) and logs (:mod:`.history`). Nothing here knows SEVLM:
any ``model(batch) -> out`` with ``out.loss`` and ``out.losses`` trains."""

from sevlm_lib.engine.checkpoint import best_checkpoint, latest_checkpoint, load_checkpoint, load_history
from sevlm_lib.engine.config import TrainConfig, config_fingerprint
from sevlm_lib.engine.history import History, clipped_shares
from sevlm_lib.engine.trainer import Trainer, train_or_load

__all__ = [
    "History",
    "TrainConfig",
    "Trainer",
    "best_checkpoint",
    "clipped_shares",
    "config_fingerprint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_history",
    "train_or_load",
]
