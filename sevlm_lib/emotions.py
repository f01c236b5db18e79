"""The nine ArtEmis emotions, their groups and colours (after ArtEmis's ``emotions.py``)."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "amusement",
    "awe",
    "contentment",
    "excitement",
    "anger",
    "disgust",
    "fear",
    "sadness",
    "something else",
)
EMOTION_TO_IDX: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}
IDX_TO_EMOTION: dict[int, str] = dict(enumerate(EMOTIONS))

POSITIVE_EMOTIONS: tuple[str, ...] = EMOTIONS[:4]
NEGATIVE_EMOTIONS: tuple[str, ...] = EMOTIONS[4:8]
SOMETHING_ELSE = "something else"
EMOTION_GROUPS: dict[str, tuple[str, ...]] = {
    "positive": POSITIVE_EMOTIONS,
    "negative": NEGATIVE_EMOTIONS,
    "something else": (SOMETHING_ELSE,),
}

# One colour per emotion, used by every plot in the course: warm/bright for positive, cool/dark for
# negative, grey for "something else".
EMOTION_COLORS: dict[str, str] = {
    "amusement": "#f4a340",
    "awe": "#b07cc6",
    "contentment": "#7cc47c",
    "excitement": "#e8604c",
    "anger": "#b2182b",
    "disgust": "#6b8e23",
    "fear": "#34495e",
    "sadness": "#4a78b5",
    "something else": "#9e9e9e",
}


def emotion_group(emotion: str) -> str:
    """``positive``, ``negative`` or ``something else``; raises ``ValueError`` for a label outside the nine."""
    for group, members in EMOTION_GROUPS.items():
        if emotion in members:
            return group
    raise ValueError(f"unknown emotion {emotion!r}: expected one of {', '.join(EMOTIONS)}")


def emotion_palette() -> list[str]:
    """The colours in ``EMOTIONS`` order, for seaborn's ``palette=``."""
    return [EMOTION_COLORS[e] for e in EMOTIONS]
