"""The SEVLM architecture diagram, drawn from a config (switched-off parts greyed). ``python -m
sevlm_lib.viz architecture PATH`` writes it (``make figures``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.figure import Figure as MplFigure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from sevlm_lib.models.sevlm import SEVLMConfig, full_config
from sevlm_lib.models.vision import CLIP_HUB_ID

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


_ARCH_COLORS = {"image": "#dbe9f6", "text": "#fdf1cf", "vad": "#dcefd9", "head": "#fbe0cc", "off": "#f2f2f2"}


def _arch_box(
    ax: Axes,
    xy: tuple[float, float],
    size: tuple[float, float],
    title: str,
    body: str = "",
    *,
    kind: str,
    on: bool = True,
    gid: str | None = None,
    fontsize: float = 7.5,
) -> None:
    """One rounded box: a bold ``title`` line over smaller ``body`` lines, grey and dashed when ``on`` is false."""

    (x, y), (w, h) = xy, size
    box = FancyBboxPatch(
        (x, y),
        w,
        h,
        boxstyle="round,pad=0,rounding_size=1.2",
        facecolor=_ARCH_COLORS[kind if on else "off"],
        edgecolor="0.25" if on else "0.6",
        linewidth=1.0,
        linestyle="-" if on else (0, (4, 3)),
        zorder=2,
    )
    if gid:
        box.set_gid(gid)
    ax.add_patch(box)
    color = "black" if on else "0.5"
    cx = x + w / 2
    if body:
        ax.text(
            cx,
            y + h - 1.3,
            title,
            ha="center",
            va="top",
            fontsize=fontsize,
            weight="bold",
            color=color,
            zorder=3,
        )
        ax.text(
            cx,
            y + h - 4.0,
            body,
            ha="center",
            va="top",
            fontsize=fontsize - 1,
            color=color,
            zorder=3,
            linespacing=1.25,
        )
    else:
        ax.text(
            cx,
            y + h / 2,
            title,
            ha="center",
            va="center",
            fontsize=fontsize,
            weight="bold",
            color=color,
            zorder=3,
        )


def _arch_arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    on: bool = True,
    label: str | None = None,
    label_xy: tuple[float, float] | None = None,
    connection: str = "arc3",
) -> None:
    """An arrow from ``start`` to ``end`` (data coordinates), grey and dashed when ``on`` is false."""

    arrow = FancyArrowPatch(
        start,
        end,
        arrowstyle="-|>",
        mutation_scale=9,
        color="0.2" if on else "0.65",
        linewidth=1.0,
        linestyle="-" if on else (0, (4, 3)),
        connectionstyle=connection,
        shrinkA=0,
        shrinkB=0,
        zorder=1,
    )
    ax.add_patch(arrow)
    if label:
        lx, ly = (
            label_xy if label_xy is not None else ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.8)
        )
        ax.text(
            lx,
            ly,
            label,
            ha="center",
            va="bottom",
            fontsize=6.5,
            style="italic",
            color="0.25" if on else "0.55",
            zorder=3,
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _on_off(name: str, on: bool) -> str:
    return f"{name} ({'on' if on else 'off'})"


def _component_names(cfg: SEVLMConfig) -> tuple[str, str]:
    """The vision tower's and the decoder's names as the diagram prints them."""
    vis, dec = cfg.vision, cfg.decoder
    if vis.hub_id == CLIP_HUB_ID:
        vision_name = "CLIP ViT-B/16"
    elif vis.hub_id:
        vision_name = f"CLIP ViT ({vis.hub_id})"
    else:
        vision_name = "tiny CLIP ViT (random init)"
    decoder_name = f"GPT-2: {dec.hub_id}" if dec.hub_id else "tiny GPT-2 (random init)"
    return vision_name, decoder_name


def _draw_image_path(ax: Axes, cfg: SEVLMConfig, vision_name: str) -> None:
    """Top row: artwork -> vision tower -> patch tokens -> projection, and the cross-attention arrow."""
    vis, d, dv = cfg.vision, cfg.decoder.n_embd, cfg.vision.hidden_size
    _arch_box(
        ax,
        (1, 40),
        (13, 9),
        "artwork",
        f"{vis.image_size} x {vis.image_size} px\nRGB",
        kind="image",
        gid="image",
    )
    _arch_box(
        ax,
        (17, 39),
        (21, 11),
        "vision tower",
        f"{vision_name}\n{_plural(vis.num_layers, 'layer')}, width {dv}, patch {vis.patch_size}\n"
        + ("frozen (no gradients)" if vis.frozen else "trainable"),
        kind="image",
        gid="vision",
    )
    _arch_box(
        ax,
        (41, 40),
        (13, 9),
        "patch tokens",
        f"{vis.num_patches} x {dv}\n(CLS dropped)",
        kind="image",
        gid="patches",
    )
    projection = f"Linear({dv} -> {d})" if dv != d else f"identity ({dv} = d)"
    _arch_box(
        ax, (57, 40), (14, 9), "projection", f"{projection}\nthe image memory", kind="image", gid="projection"
    )
    _arch_arrow(ax, (14, 44.5), (17, 44.5))
    _arch_arrow(ax, (38, 44.5), (41, 44.5))
    _arch_arrow(ax, (54, 44.5), (57, 44.5))
    _arch_arrow(ax, (64, 40), (64, 34), label="cross-attention", label_xy=(68.5, 36.2))


def _draw_text_path(ax: Axes, cfg: SEVLMConfig, decoder_name: str) -> None:
    """Middle row: tokens -> embeddings -> the decoder."""
    dec, d = cfg.decoder, cfg.decoder.n_embd
    _arch_box(
        ax,
        (1, 22),
        (13, 12),
        "tokens",
        "<bos> the emotion\nis X because ...\n<eos>",
        kind="text",
        gid="tokens",
    )
    _arch_box(
        ax,
        (17, 22),
        (17, 12),
        "embeddings",
        f"token + segment\n(<emotion>, <explanation>)\nd = {d}",
        kind="text",
        gid="embeddings",
    )
    _arch_box(
        ax,
        (57, 14),
        (14, 20),
        "decoder",
        f"{decoder_name}\n{_plural(dec.n_layer, 'layer')}, d = {d}\n{_plural(dec.n_head, 'head')}\n\n"
        "masked self-attention\n+ cross-attention\nto the patches\n\nout: last hidden states",
        kind="text",
        gid="decoder",
    )
    _arch_arrow(ax, (14, 28), (17, 28))
    words = "fused word" if cfg.vad_fusion else "word"
    _arch_arrow(ax, (34, 28), (57, 28), label=f"{words} + segment embeddings", label_xy=(45.5, 28.6))


def _draw_fusion_frame(ax: Axes, fusion: bool) -> None:
    """The dashed-or-solid frame around the VAD fusion path, with its title and scope note."""
    frame_color = "0.35" if fusion else "0.6"
    frame = FancyBboxPatch(
        (1, 1),
        (54 - 1),
        17.5,
        boxstyle="round,pad=0,rounding_size=1.5",
        facecolor="none",
        edgecolor=frame_color,
        linewidth=1.0,
        linestyle=(0, (4, 3)) if not fusion else "-",
        zorder=1,
    )
    frame.set_gid("vad_fusion")
    ax.add_patch(frame)
    ax.text(
        2.2,
        17.3,
        _on_off("VAD fusion", fusion),
        ha="left",
        va="top",
        fontsize=8,
        weight="bold",
        color="black" if fusion else "0.5",
    )
    ax.text(
        53,
        17.3,
        "explanation positions only",
        ha="right",
        va="top",
        fontsize=6.5,
        style="italic",
        color="0.25" if fusion else "0.55",
    )


def _draw_vad_fusion(ax: Axes, cfg: SEVLMConfig) -> None:
    """Bottom left: token VAD lookup -> VAD encoder -> fuse, greyed when ``cfg.vad_fusion`` is off."""
    fusion, venc, d = cfg.vad_fusion, cfg.vad_encoder, cfg.decoder.n_embd
    _draw_fusion_frame(ax, fusion)
    _arch_box(
        ax,
        (3, 2.5),
        (14, 10.5),
        "token VAD lookup",
        "[vocab, 3] table\nfrom the lexicon",
        kind="vad",
        on=fusion,
        fontsize=7,
    )
    causal = "causal" if venc.causal else "NON-causal (sees the future)"
    _arch_box(
        ax,
        (20.5, 2.5),
        (15, 10.5),
        "VAD encoder",
        f"{causal}\nd = {venc.d_model}, {_plural(venc.n_layers, 'layer')}\n{_plural(venc.n_heads, 'head')}, FFN {venc.ffn}",
        kind="vad",
        on=fusion,
        fontsize=7,
    )
    _arch_box(
        ax,
        (39, 2.5),
        (14, 10.5),
        "fuse",
        f"concat word emb.\n+ Linear({d}+3 -> {d})",
        kind="vad",
        on=fusion,
        fontsize=7,
    )
    _arch_arrow(ax, (7.5, 22), (7.5, 13), on=fusion)
    _arch_arrow(ax, (17, 7.75), (20.5, 7.75), on=fusion)
    _arch_arrow(ax, (35.5, 7.75), (39, 7.75), on=fusion)
    _arch_arrow(ax, (46, 13), (46, 28), on=fusion)


def _draw_heads(ax: Axes, cfg: SEVLMConfig) -> None:
    """Right column: the LM head, the VAD head and the contrastive head, each with its loss."""
    d = cfg.decoder.n_embd
    _arch_arrow(ax, (71, 31), (75, 45.5))
    _arch_box(
        ax,
        (75, 41),
        (24, 9),
        "LM head",
        "next-token logits\nloss: cross-entropy (xe)",
        kind="head",
        gid="lm_head",
    )
    _arch_arrow(ax, (71, 27), (75, 32.5), on=cfg.vad_head)
    _arch_box(
        ax,
        (75, 28),
        (24, 10),
        _on_off("VAD head", cfg.vad_head),
        f"Linear({d} -> 3)\nloss: masked MSE on the\nnext token's VAD (vad)",
        kind="head",
        on=cfg.vad_head,
        gid="vad_head",
    )
    _arch_arrow(ax, (71, 20), (75, 18), on=cfg.contrastive)
    _arch_box(
        ax,
        (75, 8),
        (24, 18),
        _on_off("contrastive head", cfg.contrastive),
        "means of image / emotion /\nexplanation embeddings\n-> 4-layer MLP scorer\n"
        "loss: InfoNCE (contrastive) vs\n"
        "neg 1: same artwork, the other\nemotion's explanation\n"
        "neg 2: another artwork's\nexplanation (derangement)",
        kind="head",
        on=cfg.contrastive,
        gid="contrastive",
    )


def _draw_total_loss(ax: Axes, cfg: SEVLMConfig) -> None:
    """The total loss of ``cfg`` and the legend line under it."""
    total = "loss = xe"
    if cfg.vad_head:
        total += f" + {cfg.vad_loss_weight:g}·vad"
    if cfg.contrastive:
        total += f" + {cfg.contrastive_loss_weight:g}·contrastive"
    ax.text(87, 5.5, total, ha="center", va="center", fontsize=7.5, weight="bold", gid="total_loss")
    ax.text(
        87,
        2.2,
        "grey, dashed = switched off in this config",
        ha="center",
        va="center",
        fontsize=6.5,
        color="0.45",
    )


def plot_architecture(config: SEVLMConfig | None = None, ax: Axes | None = None) -> Figure:
    """A block diagram of SEVLM, with the sizes of ``config`` (default: the full profile, all additions on).

    Image path: artwork -> CLIP vision tower -> patch tokens -> projection -> the decoder's cross-attention.
    Text path: tokens -> token + segment embeddings -> VAD fusion -> GPT-2 decoder. Heads on the decoder's last
    hidden states: LM head (cross-entropy), VAD head (masked MSE), contrastive head (InfoNCE against two kinds
    of negatives). Additions switched off in ``config`` (``vad_fusion``, ``vad_head``, ``contrastive``) are
    grey, dashed and labelled "(off)". Widths and layer counts are read from the config; nothing is built
    or downloaded. ``ax``: an Axes to draw into (its figure should be about 10 x 5.5 inches); returns the Figure.
    """

    cfg = config if config is not None else full_config(vad_fusion=True, vad_head=True, contrastive=True)
    if ax is None:
        fig = plt.figure(figsize=(10, 5.5))
        ax = fig.add_axes((0, 0, 1, 1))
    fig = ax.figure
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 55)
    ax.set_axis_off()

    vision_name, decoder_name = _component_names(cfg)
    title = f"SEVLM ({cfg.variant}): {vision_name} + {decoder_name.removeprefix('GPT-2: ')}"
    ax.text(50, 53.5, title, ha="center", va="top", fontsize=10, weight="bold")
    _draw_image_path(ax, cfg, vision_name)
    _draw_text_path(ax, cfg, decoder_name)
    _draw_vad_fusion(ax, cfg)
    _draw_heads(ax, cfg)
    _draw_total_loss(ax, cfg)
    return fig


def save_architecture_figure(path: Path, config: SEVLMConfig | None = None) -> Path:
    """Write :func:`plot_architecture` of ``config`` (default: full profile, all on) as an SVG to ``path``.

    Byte-for-byte repeatable on the same matplotlib: fixed SVG ids (``svg.hashsalt``) and no date. The
    figure is built without pyplot, so no window opens and nothing stays registered. Returns ``path``.
    """

    path = Path(path)
    if path.suffix.lower() != ".svg":
        raise ValueError(f"save_architecture_figure: {path} should end in .svg")
    with plt.rc_context({"svg.hashsalt": "sevlm", "svg.fonttype": "path"}):
        fig = MplFigure(figsize=(10, 5.5))
        plot_architecture(config, ax=fig.add_axes((0, 0, 1, 1)))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="svg", metadata={"Date": None})
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sevlm_lib.viz architecture PATH``: write the architecture diagram (SVG) to ``PATH``."""

    parser = argparse.ArgumentParser(
        prog="python -m sevlm_lib.viz", description="Write the course's figures."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    arch = sub.add_parser(
        "architecture", help="the SEVLM block diagram of the full profile, all additions on"
    )
    arch.add_argument("path", type=Path, help="the .svg file to write, e.g. docs/architecture.svg")
    args = parser.parse_args(argv)
    if args.path.suffix.lower() != ".svg":
        parser.error(f"{args.path}: expected a path ending in .svg")
    print(save_architecture_figure(args.path))
    return 0
