"""Figures of gridding diagnoses: schedules side by side, a report's field, TCN maps.

matplotlib is imported inside the functions; figures are standalone
:class:`~matplotlib.figure.Figure` objects (see :func:`rfmap.plot.maps.new_figure`).
"""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

import numpy as np

from ..paths import PathMap, stack_path_map
from ..report import comparison_rows
from ..specs import ConvLayer
from .maps import SEED_DPI, Scale, _resolve_scale, figure_png, new_figure, plot_map

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..design import DesignResult
    from ..gridding import Comparison, GriddingReport
    from ..tcn import TCNResult

__all__ = [
    "comparison_rows",
    "design_html",
    "plot_compare",
    "plot_report",
    "plot_tcn",
    "report_html",
]


def _axis_layers(layers: tuple[ConvLayer, ...], axis: int) -> tuple[ConvLayer, ...]:
    """The stack restricted to one axis, as a 1D stack."""
    out = []
    for layer in layers:
        pad = layer.padding if isinstance(layer.padding, str) else (layer.padding[axis],)
        out.append(
            ConvLayer(
                (layer.kernel_size[axis],), (layer.dilation[axis],), (layer.stride[axis],), pad
            )
        )
    return tuple(out)


def _distinct_axes(layers: tuple[ConvLayer, ...]) -> list[int]:
    seen: list[tuple[ConvLayer, ...]] = []
    axes = []
    for a in range(layers[0].ndim):
        one = _axis_layers(layers, a)
        if one not in seen:
            seen.append(one)
            axes.append(a)
    return axes


def plot_report(
    report: GriddingReport,
    ax: Axes | None = None,
    *,
    scale: Scale | str = Scale.AUTO,
    pyplot: bool = False,
) -> Axes:
    """Draw the exact field of a checked schedule along each distinct axis, holes marked.

    With ``ax`` only the first axis is drawn on it; otherwise a figure (managed by pyplot
    if ``pyplot``) with one panel per axis whose schedule differs from the others'.
    Returns the (first) axes.
    """
    axes_to_draw = _distinct_axes(report.layers)
    if ax is None:
        fig = new_figure((6.4, 2.4 * len(axes_to_draw) + 0.3), pyplot=pyplot)
        panels = [fig.add_subplot(len(axes_to_draw), 1, i + 1) for i in range(len(axes_to_draw))]
    else:
        panels, axes_to_draw = [ax], axes_to_draw[:1]
    for panel, axis in zip(panels, axes_to_draw, strict=True):
        pmap = stack_path_map(_axis_layers(report.layers, axis), None)
        label = "" if len(report.receptive_field) == 1 else f" (axis {axis})"
        plot_map(pmap, panel, scale=scale, title=f"{report.title}{label}: {_verdict(report, axis)}")
        panel.set_xlabel("offset from the output unit")
        if panel.get_yscale() == "linear":
            from matplotlib.ticker import MaxNLocator

            panel.yaxis.set_major_locator(MaxNLocator(integer=True))
            panel.set_ylim(0, float(pmap.max) * 1.3)  # room for the legend
    return panels[0]


def _verdict(report: GriddingReport, axis: int) -> str:
    """The verdict shown over one axis's panel: that axis's holes, and the cells in all."""
    if report.ndim == 1:
        return "gridding-free" if report.gridding_free else f"GRIDDING ({report.holes} holes)"
    if report.gaps[axis] is None:
        return "no holes along this axis"
    per_axis = report.holes_per_axis
    along = "" if per_axis is None else f"{per_axis[axis]} holes along this axis, "
    return f"GRIDDING ({along}{report.holes} hole cells)"


def plot_compare(
    comparison: Comparison,
    *,
    shared_scale: bool = True,
    scale: Scale | str = Scale.AUTO,
    cmap: str = "Blues",
    annotate: bool | None = None,
    figsize: tuple[float, float] | None = None,
    dpi: int = SEED_DPI,
    table: bool = True,
    pyplot: bool = False,
) -> Figure:
    """The maps of several schedules side by side, with their metrics in a table below.

    ``shared_scale`` puts every map on one colour scale (the largest count of all), so
    the maps can be compared cell for cell; otherwise each map has its own.  The figure
    is managed by pyplot if ``pyplot`` (see :func:`rfmap.plot.new_figure`).
    """
    maps = comparison.maps
    n = len(maps)
    rows = comparison_rows(comparison) if table else []
    map_height = 3.0 if maps[0].ndim != 1 else 2.2
    table_height = 0.24 * (len(rows) + 1) if table else 0.0
    width = max(3.0 * n, 5.0) + 1.2
    fig = new_figure(figsize or (width, map_height + table_height + 0.3), dpi, pyplot=pyplot)
    grid = fig.add_gridspec(
        2 if table else 1, n, height_ratios=[map_height, table_height] if table else None
    )
    # 3D maps are shown by their slice through the peak, side by side.
    shown = [_peak_slice(m) if m.ndim == 3 else m for m in maps]
    titles = [
        name if m.ndim != 3 else f"{name}, axis 0 = {_peak_index(m) + m.origin[0]}"
        for name, m in zip(comparison.names, maps, strict=True)
    ]
    values = [np.asarray(m.counts, dtype=np.float64) for m in shown]
    top = max(float(v.max()) for v in values)
    chosen = _resolve_scale(scale, np.concatenate([v.ravel() for v in values]))
    panels = []
    for i, pmap in enumerate(shown):
        panel = fig.add_subplot(grid[0, i])
        plot_map(
            pmap,
            panel,
            scale=chosen,
            annotate=annotate,
            cmap=cmap,
            colorbar=not shared_scale or i == n - 1,
            vmax=top if shared_scale else None,
            title=titles[i],
        )
        panels.append(panel)
    if shared_scale and maps[0].ndim == 1:
        for panel in panels:
            panel.set_ylim(top=top * (1.05 if chosen is Scale.LINEAR else 2.0))
    if table:
        table_ax = fig.add_subplot(grid[1, :])
        table_ax.axis("off")
        cells = [cells for _, cells in rows]
        labels = [label for label, _ in rows]
        drawn = table_ax.table(
            cellText=cells,
            rowLabels=labels,
            colLabels=comparison.names,
            loc="center",
            cellLoc="center",
        )
        drawn.auto_set_font_size(False)
        drawn.set_fontsize(8)
        for (row, col), cell in drawn.get_celld().items():
            if row == 0 or col < 0:
                continue
            text = cells[row - 1][col]
            if text == "NO" or "(wrong)" in text:
                cell.set_text_props(color="#b2182b", fontweight="bold")
    scale_note = "shared colour scale" if shared_scale else "own colour scale per map"
    size = " x ".join(map(str, comparison.size))
    fig.suptitle(f"{size} input, {scale_note}", fontsize="small")
    return fig


def _peak_index(pmap: PathMap) -> int:
    """Index, along axis 0, of the slice of a 3D map that holds its largest count."""
    return int(np.argmax(np.asarray(pmap.factors[0], dtype=np.float64)))


def _peak_slice(pmap: PathMap) -> PathMap:
    """The 2D slice of a 3D map through its peak (a map in its own right)."""
    u0 = _peak_index(pmap)
    factors = (pmap.factors[1] * pmap.factors[0][u0], pmap.factors[2])
    unit = None if pmap.unit is None else pmap.unit[1:]
    size = None if pmap.size is None else pmap.size[1:]
    return PathMap(pmap.layers, size, unit, factors, pmap.origin[1:], pmap.counts[u0])


def plot_tcn(
    result: TCNResult,
    ax: Axes | None = None,
    *,
    scale: Scale | str = Scale.AUTO,
    pyplot: bool = False,
) -> Axes:
    """Draw a TCN preset's exact path counts against the time offset, with its formulas.

    Without ``ax`` a new figure is made, managed by pyplot if ``pyplot``.
    """
    if ax is None:
        fig = new_figure((7.0, 3.4), pyplot=pyplot)
        ax = fig.add_subplot()
    counts = np.asarray(result.counts, dtype=np.float64)
    chosen = _resolve_scale(scale, counts)
    x = np.arange(len(counts)) + result.origin
    if len(counts) <= 200:
        ax.bar(x, counts, width=0.85, color="#2b7bba", edgecolor="none")
    else:
        ax.fill_between(x, counts, step="mid", color="#2b7bba", linewidth=0)
    holes = np.array(result.holes)
    low = float(counts[counts > 0].min())
    if len(holes):
        base = low / 2 if chosen is Scale.LOG else 0.0
        ax.plot(holes, np.full(len(holes), base), "x", color="#d62728", ms=4, label="holes")
        ax.legend(loc="upper right", fontsize="small", frameon=False)
    top = float(counts.max())
    if chosen is Scale.LOG:
        ax.set_yscale("log")
        ax.set_ylim(low / 3, top * 40)
    else:
        ax.set_ylim(0, top * 1.4)
    ax.set_xlabel("time offset (0 = current step)")
    ax.set_ylabel("paths")
    ax.set_title(f"{result.preset.value}: receptive field {result.receptive_field} steps")
    ax.margins(x=0.01)
    lines = [
        ("\u2713 " if f.correct else "\u2717 ") + f"{f.expression} = {f.value}"
        for f in result.formulas
    ]
    ax.text(
        0.01,
        0.97,
        "\n".join(lines),
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize="x-small",
        family="monospace",
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
    )
    return ax


def report_html(text: str, fig: Figure | None) -> str:
    """HTML for a notebook: the text summary and, when given, the figure inline."""
    parts = [f"<pre>{html.escape(text)}</pre>"]
    if fig is not None:
        data = base64.b64encode(figure_png(fig)).decode("ascii")
        parts.append(f'<img src="data:image/png;base64,{data}"/>')
    return "\n".join(parts)


def design_html(result: DesignResult) -> str:
    """HTML table of a design result's schedules."""
    head = (
        f"<p>Best gridding-free schedules: {result.layers} layers, kernel {result.kernel}, "
        f"objective {html.escape(result.objective.value)}"
        + ("" if result.max_dilation is None else f", max dilation {result.max_dilation}")
        + ("" if result.target_rf is None else f", receptive field &ge; {result.target_rf}")
        + f" (optimal; {result.nodes:,} search nodes)</p>"
    )
    rows = []
    for rank, c in enumerate(result.candidates, 1):
        ptm = "n/a" if c.peak_to_mean is None else f"{float(c.peak_to_mean):.4g}"
        rows.append(
            f"<tr><td>{rank}</td><td>{html.escape(', '.join(map(str, c.dilations)))}</td>"
            f"<td>{c.receptive_field}</td><td>{ptm}</td><td>{c.erf_std:.4g}</td></tr>"
        )
    return (
        head + "<table><tr><th>#</th><th>dilations</th><th>receptive field</th>"
        "<th>peak / mean</th><th>ERF std</th></tr>" + "".join(rows) + "</table>"
    )
