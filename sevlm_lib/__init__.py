"""sevlm_lib: the library behind the SEVLM course.

Import submodules directly (``from sevlm_lib.data import artemis``); this package imports nothing heavy.
"""

from sevlm_lib.emotions import EMOTION_TO_IDX, EMOTIONS
from sevlm_lib.settings import Settings, get_settings, seed_everything

__all__ = ["EMOTIONS", "EMOTION_TO_IDX", "Settings", "get_settings", "seed_everything"]
__version__ = "0.1.0"
