"""The architecture diagram: every component labelled, switches drawn on/off, the SVG byte-repeatable and the
committed ``docs/architecture.svg`` what the code draws today."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from sevlm_lib.models.sevlm import full_config, tiny_config  # noqa: E402
from sevlm_lib.viz import main, plot_architecture, save_architecture_figure  # noqa: E402

DOCS_SVG = Path(__file__).resolve().parents[1] / "docs" / "architecture.svg"
COMPONENTS = (
    "artwork",
    "vision tower",
    "patch tokens",
    "projection",
    "tokens",
    "embeddings",
    "decoder",
    "token VAD lookup",
    "VAD encoder",
    "fuse",
    "LM head",
)
SWITCHED = {"vad_fusion": "VAD fusion", "vad_head": "VAD head", "contrastive": "contrastive head"}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _switch_label(texts: list[str], name: str) -> str:
    found = [t for t in texts if t.startswith(name + " (")]
    assert len(found) == 1, f"expected one label for {name!r}, found {found}"
    return found[0]


def test_every_component_is_labelled_with_the_config_sizes() -> None:
    texts = _texts(plot_architecture(full_config(vad_fusion=True, vad_head=True, contrastive=True)))
    missing = [c for c in COMPONENTS if c not in texts]
    assert not missing, f"no label for {missing}; labels: {texts}"
    for name in SWITCHED.values():
        assert _switch_label(texts, name) == f"{name} (on)"
    body = "\n".join(texts)
    for expected in ("CLIP ViT-B/16", "12 layers, width 768", "196 x 768", "distilgpt2", "6 layers, d = 768"):
        assert expected in body
    assert "Linear(768+3 -> 768)" in body and "Linear(768 -> 3)" in body
    assert "loss = xe + 1·vad + 1·contrastive" in texts

    tiny = "\n".join(_texts(plot_architecture(tiny_config())))
    assert "2 layers, width 64" in tiny and "16 x 64" in tiny and "12 layers" not in tiny


@pytest.mark.parametrize("switch", sorted(SWITCHED))
def test_switched_off_parts_are_labelled_off_and_greyed(switch: str) -> None:
    name = SWITCHED[switch]
    on = tiny_config(**{switch: True})
    off = tiny_config(**{switch: False})
    assert _switch_label(_texts(plot_architecture(on)), name) == f"{name} (on)"
    fig = plot_architecture(off)
    assert _switch_label(_texts(fig), name) == f"{name} (off)"
    for other_switch, other in SWITCHED.items():  # the others stay as the config says (off in tiny_config())
        if other_switch != switch:
            assert _switch_label(_texts(fig), other).endswith("(off)")
    if switch == "vad_fusion":
        boxes = {p.get_gid(): p for p in fig.findobj(FancyBboxPatch) if p.get_gid()}
        assert boxes["vad_fusion"].get_linestyle() != "-"
        on_boxes = {p.get_gid(): p for p in plot_architecture(on).findobj(FancyBboxPatch) if p.get_gid()}
        assert on_boxes["vad_fusion"].get_linestyle() == "-"


def test_non_causal_vad_encoder_is_named() -> None:
    texts = "\n".join(_texts(plot_architecture(tiny_config(vad_fusion=True, vad_causal=False))))
    assert "NON-causal" in texts


def test_draws_into_a_given_axes() -> None:
    fig, ax = plt.subplots(figsize=(10, 5.5))
    assert plot_architecture(ax=ax) is fig
    assert "LM head" in _texts(fig)


def test_svg_is_byte_deterministic(tmp_path: Path) -> None:
    first = save_architecture_figure(tmp_path / "a.svg")
    assert main(["architecture", str(tmp_path / "b.svg")]) == 0
    data = first.read_bytes()
    assert data.startswith(b"<?xml") and b"<svg" in data
    assert data == (tmp_path / "b.svg").read_bytes()
    assert b"<dc:date>" not in data


def test_rejects_a_path_that_is_not_svg(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.svg"):
        save_architecture_figure(tmp_path / "a.png")


def test_committed_svg_is_current(tmp_path: Path) -> None:
    assert DOCS_SVG.is_file(), f"{DOCS_SVG} is missing: run `make figures`"
    committed = DOCS_SVG.read_bytes()
    written_by = re.search(rb"Matplotlib v([^,<\s]+)", committed)
    assert written_by, f"{DOCS_SVG}: no 'Matplotlib vX.Y.Z' creator in its metadata"
    if written_by.group(1).decode() != matplotlib.__version__:
        pytest.skip(
            f"{DOCS_SVG.name} was written by matplotlib {written_by.group(1).decode()}, this is "
            f"{matplotlib.__version__}: SVG bytes differ between versions"
        )
    fresh = save_architecture_figure(tmp_path / "architecture.svg").read_bytes()
    assert fresh == committed, f"{DOCS_SVG} is out of date: run `make figures`"
