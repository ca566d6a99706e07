"""Receptive fields of causal temporal convolutional networks: keras-tcn, locuslab TCN, WaveNet.

Each preset rebuilds the published block structure as a linear network with all
weights one (every convolution all-ones, every residual, skip or 1x1 connection a
weight-1 edge, activations, normalisation and dropout left out, WaveNet's gated unit
counted as its filter convolution, whose footprint the gate shares), and counts the
paths from every past input to the output at the last time step.  The counts are exact
integers; the receptive field is the extent of their support, so it comes from the map
and is then compared with the formulas the projects document.

The map of a block is a polynomial in the delay: a causal convolution of kernel ``K``
and dilation ``d`` is ``1 + z**d + ... + z**((K - 1) d)`` (its map from the engine,
:func:`rfmap.paths.axis_counts` with ``padding="causal"``), a chain multiplies maps, a
residual or skip connection adds them.

- **keras-tcn** (philipperemy/keras-tcn, ``tcn/tcn.py``): ``nb_stacks`` stacks of one
  ``ResidualBlock`` per dilation; a block is two causal ``Conv1D`` of the same dilation
  (``x1``) plus the input (identity or 1x1 ``matching_conv1D``); ``x1`` also feeds the
  skip connections, whose sum is the output when ``use_skip_connections`` (default).
  Documented ``TCN.receptive_field = 1 + 2 (K - 1) nb_stacks sum(d)``; the README's
  2018 rule ``nb_stacks * K * last dilation`` predates the second convolution of a block.
- **locuslab** (locuslab/TCN, ``TCN/tcn.py``; Bai, Kolter & Koltun 2018): level ``i``
  is a ``TemporalBlock`` of dilation ``2**i``: two ``Conv1d`` padded by ``(K - 1) d`` and
  chomped on the right (causal), plus the input (identity or 1x1 ``downsample``).
- **WaveNet** (van den Oord et al. 2016; ibab/tensorflow-wavenet ``wavenet/model.py``):
  an initial causal convolution, then layers of dilations ``1, 2, ..., 512`` repeated;
  each layer's gated output goes through a 1x1 convolution added to its input
  (residual) and another 1x1 to the skip sum, which is the output.

>>> r = tcn("keras-tcn")
>>> r.receptive_field, [(f.value, f.correct) for f in r.formulas]
(253, [(253, True), (96, False)])
>>> tcn("wavenet", stacks=1, initial_kernel=0).receptive_field   # the paper's 1024
1024

The module can be called as its function: ``rfmap.tcn("keras-tcn")``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from ._callable import make_callable
from .errors import InvalidSpecError, MapTooLargeError
from .paths import axis_counts
from .specs import ConvLayer, conv_stack

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "Formula",
    "Preset",
    "TCNResult",
    "tcn",
]

_INT64_LIMIT = 2**63 - 1
_MAX_FIELD = 2**24  # largest receptive field a preset map may have (cells)
_MAX_WORK = 2_000_000_000  # cell updates a preset map may take (a few seconds)


class Preset(str, enum.Enum):
    """The temporal network families :func:`tcn` knows."""

    KERAS_TCN = "keras-tcn"
    LOCUSLAB = "locuslab"
    WAVENET = "wavenet"


@dataclass(frozen=True)
class Formula:
    """A receptive-field formula as a project documents it, evaluated and judged.

    ``correct`` is whether ``value`` equals the exact receptive field; ``source`` says
    where the formula is published; ``note`` explains a disagreement.
    """

    source: str
    expression: str
    value: int
    correct: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "expression": self.expression,
            "value": self.value,
            "correct": self.correct,
            "note": self.note,
        }


@dataclass(frozen=True, eq=False)
class TCNResult:
    """The exact path-count map of a preset network's output at the last time step.

    ``counts[i]`` is the number of paths from the input at time offset ``origin + i``
    (``0`` is the current step, negative offsets are the past) to the output.
    ``convolutions`` lists every dilated convolution in order, as ``(kernel,
    dilation)``; ``formulas`` compares the documented formulas with the exact field.
    """

    preset: Preset
    params: dict[str, Any]
    counts: np.ndarray
    origin: int
    convolutions: tuple[tuple[int, int], ...]
    formulas: tuple[Formula, ...]
    structure: str

    @property
    def receptive_field(self) -> int:
        """Extent of the support of the map: how many past steps (the current included)."""
        nonzero = np.flatnonzero(self.counts != 0)
        return int(nonzero[-1] - nonzero[0] + 1)

    @property
    def holes(self) -> tuple[int, ...]:
        """Time offsets inside the receptive field that no path reaches."""
        nonzero = np.flatnonzero(self.counts != 0)
        zeros = np.flatnonzero(self.counts[nonzero[0] : nonzero[-1] + 1] == 0) + nonzero[0]
        return tuple(int(self.origin + z) for z in zeros)

    @property
    def gridding_free(self) -> bool:
        """Whether every step of the receptive field is reached."""
        return not self.holes

    @property
    def total(self) -> int:
        """Total number of paths."""
        return sum(int(v) for v in self.counts)

    @property
    def max(self) -> int:
        """Largest path count."""
        return int(self.counts.max())

    @property
    def peak_to_mean(self) -> float:
        """Largest count / mean count over the reached steps (1 = flat)."""
        reached = int(np.count_nonzero(self.counts))
        return float(Fraction(self.max * reached, self.total))

    @property
    def layers(self) -> tuple[ConvLayer, ...]:
        """The dilated convolutions as a plain causal 1D stack (no residual or skip edges)."""
        kernels = [k for k, _ in self.convolutions]
        dilations = [d for _, d in self.convolutions]
        return conv_stack(dilations, kernels, ndim=1, padding="causal")

    def to_dict(self, counts: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "preset": self.preset.value,
            "params": dict(self.params),
            "structure": self.structure,
            "receptive_field": self.receptive_field,
            "origin": self.origin,
            "convolutions": len(self.convolutions),
            "dilations": [d for _, d in self.convolutions],
            "gridding_free": self.gridding_free,
            "holes": list(self.holes),
            "max": self.max,
            "total": self.total,
            "peak_to_mean": self.peak_to_mean,
            "formulas": [f.to_dict() for f in self.formulas],
        }
        if counts:
            out["counts"] = [int(v) for v in self.counts]
        return out

    def plot(self, ax: Axes | None = None, **kwargs: Any) -> Any:
        """Draw the map (see :func:`rfmap.plot.plot_tcn`) and return the axes."""
        from .plot.compare import plot_tcn

        kwargs.setdefault("pyplot", ax is None)
        return plot_tcn(self, ax=ax, **kwargs)

    def __str__(self) -> str:
        from .report import format_tcn

        return format_tcn(self)

    def _repr_png_(self) -> bytes:
        from .plot import figure_png, plot_tcn

        return figure_png(cast("Figure", plot_tcn(self).figure))

    def __repr__(self) -> str:
        return (
            f"TCNResult({self.preset.value}, receptive_field={self.receptive_field}, "
            f"convolutions={len(self.convolutions)}, max={self.max}, total={self.total})"
        )


# -- causal maps as arrays aligned on offset 0 (the current step) at the right end ---------


def _conv_map(kernel: int, dilation: int, dtype: Any) -> np.ndarray:
    """The map of one causal convolution, from the engine."""
    stack = conv_stack([dilation], kernel, ndim=1, padding="causal")
    return axis_counts(stack, 0, None, dtype=dtype)[1]


def _chain(maps: Sequence[np.ndarray], dtype: Any) -> np.ndarray:
    out = np.ones(1, dtype=dtype)
    for m in maps:
        out = _multiply(out, m)
    return out


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The product of two maps (polynomials in the delay), exact.

    A shifted copy of the denser map per non-zero of the sparser one: a dilated
    convolution's map has ``K`` non-zeros however long it is, so this costs
    ``O(len * K)`` where ``np.convolve`` would cost ``O(len * (K - 1) * d)``.
    """
    if np.count_nonzero(a) > np.count_nonzero(b):
        a, b = b, a
    dtype = object if a.dtype == object or b.dtype == object else b.dtype
    out = np.zeros(len(a) + len(b) - 1, dtype=dtype)
    if dtype is object:
        out[...] = 0
        a, b = a.astype(object), b.astype(object)  # no int64 overflow in b * a[i]
    for i in np.flatnonzero(a).tolist():
        out[i : i + len(b)] += b * a[i]
    return out


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of two causal maps aligned on the current step (their right ends)."""
    if len(a) < len(b):
        a, b = b, a
    out = a.copy()
    out[len(a) - len(b) :] += b
    return out


def _identity(dtype: Any) -> np.ndarray:
    return np.ones(1, dtype=dtype)


def _dtype(bound: int) -> Any:
    return np.int64 if bound <= _INT64_LIMIT else object


def _positive_ints(values: Any, name: str) -> tuple[int, ...]:
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise InvalidSpecError(
            f"{name} must be a non-empty list of positive integers, got {values!r}"
        )
    out = []
    for v in values:
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise InvalidSpecError(f"{name} must be positive integers, got {list(values)!r}")
        out.append(int(v))
    return tuple(out)


def _positive(value: Any, name: str, minimum: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise InvalidSpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# -- the presets -------------------------------------------------------------------------


def tcn(
    preset: Preset | str,
    *,
    kernel_size: int | None = None,
    dilations: Sequence[int] | None = None,
    stacks: int | None = None,
    levels: int | None = None,
    skip_connections: bool = True,
    initial_kernel: int | None = None,
) -> TCNResult:
    """The exact receptive field and path-count map of a keras-tcn, locuslab or WaveNet net.

    Parameters
    ----------
    preset
        ``"keras-tcn"``, ``"locuslab"`` or ``"wavenet"``.
    kernel_size
        Kernel size of the dilated convolutions.  Defaults: keras-tcn 3 (``TCN``'s
        default), locuslab 7 (its adding-problem script), WaveNet 2.
    dilations
        keras-tcn: the dilations of one stack (default ``(1, 2, 4, 8, 16, 32)``);
        WaveNet: of one block (default ``1, 2, ..., 512``).  locuslab uses ``2**i``.
    stacks
        keras-tcn ``nb_stacks`` (default 1); WaveNet repetitions of the block (default
        3, the paper's example).
    levels
        locuslab: number of ``TemporalBlock`` levels, ``len(num_channels)`` (default 8).
    skip_connections
        keras-tcn ``use_skip_connections`` (default True): the output is the sum of the
        blocks' convolution branches rather than the last block's output.
    initial_kernel
        WaveNet: width of the initial causal convolution (default ``kernel_size``, as
        ibab's ``filter_width``; 32 is their ``initial_filter_width`` for scalar input; 0
        leaves it out, as in the paper's statement about one block).

    >>> r = tcn("locuslab", kernel_size=2, levels=2)
    >>> r.receptive_field, r.counts.tolist()   # oldest step first, the current one last
    (7, [1, 2, 4, 4, 6, 4, 4])
    """
    try:
        preset = Preset(preset)
    except ValueError:
        raise InvalidSpecError(
            f"preset must be one of {', '.join(p.value for p in Preset)}, got {preset!r}"
        ) from None
    unused = {
        Preset.KERAS_TCN: ("levels", "initial_kernel"),
        Preset.LOCUSLAB: ("dilations", "stacks", "initial_kernel"),
        Preset.WAVENET: ("levels",),
    }[preset]
    given = {
        "dilations": dilations,
        "stacks": stacks,
        "levels": levels,
        "initial_kernel": initial_kernel,
    }
    for name in unused:
        if given[name] is not None:
            raise InvalidSpecError(f"{name} does not apply to the {preset.value} preset")
    if not skip_connections and preset is not Preset.KERAS_TCN:
        raise InvalidSpecError(
            f"skip_connections applies to keras-tcn only ({preset.value} has a fixed structure)"
        )
    if preset is Preset.KERAS_TCN:
        return _keras_tcn(
            _positive(3 if kernel_size is None else kernel_size, "kernel_size"),
            _positive_ints((1, 2, 4, 8, 16, 32) if dilations is None else dilations, "dilations"),
            _positive(1 if stacks is None else stacks, "stacks"),
            skip_connections,
        )
    if preset is Preset.LOCUSLAB:
        return _locuslab(
            _positive(7 if kernel_size is None else kernel_size, "kernel_size"),
            _positive(8 if levels is None else levels, "levels"),
        )
    k = _positive(2 if kernel_size is None else kernel_size, "kernel_size")
    return _wavenet(
        k,
        _positive_ints(
            tuple(2**i for i in range(10)) if dilations is None else dilations, "dilations"
        ),
        _positive(3 if stacks is None else stacks, "stacks"),
        _positive(k if initial_kernel is None else initial_kernel, "initial_kernel", 0),
    )


def _check_field(convs: Sequence[tuple[int, int]]) -> None:
    rf = 1 + sum((k - 1) * d for k, d in convs)
    if rf > _MAX_FIELD:
        raise InvalidSpecError(
            f"the receptive field would span {rf:,} steps, more than the {_MAX_FIELD:,} a preset "
            f"map may have; use smaller dilations or fewer stacks"
        )


def _check_work(
    preset: Preset, blocks: Sequence[Sequence[tuple[int, int]]], bound: int, initial: int = 1
) -> None:
    """Refuse, before any work, a map whose exact counts would take more than seconds.

    Each residual block adds ``taps`` shifted copies of the map so far (``taps`` = the
    non-zeros of its chain of same-dilation convolutions); counts past int64 are Python
    integers, each addition costing tens of machine operations more.
    """
    length, work = 1, 0
    for convs in blocks:
        taps = 1 + sum(k - 1 for k, _ in convs)
        grown = length + sum((k - 1) * d for k, d in convs)
        work += length * taps + 2 * grown
        length = grown
    work += initial * length
    if bound > _INT64_LIMIT:
        work *= 40 + bound.bit_length() // 32
    if work > _MAX_WORK:
        big = "" if bound <= _INT64_LIMIT else f" of {bound.bit_length():,}-bit integers"
        raise MapTooLargeError(
            f"the exact {preset.value} map would take about {work:,} cell updates{big}, more "
            f"than the {_MAX_WORK:,} allowed; use a smaller kernel, fewer dilations or stacks"
        )


def _residual_network(
    blocks: Sequence[Sequence[tuple[int, int]]], dtype: Any, skip_sum: bool
) -> np.ndarray:
    """Blocks ``x -> x + F_b(x)`` in sequence; the output is the last block's, or the sum of
    the branches ``F_b`` (the skip connections), which telescopes to ``H_B - H_0``."""
    h = _identity(dtype)
    skips = np.zeros(1, dtype=dtype)
    for convs in blocks:
        branch = _multiply(h, _chain([_conv_map(k, d, dtype) for k, d in convs], dtype))
        skips = _add(skips, branch)
        h = _add(h, branch)
    return skips if skip_sum else h


def _keras_tcn(k: int, dilations: tuple[int, ...], stacks: int, skip: bool) -> TCNResult:
    blocks = [[(k, d), (k, d)] for _ in range(stacks) for d in dilations]
    convs = [c for block in blocks for c in block]
    _check_field(convs)
    bound = math.prod(1 + k * k for _ in blocks) * max(1, len(blocks))
    _check_work(Preset.KERAS_TCN, blocks, bound)
    counts = _residual_network(blocks, _dtype(bound), skip)
    exact_rf = _extent(counts)
    current = 1 + 2 * (k - 1) * stacks * sum(dilations)
    old = stacks * k * dilations[-1]
    formulas = (
        Formula(
            "keras-tcn TCN.receptive_field (tcn/tcn.py) and README 'Receptive field'",
            "1 + 2*(K-1)*nb_stacks*sum(dilations)",
            current,
            current == exact_rf,
            "the 2 counts the two Conv1D of every residual block",
        ),
        Formula(
            "keras-tcn README of 2018 ('nb_stacks_of_residuals_blocks * kernel_size * "
            "last_dilation')",
            "nb_stacks*K*dilations[-1]",
            old,
            old == exact_rf,
            "written for the 2018 blocks of one convolution, where it held for kernel 2, "
            "dilations 1, 2, 4, ... and one stack only (its example's 16; two stacks see 31, "
            "not 32); today's blocks have two convolutions",
        ),
    )
    structure = (
        f"{stacks} stack(s) x {len(dilations)} residual blocks; block = 2 x causal Conv1D "
        f"(K={k}, same dilation) + identity/1x1; output = "
        + ("sum of the blocks' conv branches (skip connections)" if skip else "last block")
    )
    return TCNResult(
        Preset.KERAS_TCN,
        {
            "kernel_size": k,
            "dilations": list(dilations),
            "nb_stacks": stacks,
            "use_skip_connections": skip,
        },
        counts,
        1 - len(counts),
        tuple(convs),
        _judge(formulas, exact_rf),
        structure,
    )


def _locuslab(k: int, levels: int) -> TCNResult:
    blocks = [[(k, 2**i), (k, 2**i)] for i in range(levels)]
    convs = [c for block in blocks for c in block]
    _check_field(convs)
    bound = math.prod(1 + k * k for _ in blocks)
    _check_work(Preset.LOCUSLAB, blocks, bound)
    counts = _residual_network(blocks, _dtype(bound), skip_sum=False)
    exact_rf = _extent(counts)
    paper = 1 + 2 * (k - 1) * (2**levels - 1)
    single = 1 + (k - 1) * (2**levels - 1)
    formulas = (
        Formula(
            "Bai et al. 2018 ('the effective history of one such layer is (k-1)d'), with the "
            "two convolutions of each TemporalBlock (TCN/tcn.py)",
            "1 + 2*(k-1)*(2**n - 1)",
            paper,
            paper == exact_rf,
            "(k-1)*2**i for each of the 2 convolutions of level i",
        ),
        Formula(
            "one convolution per level (a common reading, e.g. in locuslab/TCN issue #44)",
            "1 + (k-1)*(2**n - 1)",
            single,
            single == exact_rf,
            "misses the second convolution of every TemporalBlock",
        ),
    )
    structure = (
        f"{levels} TemporalBlocks, dilation 2**i; block = 2 x Conv1d(K={k}) padded "
        f"(K-1)d and chomped (causal) + identity/1x1 downsample; output = last block"
    )
    return TCNResult(
        Preset.LOCUSLAB,
        {"kernel_size": k, "levels": levels},
        counts,
        1 - len(counts),
        tuple(convs),
        _judge(formulas, exact_rf),
        structure,
    )


def _wavenet(k: int, dilations: tuple[int, ...], stacks: int, k0: int) -> TCNResult:
    layers = [(k, d) for _ in range(stacks) for d in dilations]
    convs = ([(k0, 1)] if k0 else []) + layers
    _check_field(convs)
    bound = max(k0, 1) * math.prod(1 + k for _ in layers)
    _check_work(Preset.WAVENET, [[c] for c in layers], bound, max(k0, 1))
    dtype = _dtype(bound)
    start = _conv_map(k0, 1, dtype) if k0 else _identity(dtype)
    body = _residual_network([[c] for c in layers], dtype, skip_sum=True)
    counts = _multiply(start, body)
    exact_rf = _extent(counts)
    block = 1 + (k - 1) * sum(dilations)
    ibab = (k - 1) * sum(d for _, d in layers) + 1 + (k0 - 1 if k0 else 0)
    naive = stacks * block
    formulas = (
        Formula(
            "van den Oord et al. 2016: 'each 1, 2, 4, ..., 512 block has receptive field of "
            "size 1024'",
            "1 + (K-1)*sum(dilations of one block)",
            block,
            block == exact_rf,
            "true of one block alone"
            + (
                ""
                if stacks == 1 and not k0
                else "; stacked blocks and the initial causal convolution add to it"
            ),
        ),
        Formula(
            "ibab/tensorflow-wavenet WaveNetModel.calculate_receptive_field",
            "(K-1)*sum(dilations) + 1 + (initial width - 1)",
            ibab,
            ibab == exact_rf,
            "the last term is the initial causal convolution",
        ),
        Formula(
            "blocks x block receptive field (a common reading of the paper)",
            "stacks*(1 + (K-1)*sum(dilations of one block))",
            naive,
            naive == exact_rf,
            "consecutive blocks share one step: R = 1 + sum over blocks of (R_block - 1)",
        ),
    )
    structure = (
        (f"initial causal conv (width {k0}), then " if k0 else "")
        + f"{stacks} x {len(dilations)} gated layers (K={k}); each: dilated conv -> 1x1 added "
        "to its input (residual) and 1x1 to the skip sum; output = skip sum"
    )
    return TCNResult(
        Preset.WAVENET,
        {"kernel_size": k, "dilations": list(dilations), "stacks": stacks, "initial_kernel": k0},
        counts,
        1 - len(counts),
        tuple(convs),
        _judge(formulas, exact_rf),
        structure,
    )


def _extent(counts: np.ndarray) -> int:
    """Extent of the support of a map: the receptive field, read off the exact counts."""
    nonzero = np.flatnonzero(counts != 0)
    return int(nonzero[-1] - nonzero[0] + 1)


def _judge(formulas: Sequence[Formula], exact: int) -> tuple[Formula, ...]:
    """Recompute ``correct`` against the exact field (the value the map gives)."""
    return tuple(
        Formula(f.source, f.expression, f.value, f.value == exact, f.note) for f in formulas
    )


make_callable(__name__, "tcn")
