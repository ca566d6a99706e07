"""Figures of path-count maps: images, bar plots, 3D slices, animations, the gallery.

The shared helpers (:func:`new_figure`, :func:`figure_png`, :func:`save_figure`,
:func:`save_gif`) are used by the other figure modules too.
"""

from __future__ import annotations

import enum
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._io import atomic_path, atomic_write_bytes, check_output_path
from ..errors import RFMapError
from ..paths import PathMap, check_allocation, stack_path_map
from ..specs import ConvLayer, conv_stack

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DRAW_BYTES_PER_CELL",
    "FIBONACCI",
    "FIGURE_SUFFIXES",
    "GALLERY_SCHEDULES",
    "SEED_DPI",
    "SEED_FIGSIZE",
    "Scale",
    "animate_schedule",
    "animation_frames",
    "check_drawable",
    "default_figsize",
    "figure_png",
    "gallery",
    "new_figure",
    "plot_map",
    "save_figure",
    "save_gif",
]

#: The seed notebook's six schedules, drawn at 21x21.
GALLERY_SCHEDULES: tuple[tuple[int, ...], ...] = (
    (1, 1, 1),
    (2, 2, 2),
    (2, 2, 2, 2),
    (1, 2, 4),
    (1, 1, 2),
    (1, 1, 2, 3, 5),
)

#: The seed notebook's animation: the Fibonacci schedule, one layer more per frame.
FIBONACCI = (1, 1, 2, 3, 5)

#: Where the colour scale of non-zero counts starts in the colormap (0 = the background).
HOLE_CONTRAST = 0.15

#: Memory per drawn cell at the peak of drawing a map (float copies, masks, the image
#: matplotlib resamples); an animation keeps about 16 bytes per drawn cell more per frame.
#: A 3D map draws at most MAX_SLICES planes, and needs 24 bytes per cell for the rest.
DRAW_BYTES_PER_CELL = 96
FRAME_BYTES_PER_CELL = 16
MAX_SLICES = 12

SEED_FIGSIZE = (3.0, 3.0)
SEED_DPI = 150
FIGURE_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


class Scale(str, enum.Enum):
    """Colour scale of a map: ``auto`` picks ``log`` when counts span over 3 decades."""

    AUTO = "auto"
    LINEAR = "linear"
    LOG = "log"


def check_drawable(shape: Sequence[int], frames: int = 1) -> None:
    """Refuse, with :class:`~rfmap.errors.MapTooLargeError`, maps too large to draw.

    ``shape`` is the map's shape; ``frames`` the number of frames of an animation.
    Call it before computing the map: nothing is allocated.
    """
    shape = tuple(shape)
    cells = math.prod(shape)
    drawn = cells if len(shape) < 3 else min(shape[0], MAX_SLICES) * math.prod(shape[1:])
    need = drawn * (DRAW_BYTES_PER_CELL + FRAME_BYTES_PER_CELL * (frames - 1))
    if len(shape) == 3:
        need += cells * 24
    size = "x".join(map(str, shape))
    what = f"a figure of a {size} map" if frames == 1 else f"an animation of {frames} frames"
    what += "" if frames == 1 else f" of {size} maps"
    check_allocation(cells, -(-need // max(cells, 1)), None, what)


def new_figure(
    figsize: tuple[float, float] = SEED_FIGSIZE, dpi: int = SEED_DPI, *, pyplot: bool = False
) -> Figure:
    """A new figure laid out with constrained layout.

    By default a standalone Agg figure with no pyplot state (safe in scripts, tests and
    threads; nothing to close).  With ``pyplot=True`` the figure is made by
    ``matplotlib.pyplot.figure``, so a notebook's inline backend shows it and
    ``plt.show()`` does in a script, as pandas' ``.plot()`` does; that is what the
    ``.plot()`` methods of rfmap's results ask for.  Standalone if pyplot cannot load.
    """
    if pyplot:
        try:
            import matplotlib.pyplot as plt
        except Exception:  # pragma: no cover - a broken GUI backend: draw without pyplot
            pass
        else:
            return plt.figure(figsize=figsize, dpi=dpi, facecolor="white", layout="constrained")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _as_float(counts: np.ndarray) -> np.ndarray:
    if counts.dtype == object:
        biggest = max((int(v) for v in counts.flat), default=0)
        if biggest > 1e300:
            raise RFMapError(f"counts up to about 1e{len(str(biggest)) - 1} are too large to draw")
    return np.asarray(counts, dtype=np.float64)


def _resolve_scale(scale: Scale | str, values: np.ndarray) -> Scale:
    try:
        scale = Scale(scale)
    except ValueError:
        raise RFMapError(
            f"scale must be one of {', '.join(s.value for s in Scale)}, got {scale!r}"
        ) from None
    if scale is Scale.AUTO:
        nonzero = values[values > 0]
        if len(nonzero) and nonzero.max() / nonzero.min() > 1000:
            return Scale.LOG
        return Scale.LINEAR
    return scale


def _cell_origin(pmap: PathMap) -> tuple[int, int]:
    """Data coordinates of cell (0, 0): the origin for unbounded maps, else (0, 0)."""
    return (pmap.origin[-2], pmap.origin[-1]) if pmap.size is None else (0, 0)


def _fit_title(ax: Axes, title: str, whole_figure: bool = False) -> str:
    """Wrap a long title (e.g. a 20-layer schedule) to the width of its grid column."""
    import textwrap

    spec = ax.get_subplotspec()
    columns = spec.get_gridspec().ncols if spec is not None and not whole_figure else 1
    width_points = cast("Figure", ax.figure).get_figwidth() * 72 / columns
    chars = max(16, int(width_points / 6.6))  # 'large' titles take ~6.6 points per character
    return textwrap.fill(title, chars, break_long_words=False, break_on_hyphens=False)


def _title(pmap: PathMap) -> str:
    title = pmap.title
    kernel = pmap.kernel
    if kernel != 3:
        title += (
            f", kernel {kernel}"
            if isinstance(kernel, int)
            else ", kernels "
            + ",".join("x".join(map(str, k)) if isinstance(k, list) else str(k) for k in kernel)
        )
    return title


def _annotate(ax: Axes, pmap: PathMap, values: np.ndarray, norm: Any) -> None:
    """Write the exact counts into the cells, in black or white by background."""
    counts = pmap.counts
    rows, cols = counts.shape
    # Cell centres are at the indices, shifted by the origin when the map is unbounded.
    row0, col0 = _cell_origin(pmap)
    cell_points = cast("Figure", ax.figure).get_figwidth() * 72 * 0.8 / max(rows, cols)
    digits = max(len(str(int(v))) for v in counts.flat)
    fontsize = min(9.0, cell_points * 1.5 / max(digits, 2))
    for (i, j), v in np.ndenumerate(values):
        if v == 0:
            continue
        shade = float(norm(v))
        ax.text(
            j + col0,
            i + row0,
            str(counts[i, j]),
            ha="center",
            va="center",
            fontsize=fontsize,
            color="white" if shade > 0.6 else "black",
        )


def plot_map(
    pmap: PathMap,
    ax: Axes | None = None,
    *,
    scale: Scale | str = Scale.AUTO,
    annotate: bool | None = None,
    cmap: str = "Blues",
    colorbar: bool = True,
    title: str | None = None,
    vmax: float | None = None,
    pyplot: bool = False,
) -> Axes:
    """Draw a path-count map and return the axes it is on.

    1D maps are drawn as bars, 2D maps as an image (as in the seed notebook), 3D maps as
    a grid of 2D slices along the first axis.  ``annotate`` writes the exact counts into
    the cells (default: when the map is small enough to read them); ``vmax`` fixes the
    top of the colour scale (to compare maps); ``title`` defaults to the notebook's
    ``"Dilation rates: (1, 1, 1)"``.  Without ``ax`` a new figure is made, managed by
    pyplot if ``pyplot`` (see :func:`new_figure`).
    """
    check_drawable(pmap.counts.shape)
    if ax is None:
        fig = new_figure(default_figsize(pmap), pyplot=pyplot)
        ax = fig.add_subplot()
    values = _as_float(pmap.counts)
    chosen = _resolve_scale(scale, values)
    title = _title(pmap) if title is None else title
    if pmap.ndim == 1:
        _plot_1d(ax, pmap, values, chosen, title)
    elif pmap.ndim == 2:
        _plot_2d(ax, pmap, values, chosen, annotate, cmap, colorbar, title, vmax)
    else:
        ax = _plot_3d(ax, pmap, values, chosen, cmap, colorbar, title, vmax)
    return ax


def default_figsize(pmap: PathMap) -> tuple[float, float]:
    """A figure size that suits the map: the notebook's 3x3 in for 2D."""
    if pmap.ndim == 1:
        return (6.0, 2.6)
    if pmap.ndim == 3:
        n = len(_slice_indices(pmap))
        cols = min(n, 4)
        rows = math.ceil(n / cols)
        return (2.2 * cols + 0.8, 2.2 * rows + 0.5)
    return SEED_FIGSIZE


def _axis_positions(pmap: PathMap, axis: int) -> np.ndarray:
    return np.arange(pmap.counts.shape[axis]) + pmap.origin[axis]


def _plot_1d(ax: Axes, pmap: PathMap, values: np.ndarray, scale: Scale, title: str) -> None:
    x = _axis_positions(pmap, 0)
    ax.bar(x, values, width=0.85, color="#2b7bba", edgecolor="none")
    holes = np.flatnonzero(values == 0)
    nonzero = np.flatnonzero(values)
    if len(nonzero):
        inside = holes[(holes > nonzero[0]) & (holes < nonzero[-1])]
        if len(inside):
            ax.plot(x[inside], np.zeros(len(inside)), "x", color="#d62728", label="holes", ms=4)
            ax.legend(loc="upper right", fontsize="small", frameon=False)
    if scale is Scale.LOG:
        ax.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(fitting_locator())
    if scale is not Scale.LOG:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("input position" if pmap.size is not None else "offset")
    ax.set_ylabel("paths")
    ax.set_title(_fit_title(ax, title))
    ax.margins(x=0.01)
    if pmap.unit is not None:
        ax.axvline(pmap.unit[0], color="0.6", lw=0.6, ls=":", zorder=0)


def _norm(values: np.ndarray, scale: Scale, vmax: float | None) -> Any:
    from matplotlib.colors import LogNorm, Normalize

    top = float(values.max()) if vmax is None else float(vmax)
    if scale is Scale.LOG:
        return LogNorm(vmin=1, vmax=max(top, 1.0))
    return Normalize(vmin=0, vmax=max(top, 1.0))


def fitting_locator() -> Any:
    """Integer ticks for a horizontal axis, as many as its widest label leaves room for.

    matplotlib's default (up to 10 ticks) writes ``0 250 500 ... 2000`` into a 3-inch
    map and the labels run into each other; this locator measures the axis in label font
    sizes and spaces the ticks by the width of the widest label plus a gap.
    """
    from matplotlib.ticker import MaxNLocator

    class FittingLocator(MaxNLocator):
        def __call__(self) -> Any:
            axis: Any = self.axis
            axes = getattr(axis, "axes", None)
            if axes is not None:
                low, high = axis.get_view_interval()
                chars = max(len(str(round(v))) for v in (low, high))
                length = axes.get_window_extent().width * 72 / axes.figure.dpi
                # a digit is about 0.62 of the font size; labels keep 1.2 font sizes apart
                room = length / (_tick_label_points(axis) * (0.62 * chars + 1.2))
                self.set_params(nbins=max(1, int(room)))
            return super().__call__()

    return FittingLocator(integer=True)


def _tick_label_points(axis: Any) -> float:
    """The font size of an axis's tick labels, in points."""
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties

    params = axis.get_tick_params() if hasattr(axis, "get_tick_params") else {}
    key: Any = f"{axis.axis_name}tick.labelsize"
    size = params.get("labelsize", mpl.rcParams[key])
    return float(FontProperties(size=size).get_size_in_points())


def _integer_ticks(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _image(ax: Axes, values: np.ndarray, scale: Scale, cmap: str, norm: Any, extent: Any) -> Any:
    import matplotlib as mpl

    _integer_ticks(ax)
    try:
        base = mpl.colormaps[cmap]
    except KeyError:
        raise RFMapError(f"unknown colormap {cmap!r}; try Blues, viridis or magma") from None
    colormap = path_colormap(base)
    shown = np.ma.masked_less_equal(values, 0)
    image = ax.imshow(shown, cmap=colormap, norm=norm, interpolation="none", extent=extent)
    _fit_xticks(ax)
    return image


def _fit_xticks(ax: Axes) -> None:
    """As many integer x ticks as fit side by side: at N = 2049 the labels overlapped."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.ticker import MaxNLocator

    low, high = ax.get_xlim()
    digits = max(len(str(int(low))), len(str(int(high))))
    if digits <= 2:  # matplotlib's own spacing suits labels this short (the seed figures)
        return
    size = FontProperties(size=ax.xaxis.get_ticklabels()[0].get_fontsize()).get_size_in_points()
    label = (digits * 0.62 + 1.5) * size  # a label and the gap after it, in points
    width = ax.get_position().width * cast("Figure", ax.figure).get_figwidth() * 72 * 0.8
    ax.xaxis.set_major_locator(MaxNLocator(nbins=max(1, int(width // label)), integer=True))


def path_colormap(base: Any) -> Any:
    """``base`` for counts >= 1, starting at 15 % so one path never looks like a hole.

    Cells without a path (masked) get the colormap's lightest colour: the background.
    """
    from matplotlib.colors import ListedColormap

    colours = base(np.linspace(HOLE_CONTRAST, 1.0, 256))
    return ListedColormap(colours, name=f"{base.name} (paths)").with_extremes(bad=base(0.0))


def _extent(pmap: PathMap, rows: int, cols: int) -> Any:
    if pmap.size is not None:
        return None
    r0, c0 = pmap.origin[-2], pmap.origin[-1]
    return (c0 - 0.5, c0 + cols - 0.5, r0 + rows - 0.5, r0 - 0.5)


def _plot_2d(
    ax: Axes,
    pmap: PathMap,
    values: np.ndarray,
    scale: Scale,
    annotate: bool | None,
    cmap: str,
    colorbar: bool,
    title: str,
    vmax: float | None,
) -> None:
    norm = _norm(values, scale, vmax)
    image = _image(ax, values, scale, cmap, norm, _extent(pmap, *values.shape))
    ax.set_title(_fit_title(ax, title))
    if annotate is None:
        digits = len(str(pmap.max))
        annotate = max(values.shape) <= 15 and digits <= 4
    if annotate:
        _annotate(ax, pmap, values, norm)
    if colorbar:
        cbar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, shrink=0.9)
        _style_colorbar(cbar, scale)


def _style_colorbar(cbar: Any, scale: Scale) -> None:
    """Small labels; whole-number ticks on a linear scale (the counts are integers)."""
    from matplotlib.ticker import MaxNLocator

    if scale is Scale.LINEAR:
        cbar.locator = MaxNLocator(integer=True)
        cbar.update_ticks()
    else:
        from matplotlib.ticker import NullFormatter

        cbar.ax.yaxis.set_minor_formatter(NullFormatter())  # decades only, no "6x10^0"
    cbar.ax.tick_params(labelsize="small")
    cbar.set_label("paths", fontsize="small")


def _slice_indices(pmap: PathMap) -> list[int]:
    """Slices of a 3D map to show: every non-empty one, at most MAX_SLICES, evenly spread."""
    nonzero = [i for i in range(pmap.counts.shape[0]) if pmap.factors[0][i] != 0]
    if len(nonzero) <= MAX_SLICES:
        return nonzero or [pmap.counts.shape[0] // 2]
    picks = np.linspace(0, len(nonzero) - 1, MAX_SLICES).round().astype(int)
    return [nonzero[i] for i in sorted(set(picks.tolist()))]


def _plot_3d(
    ax: Axes,
    pmap: PathMap,
    values: np.ndarray,
    scale: Scale,
    cmap: str,
    colorbar: bool,
    title: str,
    vmax: float | None,
) -> Axes:
    """Replace ``ax`` by a grid of slices; return the first slice's axes."""
    fig = ax.figure
    indices = _slice_indices(pmap)
    cols = min(len(indices), 4)
    rows = math.ceil(len(indices) / cols)
    spec = ax.get_subplotspec()
    if spec is None:
        raise RFMapError("3D maps need an axes made with add_subplot (a grid of slices is drawn)")
    ax.remove()
    grid = spec.subgridspec(rows, cols)
    norm = _norm(values, scale, vmax)
    image = None
    axes: list[Axes] = []
    for n, index in enumerate(indices):
        sub = fig.add_subplot(grid[n // cols, n % cols])
        image = _image(sub, values[index], scale, cmap, norm, _extent(pmap, *values.shape[1:]))
        label = index + pmap.origin[0]
        sub.set_title(f"axis 0 = {label}", fontsize="small")
        sub.tick_params(labelsize="x-small")
        axes.append(sub)
    fig.suptitle(_fit_title(axes[0], title, whole_figure=True))
    if colorbar and image is not None:
        _style_colorbar(fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04, shrink=0.9), scale)
    return axes[0]


def figure_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi, facecolor="white")
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int | None = None) -> Path:
    """Save a figure atomically; the format follows the suffix (png, svg, pdf, jpg)."""
    out = check_output_path(path, FIGURE_SUFFIXES)
    buffer = io.BytesIO()
    fig.savefig(
        buffer, format=out.suffix.lstrip(".").lower(), dpi=dpi or fig.dpi, facecolor="white"
    )
    return atomic_write_bytes(out, buffer.getvalue())


def _frame_rgb(fig: Figure) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]


def animation_frames(
    layers: Sequence[ConvLayer],
    size: int | Sequence[int] | None,
    unit: int | Sequence[int] | None = None,
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = SEED_DPI,
    **plot_kwargs: Any,
) -> list[np.ndarray]:
    """RGB frames of the schedule growing one layer per frame (the notebook's GIF).

    With ``size=None`` every frame spans the full schedule's receptive field, so the
    frames line up.
    """
    layers = tuple(layers)
    full = stack_path_map(layers, size, unit)
    check_drawable(full.counts.shape, len(layers))
    # A stride-1 stack keeps the output grid, so the unit means the same in every frame.
    same_grid = all(s == 1 for layer in layers for s in layer.stride)
    figures = []
    for depth in range(1, len(layers) + 1):
        partial_unit = unit if same_grid or depth == len(layers) else None
        pmap = stack_path_map(layers[:depth], size, partial_unit)
        fig = new_figure(figsize or default_figsize(full), dpi)
        ax = plot_map(pmap, fig.add_subplot(), **plot_kwargs)
        if size is None and full.ndim <= 2:
            _match_limits(ax, full)
        figures.append(fig)
    _freeze_layout(figures)
    return [_frame_rgb(fig) for fig in figures]


def _freeze_layout(figures: Sequence[Figure]) -> None:
    """Give every frame the last frame's axes positions, so nothing jumps in the GIF."""
    last = figures[-1]
    last.canvas.draw()
    positions = [a.get_position() for a in last.axes]
    for fig in figures[:-1]:
        if len(fig.axes) != len(positions):
            continue  # a 3D frame with another number of slices keeps its own layout
        fig.set_layout_engine("none")
        for axes, position in zip(fig.axes, positions, strict=True):
            axes.set_position(position)


def _match_limits(ax: Axes, full: PathMap) -> None:
    """Show a partial unbounded map on the full map's extent, so frames line up."""
    first = full.origin[-1] - 0.5
    ax.set_xlim(first, first + full.counts.shape[-1])
    if full.ndim == 2:
        top = full.origin[0] - 0.5
        ax.set_ylim(top + full.counts.shape[0], top)


def save_gif(
    frames: Sequence[np.ndarray], path: str | os.PathLike[str], seconds_per_frame: float = 1.0
) -> Path:
    """Write RGB frames as a looping GIF, atomically."""
    from PIL import Image

    check_output_path(path, (".gif",))
    if not frames:
        raise RFMapError("an animation needs at least one frame")
    images = [Image.fromarray(frame) for frame in frames]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(seconds_per_frame * 1000),
            loop=0,
            disposal=1,
        )
    return Path(path)


def animate_schedule(
    layers: Sequence[ConvLayer],
    size: int | Sequence[int] | None,
    path: str | os.PathLike[str],
    *,
    seconds_per_frame: float = 1.0,
    **kwargs: Any,
) -> Path:
    """Write the layer-by-layer animation of a schedule to a GIF."""
    check_output_path(path, (".gif",))
    return save_gif(animation_frames(layers, size, **kwargs), path, seconds_per_frame)


def _schedule_name(schedule: Sequence[int]) -> str:
    return "dilation_" + "_".join(map(str, schedule))


def gallery(out_dir: str | os.PathLike[str], size: int = 21) -> list[Path]:
    """Write the seed notebook's six figures and its Fibonacci animation into ``out_dir``.

    Figures are 3x3 inches at 150 dpi with the Blues colormap and the notebook's titles;
    the animation shows (1), (1, 1), (1, 1, 2), (1, 1, 2, 3), (1, 1, 2, 3, 5), one
    frame per second, looping.  Returns the written paths.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RFMapError(f"gallery output is not a directory: {str(out)!r}")
    if not out.parent.is_dir():
        raise RFMapError(f"parent directory does not exist: {str(out.parent)!r}")
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise RFMapError(
            f"cannot create the gallery directory {str(out)!r}: {exc.strerror or exc}"
        ) from None
    check_output_path(out / f"{_schedule_name(GALLERY_SCHEDULES[0])}.png", FIGURE_SUFFIXES)
    written = []
    for schedule in GALLERY_SCHEDULES:
        pmap = stack_path_map(conv_stack(list(schedule)), size)
        fig = new_figure()
        plot_map(pmap, fig.add_subplot(), scale=Scale.LINEAR, annotate=False)
        written.append(save_figure(fig, out / f"{_schedule_name(schedule)}.png"))
    written.append(
        animate_schedule(
            conv_stack(list(FIBONACCI)),
            size,
            out / "fibonacci.gif",
            figsize=SEED_FIGSIZE,
            scale=Scale.LINEAR,
            annotate=False,
        )
    )
    return written
