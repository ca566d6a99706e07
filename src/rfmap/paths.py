"""Exact path-count maps of convolution stacks (numpy only).

For a stack of convolutions whose weights are all one, the gradient of one output unit
with respect to the input is, at every input position, the number of paths from that
position to the unit.  The map is separable: the nD map is the outer product of one 1D
map per axis, and a 1D map is built by pushing a one-hot vector backwards through the
layers (a transposed convolution with a ones kernel), clipping it to the input of each
layer exactly where zero padding loses paths.  All arithmetic is on exact integers:
int64 while the total number of paths is below 2**63, Python ints otherwise.

>>> path_counts([1, 1], size=7, ndim=1)
array([0, 1, 2, 3, 2, 1, 0])
>>> path_counts([2], size=5)
array([[1, 0, 1, 0, 1],
       [0, 0, 0, 0, 0],
       [1, 0, 1, 0, 1],
       [0, 0, 0, 0, 0],
       [1, 0, 1, 0, 1]])
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import InvalidSpecError, MapTooLargeError
from .specs import (
    ConvLayer,
    DescribesSchedule,
    ScheduleEntry,
    _as_list,
    conv_stack,
    format_schedule,
    output_sizes,
    receptive_field_size,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_MAX_BYTES",
    "JSON_BYTES_PER_CELL",
    "PathMap",
    "axis_counts",
    "check_allocation",
    "map_shape",
    "path_counts",
    "path_map",
    "stack_path_map",
]

#: Largest array (in bytes) rfmap allocates for one map unless told otherwise.
DEFAULT_MAX_BYTES = 4 * 2**30

_INT64_LIMIT = 2**63 - 1
# Python ints in an object array: an 8-byte pointer plus the int object itself (36 bytes
# up to 2**90; larger counts take more, see _bytes_per_cell).
_OBJECT_BYTES_PER_CELL = 8 + 36


#: Memory per cell that ``json.dump(pmap.to_dict())`` needs (nested lists of Python ints).
JSON_BYTES_PER_CELL = _OBJECT_BYTES_PER_CELL + 16


def _format_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def check_allocation(cells: int, bytes_per_cell: int, max_bytes: int | None, what: str) -> None:
    """Raise :class:`MapTooLargeError` if ``cells`` cells would exceed ``max_bytes``."""
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    need = cells * bytes_per_cell
    if need > limit:
        raise MapTooLargeError(
            f"{what} would have {cells:,} cells ({_format_bytes(need)}), more than the "
            f"{_format_bytes(limit)} limit; use a smaller size"
        )


def axis_counts(
    layers: Sequence[ConvLayer],
    axis: int,
    size: int | None,
    unit: int = 0,
    *,
    dtype: Any = np.int64,
) -> tuple[int, np.ndarray]:
    """Exact 1D path counts along one axis: ``(origin, counts)``.

    ``counts[i]`` is the number of paths from input position ``origin + i`` to output
    position ``unit``.  With ``size=None`` the input is unbounded (no path is lost) and
    ``counts`` spans the whole receptive field; otherwise positions outside ``[0, size)``
    of every layer's input are dropped and only the part inside the input is returned.
    With a bounded input no intermediate array is longer than a layer's input, however
    large the kernels or dilations are.

    >>> axis_counts(tuple(conv_stack([1, 2], ndim=1)), 0, None)
    (-3, array([1, 1, 2, 1, 2, 1, 1]))
    """
    sizes: list[int] | None = None
    if size is not None:
        sizes = [s[0] for s in output_sizes([_one_axis(layer, axis) for layer in layers], [size])]
    offset = unit
    values = np.ones(1, dtype=dtype)
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        k, d, s = layer.kernel_size[axis], layer.dilation[axis], layer.stride[axis]
        # values[j] sits at layer-output position offset + j; its tap t reads the layer's
        # input at (offset + j) * s - left + t * d, i.e. at offset * s - left + (j*s + t*d).
        offset = offset * s - layer.pad(axis)[0]
        length = (len(values) - 1) * s + (k - 1) * d + 1
        lo, hi = 0, length
        if sizes is not None:  # keep only the positions inside this layer's input
            lo, hi = max(0, -offset), min(length, sizes[index] - offset)
            if hi <= lo:
                return 0, np.zeros(0, dtype=dtype)
        values = _spread(values, k, d, s, lo, hi)
        offset += lo
    return offset, values


#: Above this many kernel taps, :func:`_spread` uses prefix sums instead of one slice each.
_PREFIX_SUM_TAPS = 32


def _spread(values: np.ndarray, k: int, d: int, s: int, lo: int, hi: int) -> np.ndarray:
    """Window ``[lo, hi)`` of the transposed all-ones convolution of ``values``.

    Position ``p`` of the result receives ``values[j]`` for every tap ``t`` in
    ``0..k-1`` with ``p == j*s + t*d``.  Only the taps that reach the window are visited,
    and the work and memory are about the window's length plus ``len(values) * s``.
    """
    n = len(values)
    last = (n - 1) * s  # position of the last value, before the taps shift it
    out = np.zeros(hi - lo, dtype=values.dtype)
    first_tap = max(0, -((last - lo) // d))  # ceil((lo - last) / d)
    last_tap = min(k - 1, (hi - 1) // d)
    taps = last_tap - first_tap + 1
    if taps <= 0:
        return out
    if taps > _PREFIX_SUM_TAPS:
        # Sum over taps first..last of values shifted by t*d, with prefix sums along each
        # residue class mod d.  Buffer coordinates start at ``origin``; the values sit at
        # ``shift`` (the first tap's offset).  Many taps reach the window only if d is
        # small next to the window and the values, so the buffer stays about their size.
        origin = min(lo, first_tap * d)
        shift = first_tap * d - origin
        length = max(hi - origin, shift + last + 1)
        rows = -(-length // d)
        buffer = np.zeros(rows * d, dtype=values.dtype)
        buffer[shift : shift + last + 1 : s] = values
        grid = buffer.reshape(rows, d)
        np.cumsum(grid, axis=0, out=grid)  # in place: no second buffer
        sums = buffer
        span = taps * d
        out[:] = sums[lo - origin : hi - origin]
        start, stop = max(lo - origin, span), hi - origin
        if start < stop:
            out[start - (lo - origin) :] -= sums[start - span : stop - span]
        return out
    for tap in range(first_tap, last_tap + 1):
        start = tap * d
        j0 = max(0, -((start - lo) // s))  # first j with start + j*s >= lo
        j1 = min(n - 1, (hi - 1 - start) // s)  # last j with start + j*s < hi
        if j1 < j0:
            continue
        a = start + j0 * s - lo
        out[a : a + (j1 - j0) * s + 1 : s] += values[j0 : j1 + 1]
    return out


def _one_axis(layer: ConvLayer, axis: int) -> ConvLayer:
    pad = layer.padding if isinstance(layer.padding, str) else (layer.padding[axis],)
    return ConvLayer(
        (layer.kernel_size[axis],), (layer.dilation[axis],), (layer.stride[axis],), pad
    )


@dataclass(frozen=True, eq=False)
class PathMap(DescribesSchedule):
    """Exact path counts from every input position to one output unit of a conv stack.

    ``counts`` is an integer array (int64, or Python ints in an object array when a
    count could reach 2**63); ``origin`` gives, per axis, the input coordinate of
    ``counts[0, ..., 0]`` (0 for a bounded input; for ``size=None`` it is relative to the
    input position of the output unit).  ``factors`` are the 1D maps whose outer
    product is ``counts``.

    :attr:`receptive_field` is the extent of the paths inside the input; the input's
    border can cut it short of :attr:`full_receptive_field`, the theoretical field, and
    :attr:`clipped` says so.

    >>> m = path_map([1, 1, 2, 3, 5], size=21)
    >>> m.full_receptive_field, m.receptive_field, m.clipped
    ((25, 25), (21, 21), True)
    """

    layers: tuple[ConvLayer, ...]
    size: tuple[int, ...] | None
    unit: tuple[int, ...] | None
    factors: tuple[np.ndarray, ...]
    origin: tuple[int, ...]
    counts: np.ndarray

    # -- description -------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.factors)

    # -- exact metrics, from the 1D factors --------------------------------------------
    @cached_property
    def _nonzero(self) -> tuple[np.ndarray, ...]:
        return tuple(np.flatnonzero(f != 0) for f in self.factors)

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Extent of the non-zero support per axis, inside the input (0 where no path
        survives, on every axis: a map without paths has no extent); see
        :attr:`full_receptive_field` for the field the input may clip."""
        if any(len(nz) == 0 for nz in self._nonzero):
            return (0,) * self.ndim
        return tuple(int(nz[-1] - nz[0] + 1) for nz in self._nonzero)

    @property
    def full_receptive_field(self) -> tuple[int, ...]:
        """The theoretical receptive field per axis: its extent on an unbounded input."""
        return tuple(receptive_field_size(self.layers, axis) for axis in range(self.ndim))

    @property
    def clipped(self) -> bool:
        """Whether the input cuts the field: :attr:`receptive_field` is smaller than
        :attr:`full_receptive_field` on some axis (paths that leave the input are lost)."""
        return self.receptive_field != self.full_receptive_field

    @property
    def support(self) -> int:
        """Number of input cells with at least one path."""
        return math.prod(len(nz) for nz in self._nonzero)

    @property
    def max(self) -> int:
        """Largest path count."""
        return math.prod(int(f.max()) if len(f) else 0 for f in self.factors)

    @property
    def total(self) -> int:
        """Total number of paths (sum of the map)."""
        return math.prod(_exact_sum(f) for f in self.factors)

    def to_dict(self, counts: bool = True) -> dict[str, Any]:
        """JSON-ready description; ``counts`` as nested lists of exact ints.

        ``receptive_field`` is the extent inside the input; ``full_receptive_field`` and
        ``clipped`` (the last keys) are the theoretical field and whether the input cuts it.
        """
        uniform_size = self.size is not None and len(set(self.size)) == 1
        out: dict[str, Any] = {
            "dilations": self.dilations,
            "kernel": self.kernel,
            "size": None
            if self.size is None
            else (self.size[0] if uniform_size else list(self.size)),
            "shape": list(self.counts.shape),
            "ndim": self.ndim,
            "unit": None if self.unit is None else list(self.unit),
            "origin": list(self.origin),
            "layers": [layer.describe() for layer in self.layers],
            "receptive_field": list(self.receptive_field),
            "support": self.support,
            "max": self.max,
            "total": self.total,
        }
        if counts:
            # Nested lists of Python ints take far more memory than the array: check first.
            check_allocation(self.counts.size, JSON_BYTES_PER_CELL, None, "the JSON counts")
            out["counts"] = self.counts.tolist()
        out["full_receptive_field"] = list(self.full_receptive_field)
        out["clipped"] = self.clipped
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.counts if dtype is None else self.counts.astype(dtype)

    # -- display -----------------------------------------------------------------------
    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Any:
        """Draw the map (see :func:`rfmap.plot.plot_map`) and return the axes.

        Without ``ax`` the figure is made with pyplot, so a notebook shows it (as pandas'
        ``.plot()``); ``plot_map(m)`` makes a standalone figure instead.
        """
        from .plot import plot_map

        kwargs.setdefault("pyplot", ax is None)
        return plot_map(self, ax=ax, **kwargs)

    def __str__(self) -> str:
        from .report import format_map

        return format_map(self)

    def _repr_png_(self) -> bytes:
        from .plot import figure_png, plot_map

        return figure_png(cast("Figure", plot_map(self).figure))

    def __repr__(self) -> str:
        size = "unbounded" if self.size is None else "x".join(map(str, self.size))
        full = f", full_receptive_field={list(self.full_receptive_field)}" if self.clipped else ""
        return (
            f"PathMap({format_schedule(self.layers)}, size={size}, "
            f"receptive_field={list(self.receptive_field)}{full}, max={self.max}, "
            f"total={self.total})"
        )


def _exact_sum(values: np.ndarray) -> int:
    """Sum of non-negative integers as a Python int: numpy's sum where it cannot overflow."""
    if values.dtype == np.int64 and (
        len(values) == 0 or int(values.max()) * len(values) <= _INT64_LIMIT
    ):
        return int(values.sum())
    return sum(int(v) for v in values)


def _normalise_size(size: int | Sequence[int] | None, ndim: int) -> tuple[int, ...] | None:
    if size is None:
        return None
    size = _as_list(size)  # type: ignore[assignment]
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        sizes: tuple[Any, ...] = (int(size),) * ndim
    elif isinstance(size, Sequence) and not isinstance(size, str):
        sizes = tuple(size)
        if len(sizes) != ndim:
            raise InvalidSpecError(f"size has {len(sizes)} axes but the stack has {ndim}: {size!r}")
    else:
        raise InvalidSpecError(f"size must be a positive integer, got {size!r}")
    if not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in sizes
    ):
        raise InvalidSpecError(f"size must be a positive integer, got {size!r}")
    return tuple(int(s) for s in sizes)


def _normalise_unit(unit: int | Sequence[int] | None, out_size: tuple[int, ...]) -> tuple[int, ...]:
    ndim = len(out_size)
    if unit is None:
        return tuple(n // 2 for n in out_size)
    unit = _as_list(unit)  # type: ignore[assignment]
    units: tuple[Any, ...]
    if isinstance(unit, (int, np.integer)) and not isinstance(unit, bool):
        if ndim != 1:
            raise InvalidSpecError(f"unit needs {ndim} indices for a {ndim}D map, got {unit!r}")
        units = (unit,)
    elif isinstance(unit, Sequence) and not isinstance(unit, str):
        units = tuple(unit)
    else:
        raise InvalidSpecError(f"unit must be integer indices, got {unit!r}")
    if len(units) != ndim:
        raise InvalidSpecError(f"unit needs {ndim} indices for a {ndim}D map, got {list(units)}")
    if not all(isinstance(u, (int, np.integer)) and not isinstance(u, bool) for u in units):
        raise InvalidSpecError(f"unit must be integer indices, got {list(units)}")
    for u, n in zip(units, out_size, strict=True):
        if not 0 <= u < n:
            raise InvalidSpecError(
                f"unit {list(units)} is outside the output grid of shape {list(out_size)}"
            )
    return tuple(int(u) for u in units)


def _dtype_for(bound: int) -> Any:
    return np.int64 if bound <= _INT64_LIMIT else object


def _bytes_per_cell(bound: int) -> int:
    """Memory per cell of an array whose entries are at most ``bound``."""
    if bound <= _INT64_LIMIT:
        return 8
    return max(_OBJECT_BYTES_PER_CELL, 8 + sys.getsizeof(bound))


def map_shape(layers: Sequence[ConvLayer], size: int | Sequence[int] | None) -> tuple[int, ...]:
    """Shape of the map :func:`stack_path_map` would return, computed without building it.

    >>> map_shape(conv_stack([1, 2, 4]), 21), map_shape(conv_stack([1, 2, 4]), None)
    ((21, 21), (15, 15))
    """
    layers = tuple(layers)
    if not layers:
        raise InvalidSpecError("the stack must have at least one layer")
    sizes = _normalise_size(size, layers[0].ndim)
    if sizes is None:
        return tuple(receptive_field_size(layers, axis) for axis in range(layers[0].ndim))
    return sizes


def stack_path_map(
    layers: Sequence[ConvLayer],
    size: int | Sequence[int] | None = 21,
    unit: int | Sequence[int] | None = None,
    *,
    max_bytes: int | None = None,
) -> PathMap:
    """Exact path-count map of an already built stack (see :func:`path_map`)."""
    layers = tuple(layers)
    if not layers:
        raise InvalidSpecError("the stack must have at least one layer")
    ndim = layers[0].ndim
    sizes = _normalise_size(size, ndim)
    if sizes is None:
        if unit is not None:
            raise InvalidSpecError("unit has no meaning for an unbounded map (size=None)")
        units: tuple[int, ...] | None = None
        shape = [receptive_field_size(layers, axis) for axis in range(ndim)]
    else:
        out_size = output_sizes(layers, sizes)[-1]
        units = _normalise_unit(unit, out_size)
        shape = list(sizes)

    # Per axis, a 1D entry is at most the product of the kernel sizes (all paths).
    bounds = [math.prod(layer.kernel_size[a] for layer in layers) for a in range(ndim)]
    cells = math.prod(shape)
    dtype = _dtype_for(math.prod(bounds))
    per_cell = _bytes_per_cell(math.prod(bounds))
    check_allocation(sum(shape), per_cell, max_bytes, "the 1D factors")
    check_allocation(cells, per_cell, max_bytes, f"a {'x'.join(map(str, shape))} map")

    factors: list[np.ndarray] = []
    origin: list[int] = []
    for axis in range(ndim):
        axis_dtype = _dtype_for(bounds[axis])
        start, values = axis_counts(
            layers,
            axis,
            None if sizes is None else sizes[axis],
            0 if units is None else units[axis],
            dtype=axis_dtype,
        )
        if sizes is None:
            factor, axis_origin = values, start
        else:
            factor = np.zeros(sizes[axis], dtype=axis_dtype)
            factor[start : start + len(values)] = values
            axis_origin = 0
        factors.append(factor.astype(dtype) if factor.dtype != np.dtype(dtype) else factor)
        origin.append(axis_origin)

    counts = _outer(factors)
    return PathMap(layers, sizes, units, tuple(factors), tuple(origin), counts)


def _outer(factors: Sequence[np.ndarray]) -> np.ndarray:
    if len(factors) == 1:
        return factors[0].copy()
    if len(factors) == 2:
        a, b = factors
        if a.dtype == np.int64:
            out = np.empty((len(a), len(b)), dtype=np.int64)
            np.multiply(a[:, None], b[None, :], out=out)
            return out
        return np.multiply.outer(a, b)
    result = factors[0]
    for f in factors[1:]:
        result = np.multiply.outer(result, f)
    return result


def path_map(
    dilations: Sequence[ScheduleEntry],
    size: int | Sequence[int] | None = 21,
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    ndim: int | None = None,
    unit: int | Sequence[int] | None = None,
    *,
    stride: int | Sequence[ScheduleEntry] = 1,
    padding: str | int | Sequence[object] = "same",
    max_bytes: int | None = None,
) -> PathMap:
    """Exact path counts of a stack of all-ones convolutions, as a :class:`PathMap`.

    Equal, entry for entry, to the gradient of output ``unit`` with respect to the input
    of ``nn.ConvNd`` layers with all weights one, no bias and zero padding (the seed
    notebook's ``input.grad``), but computed exactly and without autograd.

    Parameters
    ----------
    dilations
        Dilation per layer: an int, or a tuple with one value per axis.
    size
        Input size per axis (an int for a cube, or a tuple); ``None`` for an unbounded
        input, where the map spans the whole receptive field and no path is lost.
    kernel_size
        One kernel size for every layer, or one per layer (int or per-axis tuple).
    ndim
        1, 2 or 3 spatial axes (default: from ``size``/tuples, else 2).
    unit
        Output unit, one index per axis, on the output grid (default: its centre).
    stride, padding
        As ``nn.ConvNd``: ``padding`` is ``"same"``, ``"valid"``, ``"causal"`` or explicit.
    max_bytes
        Refuse (with :class:`~rfmap.errors.MapTooLargeError`) maps larger than this.

    >>> m = path_map([1, 2, 4], size=21)
    >>> m.receptive_field, m.max, m.total
    ((15, 15), 9, 729)
    """
    if ndim is None and isinstance(size, Sequence) and not isinstance(size, str):
        ndim = len(size)
    layers = conv_stack(dilations, kernel_size, ndim=ndim, stride=stride, padding=padding)
    return stack_path_map(layers, size, unit, max_bytes=max_bytes)


def path_counts(
    dilations: Sequence[ScheduleEntry],
    size: int | Sequence[int] | None = 21,
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    ndim: int | None = None,
    unit: int | Sequence[int] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """The integer array of :func:`path_map` (same arguments), shape ``size`` per axis.

    >>> path_counts([1, 1], size=5)
    array([[1, 2, 3, 2, 1],
           [2, 4, 6, 4, 2],
           [3, 6, 9, 6, 3],
           [2, 4, 6, 4, 2],
           [1, 2, 3, 2, 1]])
    """
    return path_map(dilations, size, kernel_size, ndim, unit, **kwargs).counts
