"""Windows: how one unit of a node reads one spatial axis of a source node (numpy only).

A model's layer graph (:mod:`rfmap.graph`) has, on every edge and for every spatial axis,
a :class:`Window`.  Convolutions, pools, slices, paddings and broadcasts are :class:`Conv`
windows (unit ``u`` reads ``u*stride + offset + t*dilation`` for ``t < kernel``);
transposed convolutions, resampling and adaptive pools have their own windows;
:class:`Whole` reads every position (global pooling, ``Linear`` after ``flatten``);
:class:`Digits` reads whole digits of a mixed-radix axis (attention inside windows,
tokens); :class:`Table` holds windows that were measured with the gradient.

>>> Conv(3, 2, 1, -1).positions(np.array([0, 1])).tolist()
[-1, 0, 1, 1, 2, 3]
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass
from fractions import Fraction
from typing import Union

import numpy as np

__all__ = [
    "BROADCAST",
    "IDENTITY",
    "Adaptive",
    "Conv",
    "Digits",
    "Jump",
    "PadMode",
    "Resample",
    "ResampleMode",
    "Roll",
    "Table",
    "Transposed",
    "Whole",
    "Window",
]

#: A jump (effective stride): an int, or a Fraction after upsampling.
Jump = Union[int, Fraction]  # noqa: UP007 (a runtime alias on Python 3.10)

_EMPTY = np.zeros(0, dtype=np.int64)
#: Marks an empty window in :meth:`Window.bounds` (``lo = _NONE``, ``hi = -_NONE``).
_NONE = 2**62
#: Largest kernel whose clipped bounds are taken one tap at a time (else all at once).
_TAP_LOOP = 64


class PadMode(str, enum.Enum):
    """What a window reads outside its source: nothing (zeros) or a folded position."""

    ZEROS = "zeros"
    REFLECT = "reflect"
    REPLICATE = "replicate"
    CIRCULAR = "circular"


def _fold(positions: np.ndarray, size: int, mode: PadMode) -> np.ndarray:
    """Map positions onto ``[0, size)`` as the padding mode does (zeros: drop them)."""
    if mode is PadMode.ZEROS or len(positions) == 0:
        return positions[(positions >= 0) & (positions < size)]
    if mode is PadMode.REPLICATE:
        return np.clip(positions, 0, size - 1)
    if mode is PadMode.CIRCULAR:
        return np.mod(positions, size)
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    folded = np.mod(positions, period)
    return np.where(folded > size - 1, period - folded, folded)


def _fold_pairs(
    which: np.ndarray, found: np.ndarray, size: int, mode: PadMode
) -> tuple[np.ndarray, np.ndarray]:
    """Fold read positions into a source of ``size`` (zeros: drop those outside)."""
    if mode is PadMode.ZEROS:
        keep = (found >= 0) & (found < size)
        return which[keep], found[keep]
    return which, _fold(found, size, mode)


# -- windows ----------------------------------------------------------------------------


class Window:
    """How one unit of a node reads one spatial axis of a source node.

    ``pairs(units)`` lists which unit reads which source position (unbounded:
    positions outside the source are padding), ``pad_mode`` tells how the positions
    outside the source fold back into it, and ``scale`` is the number of source
    positions per unit step (the factor the jump is multiplied by).
    """

    pad_mode: PadMode = PadMode.ZEROS

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """``(which, positions)``: unit ``units[which[i]]`` reads ``positions[i]``."""
        raise NotImplementedError

    def positions(self, units: np.ndarray) -> np.ndarray:
        """Every source position read by any of ``units`` (with repeats)."""
        return self.pairs(units)[1]

    @property
    def scale(self) -> Jump:  # pragma: no cover - abstract
        raise NotImplementedError

    def affine(self) -> tuple[int, int, int, int] | None:
        """``(kernel, stride, dilation, offset)`` when the window is a convolution's."""
        return None

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last source position read by each unit (``lo > hi``: reads nothing).

        Both are non-decreasing in the unit, which :func:`unit_bounds` relies on.
        """
        lo = np.full(len(units), _NONE, dtype=np.int64)
        hi = np.full(len(units), -_NONE, dtype=np.int64)
        which, found = self.pairs(units)
        np.minimum.at(lo, which, found)
        np.maximum.at(hi, which, found)
        return lo, hi

    @property
    def is_global(self) -> bool:
        """Whether the window spans the whole source axis, whatever its size (global
        pooling, ``Linear`` after ``flatten``, attention over all tokens...)."""
        return False

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Conv(Window):
    """Unit ``u`` reads ``u*stride + offset + t*dilation`` for ``0 <= t < kernel``.

    Covers convolutions and pools (``offset = -padding``), identities, slices
    (``stride`` = step), paddings and crops (``offset``), and broadcasts (``stride=0``).

    >>> Conv(3, 2, 1, -1).positions(np.array([0, 1])).tolist()
    [-1, 0, 1, 1, 2, 3]
    """

    kernel: int = 1
    stride: int = 1
    dilation: int = 1
    offset: int = 0
    pad_mode: PadMode = PadMode.ZEROS

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taps = np.arange(self.kernel, dtype=np.int64) * self.dilation
        found = (units[:, None] * self.stride + self.offset + taps[None, :]).ravel()
        return np.repeat(np.arange(len(units)), self.kernel), found

    @property
    def scale(self) -> Jump:
        return self.stride

    def affine(self) -> tuple[int, int, int, int]:
        return self.kernel, self.stride, self.dilation, self.offset

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = units * self.stride + self.offset
        return lo, lo + (self.kernel - 1) * self.dilation

    def describe(self) -> str:
        if (self.kernel, self.stride, self.offset) == (1, 1, 0):
            return "identity"
        parts = [f"k={self.kernel}", f"s={self.stride}"]
        if self.dilation != 1:
            parts.append(f"d={self.dilation}")
        if self.offset:
            parts.append(f"offset={self.offset}")
        if self.pad_mode is not PadMode.ZEROS:
            parts.append(self.pad_mode.value)
        return " ".join(parts)


IDENTITY = Conv()
BROADCAST = Conv(1, 0, 1, 0)


@dataclass(frozen=True)
class Roll(Window):
    """``torch.roll``: unit ``u`` reads ``(u - shift) mod size``, on an unbounded input too
    (a roll moves real positions; it is not a padding).

    >>> Roll(2, 5).positions(np.arange(5)).tolist()
    [3, 4, 0, 1, 2]
    """

    shift: int
    size: int

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.arange(len(units)), np.mod(units - self.shift, self.size)

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = np.mod(units - self.shift, self.size)
        return found, found

    @property
    def scale(self) -> Jump:
        return 1

    def describe(self) -> str:
        return f"roll {self.shift}"


@dataclass(frozen=True)
class Transposed(Window):
    """A transposed convolution: unit ``u`` reads ``x`` if ``x*stride - padding + t*dilation == u``.

    >>> Transposed(4, 2, 1, 1).positions(np.array([0, 1, 2])).tolist()
    [0, -1, 1, 0, 1, 0]
    """

    kernel: int
    stride: int
    dilation: int = 1
    padding: int = 0

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taps = np.arange(self.kernel, dtype=np.int64) * self.dilation
        num = units[:, None] + self.padding - taps[None, :]
        hit = num % self.stride == 0
        return np.nonzero(hit)[0], num[hit] // self.stride

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        taps = np.arange(self.kernel, dtype=np.int64) * self.dilation
        num = units[:, None] + self.padding - taps[None, :]
        hit = num % self.stride == 0
        x = num // self.stride
        return np.where(hit, x, _NONE).min(axis=1), np.where(hit, x, -_NONE).max(axis=1)

    @property
    def scale(self) -> Jump:
        return Fraction(1, self.stride)

    def describe(self) -> str:
        return f"transposed k={self.kernel} s={self.stride} p={self.padding}"


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenate ``range(a, b)`` for each pair."""
    lengths = np.maximum(stops - starts, 0)
    if lengths.sum() == 0:
        return _EMPTY
    base = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    return base + np.arange(int(lengths.sum()), dtype=np.int64)


@dataclass(frozen=True)
class Adaptive(Window):
    """Adaptive pooling: unit ``u`` reads ``[floor(u*n/m), ceil((u+1)*n/m))``.

    >>> Adaptive(5, 3).positions(np.array([0, 1, 2])).tolist()
    [0, 1, 1, 2, 3, 3, 4]
    """

    size_in: int
    size_out: int

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.size_in, self.size_out
        starts, stops = (units * n) // m, -((-(units + 1) * n) // m)
        which = np.repeat(np.arange(len(units)), np.maximum(stops - starts, 0))
        return which, _ranges(starts, stops)

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, m = self.size_in, self.size_out
        return (units * n) // m, -((-(units + 1) * n) // m) - 1

    @property
    def scale(self) -> Jump:
        return _jump(Fraction(self.size_in, self.size_out))

    def describe(self) -> str:
        return f"adaptive {self.size_in}->{self.size_out}"


class ResampleMode(str, enum.Enum):
    """Interpolation modes of :class:`Resample` (PyTorch's names)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    LINEAR = "linear"
    CUBIC = "cubic"


@dataclass(frozen=True)
class Resample(Window):
    """``F.interpolate`` along one axis: the source taps with a non-zero weight.

    ``ratio`` is PyTorch's source step per output unit (``1/scale_factor`` or
    ``size_in/size_out``; ``(size_in-1)/(size_out-1)`` with ``align_corners``).  Taps
    outside the source are clamped to its border, as PyTorch does.

    >>> Resample(4, 8, ResampleMode.LINEAR, Fraction(1, 2)).positions(np.arange(3)).tolist()
    [-1, 0, 0, 0, 1, 1]
    """

    size_in: int
    size_out: int
    mode: ResampleMode
    ratio: Fraction
    align_corners: bool = False
    pad_mode: PadMode = PadMode.REPLICATE

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, q = self.ratio.numerator, self.ratio.denominator
        index = np.arange(len(units))
        if self.mode is ResampleMode.NEAREST:
            return index, (units * p) // q
        if self.mode is ResampleMode.NEAREST_EXACT:
            return index, ((2 * units + 1) * p) // (2 * q)
        if self.align_corners:
            num, den = units * p, q
        else:
            num, den = (2 * units + 1) * p - q, 2 * q
        x0 = num // den
        inexact = num % den != 0  # otherwise the other taps have weight 0
        taps = (1,) if self.mode is ResampleMode.LINEAR else (-1, 1, 2)
        which = np.concatenate([index, *(index[inexact] for _ in taps)])
        return which, np.concatenate([x0, *(x0[inexact] + t for t in taps)])

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, q = self.ratio.numerator, self.ratio.denominator
        if self.mode is ResampleMode.NEAREST:
            x = (units * p) // q
            return x, x
        if self.mode is ResampleMode.NEAREST_EXACT:
            x = ((2 * units + 1) * p) // (2 * q)
            return x, x
        num, den = (units * p, q) if self.align_corners else ((2 * units + 1) * p - q, 2 * q)
        x0 = num // den
        inexact = (num % den != 0).astype(np.int64)
        if self.mode is ResampleMode.LINEAR:
            return x0, x0 + inexact
        return x0 - inexact, x0 + 2 * inexact

    @property
    def scale(self) -> Jump:
        """``size_in/size_out`` (``ratio`` may be rounded to float32, as in PyTorch)."""
        if self.align_corners:
            return _jump(self.ratio)
        return _jump(Fraction(self.size_in, self.size_out))

    def describe(self) -> str:
        return f"{self.mode.value} {self.size_in}->{self.size_out}"


@dataclass(frozen=True)
class Whole(Window):
    """Every unit reads all ``size`` positions of the source (global pooling, Linear)."""

    size: int

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        which = np.repeat(np.arange(len(units)), self.size)
        return which, np.tile(np.arange(self.size, dtype=np.int64), len(units))

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(units), np.full_like(units, self.size - 1)

    @property
    def scale(self) -> Jump:
        return 0

    @property
    def is_global(self) -> bool:
        return True

    def describe(self) -> str:
        return f"whole {self.size}"


#: A kept digit of :class:`Digits`: ``(size, unit_step, source_step)``.
KeptDigit = tuple[int, int, int]
#: A free digit of :class:`Digits`: ``(size, source_step)``.
FreeDigit = tuple[int, int]


@dataclass(frozen=True)
class Digits(Window):
    """Whole digits of a mixed-radix axis: attention inside windows, token bookkeeping.

    The source axis is read as a mixed-radix number.  Each *kept* digit
    ``(size, unit_step, source_step)`` takes its value from the unit,
    ``(u // unit_step) % size``, and places it at ``source_step``; each *free* digit
    ``(size, source_step)`` takes every value.  The kept digit of the largest unit step
    is not reduced modulo its size, so that units outside the grid read the windows
    beyond the border (an unbounded input).  Attention inside 7-wide windows: a unit reads its own
    window, ``Digits(kept=((8, 7, 7),), free=((7, 1),))``.

    >>> Digits(((8, 7, 7),), ((7, 1),)).positions(np.array([9])).tolist()
    [7, 8, 9, 10, 11, 12, 13]
    >>> Digits(((7, 1, 1),), ((2, 7),)).positions(np.array([3])).tolist()  # a grid
    [3, 10]
    """

    kept: tuple[KeptDigit, ...]
    free: tuple[FreeDigit, ...]

    def _base(self, units: np.ndarray) -> np.ndarray:
        base = np.zeros(len(units), dtype=np.int64)
        top = max(range(len(self.kept)), key=lambda i: self.kept[i][1], default=-1)
        for i, (size, unit_step, source_step) in enumerate(self.kept):
            digit = units // unit_step
            if i != top:
                digit = digit % size
            base += digit * source_step
        return base

    def _offsets(self) -> np.ndarray:
        offsets = np.zeros(1, dtype=np.int64)
        for size, step in self.free:
            offsets = (offsets[:, None] + np.arange(size, dtype=np.int64) * step).ravel()
        return np.sort(offsets)

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        offsets = self._offsets()
        found = (self._base(units)[:, None] + offsets[None, :]).ravel()
        return np.repeat(np.arange(len(units)), len(offsets)), found

    def bounds(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        base = self._base(units)
        return base, base + sum((size - 1) * step for size, step in self.free)

    @property
    def scale(self) -> Jump:
        if not self.kept:
            return 0
        _, unit_step, source_step = min(self.kept, key=lambda d: d[1])
        return _jump(Fraction(source_step, unit_step))

    @property
    def is_global(self) -> bool:
        """True when the most significant digit is free: the hull spans the axis."""
        top_free = max((step for _, step in self.free), default=0)
        top_kept = max((step for _, _, step in self.kept), default=0)
        return top_free > top_kept

    def describe(self) -> str:
        span = sum((size - 1) * step for size, step in self.free) + 1
        reads = int(np.prod([size for size, _ in self.free], dtype=np.int64))
        return f"digits: {reads} positions in a span of {span}"


def digits_window(
    kept: tuple[KeptDigit, ...], free: tuple[FreeDigit, ...], source_size: int
) -> Window:
    """The simplest window equal to ``Digits(kept, free)`` on a source of ``source_size``.

    Digits of size 1 are dropped; no free digit and kept digits that place the unit as
    it is give the identity (or a strided :class:`Conv`); no kept digit and free digits
    that cover the source give :class:`Whole`; kept digits above a free block give a
    block :class:`Conv` (pooling over windows).

    >>> digits_window(((8, 1, 7),), ((7, 1),), 56)
    Conv(kernel=7, stride=7, dilation=1, offset=0, pad_mode=<PadMode.ZEROS: 'zeros'>)
    >>> digits_window((), ((7, 1), (8, 7)), 56)
    Whole(size=56)
    >>> digits_window((), (), 1) == BROADCAST   # no digit read: not a global window
    True
    """
    reads_digits = bool(free)  # no free digit at all: a broadcast, even of a size-1 source
    kept = tuple(d for d in kept if d[0] > 1)
    free = tuple(d for d in free if d[0] > 1)
    if source_size == 1:
        return BROADCAST  # one position, read by every unit
    if not kept:
        if (
            reads_digits
            and sorted(free, key=lambda d: d[1]) == _radix(sorted(free, key=lambda d: d[1]))
            and int(np.prod([s for s, _ in free], dtype=np.int64)) == source_size
        ):
            return Whole(source_size)
        if not free:
            return BROADCAST
        return Digits((), free)
    order = sorted(kept, key=lambda d: d[1])
    # units place their digits contiguously (unit steps 1, s0, s0*s1, ...), and so do
    # the sources, above a contiguous block of free low digits: a block convolution
    unit_ok = all(d[1] == s for d, s in zip(order, _steps([d[0] for d in order]), strict=True))
    low = sorted(free, key=lambda d: d[1])
    block = int(np.prod([s for s, _ in low], dtype=np.int64)) if low else 1
    src_steps = _steps([s for s, _ in low] + [d[0] for d in order])
    if (
        unit_ok
        and [d[1] for d in low] == src_steps[: len(low)]
        and [d[2] for d in order] == src_steps[len(low) :]
    ):
        return Conv(block, block) if block > 1 else IDENTITY
    return Digits(kept, free)


def _steps(sizes: list[int]) -> list[int]:
    """The place values of a mixed-radix number with these digit sizes (least first)."""
    steps, step = [], 1
    for size in sizes:
        steps.append(step)
        step *= size
    return steps


def _radix(free: list[FreeDigit]) -> list[FreeDigit]:
    return [
        (size, step) for (size, _), step in zip(free, _steps([s for s, _ in free]), strict=True)
    ]


@dataclass(frozen=True)
class Table(Window):
    """Windows listed unit by unit: ``windows[u]`` are the positions unit ``u`` reads
    (none outside the grid); measured ops and masked attention give these."""

    windows: tuple[tuple[int, ...], ...]

    def pairs(self, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.windows)
        which: list[int] = []
        found: list[int] = []
        for i, u in enumerate(units.tolist()):
            if 0 <= u < n:
                which += [i] * len(self.windows[u])
                found += self.windows[u]
        return np.array(which, dtype=np.int64), np.array(found, dtype=np.int64)

    @property
    def scale(self) -> Jump:
        """The most common step between the first (and last) positions of windows."""
        kept = [w for w in self.windows if w]
        steps = [min(b) - min(a) for a, b in itertools.pairwise(kept)]
        steps += [max(b) - max(a) for a, b in itertools.pairwise(kept)]
        if not steps:
            return 1
        return max(sorted(set(steps)), key=steps.count)

    def describe(self) -> str:
        return f"table ({len(self.windows)} units)"


def _jump(value: Fraction) -> Jump:
    return int(value) if value.denominator == 1 else value
