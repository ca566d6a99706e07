"""Figures of effective receptive fields, in the style of the large-kernel papers.

:func:`plot_erf` draws one ERF as RepLKNet does (the ``log10(x + 1)`` map rescaled to
[0, 1], yellow to green), with a crosshair on the centre and the unit's theoretical
receptive field drawn as a dashed box (the field of its paths through no global
operation, where one such as squeeze-excitation reads the whole input);
:func:`plot_erfs` draws several side by side on one colour scale, with one table of
their metrics beneath.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..erf_metrics import log_normalise
from ..errors import RFMapError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

    from ..erf import ERFResult

__all__ = ["ERFScale", "erf_colormap", "plot_erf", "plot_erfs"]

#: Colours of the theoretical-RF box and the centre crosshair.
BOX_COLOUR = "#1f3b99"
CROSS_COLOUR = "#b2182b"


class ERFScale(str, enum.Enum):
    """How an ERF map is scaled for display.

    ``replknet``: ``log10(x + 1) / max`` (RepLKNet's figures; depends on the gradient's
    units); ``log``: ``log10(x / max)`` over ``decades`` decades (scale-free);
    ``linear``: ``x / max``.
    """

    REPLKNET = "replknet"
    LOG = "log"
    LINEAR = "linear"


def erf_colormap(name: str | None = None) -> Colormap:
    """The colormap: by default the upper half of ``RdYlGn`` (RepLKNet's seaborn heatmap
    centred at zero shows exactly that half: light yellow to dark green)."""
    import matplotlib as mpl
    from matplotlib.colors import ListedColormap

    if name is not None and name != "replknet":
        try:
            return mpl.colormaps[name]
        except KeyError:
            raise RFMapError(f"unknown matplotlib colormap {name!r}") from None
    base = mpl.colormaps["RdYlGn"]
    return ListedColormap(base(np.linspace(0.5, 1.0, 256)), name="replknet")


def _scaled(values: np.ndarray, scale: ERFScale | str, decades: float) -> np.ndarray:
    try:
        chosen = ERFScale(scale)
    except ValueError:
        choices = ", ".join(s.value for s in ERFScale)
        raise RFMapError(f"scale must be one of {choices}, got {scale!r}") from None
    data = np.abs(np.asarray(values, dtype=np.float64))
    top = float(data.max()) if data.size else 0.0
    if chosen is ERFScale.REPLKNET:
        return log_normalise(data)
    if top <= 0:
        return np.zeros_like(data)
    if chosen is ERFScale.LINEAR:
        return data / top
    if not decades > 0:
        raise RFMapError(f"decades must be positive, got {decades!r}")
    with np.errstate(divide="ignore"):
        logged = np.log10(data / top)
    return np.clip(1 + logged / decades, 0, 1)


def _title(result: ERFResult) -> str:
    where = result.layer or "output"
    first = f"{result.name} · {where}"
    ratios = {round(a.threshold, 4): a.ratio for a in result.metrics.area_ratios}
    parts = [
        f"{t:.0%}: {ratios[t]:.3f}" for t in (0.2, 0.99) if t in ratios and ratios[t] is not None
    ]
    second = f"n={result.count}" + ("; area ratio " + ", ".join(parts) if parts else "")
    return f"{first}\n{second}"


def plot_erf(
    result: ERFResult,
    ax: Axes | None = None,
    *,
    scale: ERFScale | str = ERFScale.REPLKNET,
    decades: float = 4.0,
    cmap: str | None = None,
    box: bool = True,
    crosshair: bool = True,
    colorbar: bool = True,
    title: str | None = None,
    pyplot: bool = False,
) -> Axes:
    """Draw one ERF and return the axes.

    Parameters
    ----------
    result
        An :class:`~rfmap.erf.ERFResult`.
    ax
        Axes to draw on (default: a new 4.6x4.1 inch figure).
    scale
        ``"replknet"`` (default), ``"log"`` or ``"linear"`` (see :class:`ERFScale`).
    decades
        Decades shown by the ``log`` scale.
    cmap
        A matplotlib colormap name; default RepLKNet's yellow-green.
    box, crosshair
        Draw the theoretical receptive field (when known) and the centre lines.
    colorbar, title
        A colour bar; the title (default: model, layer, count and two area ratios).
    pyplot
        Without ``ax``, make the figure with pyplot (a notebook shows it); see
        :func:`rfmap.plot.new_figure`.
    """
    from .maps import new_figure

    if ax is None:
        fig = new_figure((4.6, 4.1), 150, pyplot=pyplot)
        ax = fig.add_subplot()
    values = _scaled(result.map, scale, decades)
    colours = erf_colormap(cmap)
    centre = result.metrics.centre
    if values.ndim == 1:
        _plot_1d(ax, values, result, box, crosshair, centre)
    else:
        shown = values if values.ndim == 2 else values[centre[0]]
        image = ax.imshow(shown, cmap=colours, vmin=0, vmax=1, interpolation="nearest")
        if box and result.theoretical is not None:
            _draw_box(ax, result.theoretical.field_box[-2:])
        if crosshair:
            ax.axhline(centre[-2], color=CROSS_COLOUR, lw=0.6, alpha=0.8)
            ax.axvline(centre[-1], color=CROSS_COLOUR, lw=0.6, alpha=0.8)
        ax.set_xlim(-0.5, shown.shape[1] - 0.5)
        ax.set_ylim(shown.shape[0] - 0.5, -0.5)
        ax.tick_params(labelsize="x-small")
        if colorbar:
            bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03, shrink=0.85)
            bar.ax.tick_params(labelsize="x-small")
            bar.set_label(_scale_label(scale), fontsize="x-small")
        if values.ndim == 3:
            ax.set_xlabel(f"slice axis 0 = {centre[0]}", fontsize="x-small")
    ax.set_title(_title(result) if title is None else title, fontsize="small")
    return ax


def _scale_label(scale: ERFScale | str) -> str:
    return {
        ERFScale.REPLKNET: "log10(x+1), rescaled",
        ERFScale.LOG: "log10(x / max), rescaled",
        ERFScale.LINEAR: "x / max",
    }[ERFScale(scale)]


def _draw_box(ax: Axes, box: Sequence[tuple[int, int]]) -> None:
    from matplotlib.patches import Rectangle

    (r0, r1), (c0, c1) = box
    ax.add_patch(
        Rectangle(
            (c0 - 0.5, r0 - 0.5),
            c1 - c0,
            r1 - r0,
            fill=False,
            ec=BOX_COLOUR,
            lw=1.0,
            ls="--",
            label="theoretical RF",
        )
    )


def _plot_1d(
    ax: Axes,
    values: np.ndarray,
    result: ERFResult,
    box: bool,
    crosshair: bool,
    centre: tuple[int, ...],
) -> None:
    x = np.arange(len(values))
    ax.fill_between(x, values, color="#1a9850", alpha=0.35, lw=0)
    ax.plot(x, values, color="#006837", lw=1.0)
    if box and result.theoretical is not None:
        start, stop = result.theoretical.field_box[0]
        ax.axvspan(start - 0.5, stop - 0.5, color=BOX_COLOUR, alpha=0.08, label="theoretical RF")
    if crosshair:
        ax.axvline(centre[0], color=CROSS_COLOUR, lw=0.6)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("input position", fontsize="small")
    ax.tick_params(labelsize="x-small")


def plot_erfs(
    results: Sequence[ERFResult],
    *,
    scale: ERFScale | str = ERFScale.REPLKNET,
    decades: float = 4.0,
    cmap: str | None = None,
    table: bool = True,
    columns: int = 4,
    panel_size: float = 3.2,
    dpi: int = 150,
    pyplot: bool = False,
) -> Figure:
    """Several ERFs side by side on one colour scale, with their metrics in one table.

    Returns the figure (at most ``columns`` panels per row), managed by pyplot if
    ``pyplot`` (see :func:`rfmap.plot.new_figure`).
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from .maps import new_figure

    results = list(results)
    if not results:
        raise RFMapError("plot_erfs needs at least one result")
    if not 1 <= columns <= 16:
        raise RFMapError(f"columns must be between 1 and 16, got {columns!r}")
    cols = min(columns, len(results))
    rows = -(-len(results) // cols)
    table_height = 0.35 + 0.22 * len(results) if table else 0.0
    size = (panel_size * cols + 0.9, panel_size * rows + 0.4 + table_height)
    fig = new_figure(size, dpi, pyplot=pyplot)
    heights = [panel_size] * rows + ([table_height] if table else [])
    grid = fig.add_gridspec(len(heights), cols, height_ratios=heights)
    axes = []
    for i, result in enumerate(results):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        plot_erf(result, ax, scale=scale, decades=decades, cmap=cmap, colorbar=False)
        axes.append(ax)
    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=erf_colormap(cmap))
    bar = fig.colorbar(mappable, ax=axes, fraction=0.03, pad=0.02, shrink=0.9)
    bar.ax.tick_params(labelsize="x-small")
    bar.set_label(_scale_label(scale), fontsize="x-small")
    if table:
        from ..report import comparison_table

        header, body = comparison_table(results)
        tab_ax = fig.add_subplot(grid[rows, :])
        tab_ax.axis("off")
        drawn = tab_ax.table(cellText=body, colLabels=header, loc="center", cellLoc="center")
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(7)
        drawn.auto_set_column_width(list(range(len(header))))
    return fig
