"""Drawing: the paper's Figure 2/3 layout and the training curves, as PNG bytes.

matplotlib with the Agg canvas, no pyplot state. The figure's geometry is exact in pixels
(`FigureLayout`): each image pixel of a panel is `magnification` screen pixels (nearest),
so a test can find every panel in the PNG by its box.
"""

from __future__ import annotations

import dataclasses
import io
import textwrap
from collections.abc import Sequence

import numpy as np

from reproduce.cli import MODEL_LABELS, MODELS
from reproduce.specs import PANEL_LABELS, PANEL_ROWS, Scale

DPI = 128  # a power of 2: sizes in pixels / DPI are exact floats, so the PNG is exactly W x H
LEFT_PX = 44  # row labels
GAP_PX = 24  # between panels
TOP_TITLE_PX = 30
TOP_SCALE_PX = 24
HEADER_PX = 30  # column titles
CAPTION_LINE_PX = 20
CAPTION_CHAR_PX = 7.6  # mean width of a 14 px DejaVu Sans character, for wrapping
SCALE_LINE_PX = 20  # each further line of a wrapped scale line
SCALE_CHAR_PX = 10.4  # mean width of a 16 px bold DejaVu Sans character (generous)
MARGIN_PX = 12
CURVES_SCALE_CHARS = 170  # the curves' 1200 px wide title, 9 pt at 100 dpi


def _points(pixels: float) -> float:
    """Font size in points that renders `pixels` tall at DPI."""
    return pixels * 72.0 / DPI


@dataclasses.dataclass(frozen=True)
class FigureLayout:
    """Pixel geometry of a figure of 3 columns x len(PANEL_ROWS) rows of panels."""

    panel_width: int  # displayed, i.e. grid width * magnification
    row_heights: tuple[int, ...]
    caption_lines: tuple[str, ...]
    scale_lines: tuple[str, ...] = ("",)  # the scale line, wrapped to the figure's width

    @property
    def width(self) -> int:
        return LEFT_PX + len(MODELS) * self.panel_width + (len(MODELS) - 1) * GAP_PX + MARGIN_PX

    @property
    def panels_top(self) -> int:
        scale = TOP_SCALE_PX + (len(self.scale_lines) - 1) * SCALE_LINE_PX
        return MARGIN_PX + TOP_TITLE_PX + scale + HEADER_PX

    @property
    def caption_top(self) -> int:
        rows = len(self.row_heights)
        return self.panels_top + sum(self.row_heights) + (rows - 1) * GAP_PX + MARGIN_PX

    @property
    def height(self) -> int:
        return self.caption_top + len(self.caption_lines) * CAPTION_LINE_PX + MARGIN_PX

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the PNG in pixels."""
        return self.width, self.height

    def panel_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, width, height) in pixels from the figure's top-left corner."""
        left = LEFT_PX + col * (self.panel_width + GAP_PX)
        top = self.panels_top + sum(self.row_heights[:row]) + row * GAP_PX
        return left, top, self.panel_width, self.row_heights[row]


def figure_layout(
    panels: dict[str, dict[str, np.ndarray]],
    magnification: int,
    caption: Sequence[str],
    scale_text: str = "",
) -> FigureLayout:
    """The layout of `draw_figure(panels, ...)`; the scale line and the caption lines are
    wrapped to the width (a MIXED BUNDLES scale line can be long)."""
    first = panels[MODELS[0]]
    panel_width = first[PANEL_ROWS[0]].shape[1] * magnification
    row_heights = tuple(first[row].shape[0] * magnification for row in PANEL_ROWS)
    probe = FigureLayout(panel_width, row_heights, ())
    chars = max(40, int((probe.width - 2 * MARGIN_PX) / CAPTION_CHAR_PX))
    lines = tuple(wrapped for line in caption for wrapped in textwrap.wrap(line, chars) or [""])
    scale_chars = max(40, int((probe.width - 2 * MARGIN_PX) / SCALE_CHAR_PX))
    scale_lines = tuple(textwrap.wrap(scale_text, scale_chars)) or ("",)
    return FigureLayout(panel_width, row_heights, lines, scale_lines)


def render_figure(
    panels: dict[str, dict[str, np.ndarray]],
    title: str,
    scale: Scale,
    caption: Sequence[str],
    magnification: int,
    column_labels: dict[str, str] | None = None,
) -> tuple[bytes, FigureLayout]:
    """The paper's Figure 2/3 layout as PNG bytes (and its layout): columns VAE | WAE-MMD | WAE-GAN, rows
    test interpolations / test reconstructions / random samples; title, scale line (red when
    reduced) and caption. Each image pixel is `magnification` screen pixels (nearest).
    `column_labels`: the column titles (default the model names)."""
    from matplotlib.figure import Figure

    _check_panel_shapes(panels)
    layout = figure_layout(panels, magnification, caption, scale.text)
    width, height = layout.size
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")

    def frac(left: float, top: float, w: float = 0.0, h: float = 0.0):
        return left / width, 1.0 - (top + h) / height, w / width, h / height

    y = MARGIN_PX
    fig.text(*frac(width / 2, y + 22)[:2], title, ha="center", fontsize=_points(22), weight="bold")
    y += TOP_TITLE_PX
    for i, line in enumerate(layout.scale_lines):
        fig.text(
            *frac(width / 2, y + 17 + i * SCALE_LINE_PX)[:2],
            line,
            ha="center",
            fontsize=_points(16),
            color="#b00000" if scale.reduced else "black",
            weight="bold" if scale.reduced else "normal",
        )
    for col, name in enumerate(MODELS):
        left, top, w, _ = layout.panel_box(0, col)
        fig.text(
            *frac(left + w / 2, top - 8)[:2],
            (column_labels or MODEL_LABELS)[name],
            ha="center",
            fontsize=_points(20),
            weight="bold",
        )
        for row, key in enumerate(PANEL_ROWS):
            box = layout.panel_box(row, col)
            ax = fig.add_axes(frac(*box))
            _show_grid(ax, panels[name][key])
    for row, key in enumerate(PANEL_ROWS):
        _, top, _, h = layout.panel_box(row, 0)
        fig.text(
            *frac(LEFT_PX / 2, top + h / 2)[:2],
            PANEL_LABELS[key],
            ha="center",
            va="center",
            rotation=90,
            fontsize=_points(16),
        )
    for i, line in enumerate(layout.caption_lines):
        top = layout.caption_top + (i + 1) * CAPTION_LINE_PX - 5
        fig.text(*frac(MARGIN_PX, top)[:2], line, ha="left", fontsize=_points(14))
    return png_bytes(fig, DPI), layout


def _check_panel_shapes(panels: dict[str, dict[str, np.ndarray]]) -> None:
    missing = [m for m in MODELS if m not in panels]
    if missing:
        raise ValueError(f"panels missing for {missing}")
    for key in PANEL_ROWS:
        shapes = {panels[m][key].shape for m in MODELS}
        if len(shapes) != 1:
            raise ValueError(f"{key} panels differ in shape across models: {shapes}")
    widths = {panels[MODELS[0]][key].shape[1] for key in PANEL_ROWS}
    if len(widths) != 1:
        raise ValueError(f"panels of one column differ in width: {widths}")


def _show_grid(ax, grid: np.ndarray) -> None:
    """Show a uint8 grid pixel for pixel (grey repeated to RGB: no colormap rounding)."""
    if grid.ndim == 3 and grid.shape[-1] == 1:
        grid = np.repeat(grid, 3, axis=-1)
    ax.imshow(grid, interpolation="nearest", aspect="auto")
    ax.set_axis_off()


def _plot_history(ax, history: list[dict[str, float]]) -> None:
    """c ("reconstruction") and the objective ("loss") per epoch; train solid, test dashed
    (wae_tf.trainer validates on the first min(1000, N) test images). Log y when positive."""
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    plotted = []
    for key, color in (("reconstruction", "tab:blue"), ("loss", "tab:orange")):
        for prefix, style, split in (("", "-", "train"), ("val_", "--", "test")):
            values = [row.get(prefix + key, np.nan) for row in history]
            if epochs and not np.all(np.isnan(values)):
                ax.plot(
                    epochs, values, style, color=color, marker="o", ms=3, label=f"{split} {key}"
                )
                plotted += values
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if not plotted:
        ax.text(0.5, 0.5, "no history.csv", ha="center", transform=ax.transAxes)
        return
    if np.nanmin(plotted) > 0:
        ax.set_yscale("log")
    ax.legend(fontsize=7, handlelength=3)


def png_bytes(fig, dpi: int) -> bytes:
    """Render a matplotlib Figure (Agg) to PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, facecolor="white")
    return buffer.getvalue()


def render_training_curves(
    histories: dict[str, list[dict[str, float]]], title: str, scale: Scale
) -> bytes:
    """One small panel per model (model -> its history.csv rows): the reconstruction cost c
    and the objective per epoch, training (solid) and validation (dashed)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.0, 3.8), dpi=100, facecolor="white")
    scale_lines = textwrap.wrap(scale.text, CURVES_SCALE_CHARS)
    fig.suptitle(
        "\n".join([title, *scale_lines]),
        fontsize=9,
        color="#b00000" if scale.reduced else "black",
    )
    axes = fig.subplots(1, len(histories))
    for ax, (name, history) in zip(np.atleast_1d(axes), histories.items(), strict=True):
        _plot_history(ax, history)
        ax.set_title(MODEL_LABELS[name], fontsize=10)
    top = 0.78 - 0.04 * max(0, len(scale_lines) - 1)
    fig.subplots_adjust(top=top, bottom=0.14, left=0.05, right=0.98, wspace=0.25)
    return png_bytes(fig, 100)
