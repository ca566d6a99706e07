"""Layer specifications of convolution stacks, and their validation.

A stack is a tuple of :class:`ConvLayer`, each the geometry of one ``nn.ConvNd`` layer
(kernel size, dilation, stride, padding) per spatial axis.  Everything else in rfmap
that works on "a schedule" builds its layers with :func:`conv_stack`, so all argument
checking lives here.

>>> layers = conv_stack([1, 2, 4])
>>> [layer.dilation for layer in layers]
[(1, 1), (2, 2), (4, 4)]
>>> layers[1].pad(0)
(2, 2)
>>> format_schedule(layers)
'(1, 2, 4)'
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidSpecError

__all__ = [
    "PADDING_MODES",
    "ConvLayer",
    "DescribesSchedule",
    "PaddingSpec",
    "conv_stack",
    "format_schedule",
    "output_sizes",
    "parse_int_list",
    "parse_schedule",
    "receptive_field_size",
    "schedule_dilations",
    "schedule_kernel",
    "schedule_title",
]

#: Padding given by name.  ``"same"`` pads as PyTorch does (for even extents the extra
#: zero goes on the right), ``"valid"`` does not pad, ``"causal"`` pads on the left only.
PADDING_MODES = ("same", "valid", "causal")

#: A padding: one of :data:`PADDING_MODES`, or explicit zero padding per axis (both sides).
PaddingSpec = str | tuple[int, ...]

ScheduleEntry = int | Sequence[int]


@dataclass(frozen=True)
class ConvLayer:
    """The geometry of one convolution layer, per spatial axis.

    ``kernel_size``, ``dilation`` and ``stride`` are tuples with one entry per axis;
    ``padding`` is ``"same"``, ``"valid"``, ``"causal"`` or a tuple of explicit paddings
    applied on both sides (as ``nn.ConvNd(padding=p)``).  Build layers with
    :func:`conv_stack`, which validates them.
    """

    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    stride: tuple[int, ...]
    padding: PaddingSpec = "same"

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.kernel_size)

    def extent(self, axis: int) -> int:
        """Span of the dilated kernel along ``axis``: ``dilation * (kernel_size - 1) + 1``."""
        return self.dilation[axis] * (self.kernel_size[axis] - 1) + 1

    def pad(self, axis: int) -> tuple[int, int]:
        """Zero padding ``(left, right)`` along ``axis``, exactly as PyTorch applies it."""
        if isinstance(self.padding, str):
            total = self.extent(axis) - 1
            if self.padding == "same":
                return total // 2, total - total // 2
            if self.padding == "causal":
                return total, 0
            return 0, 0
        return self.padding[axis], self.padding[axis]

    def output_size(self, size: int, axis: int) -> int:
        """Length of the output along ``axis`` for an input of length ``size``."""
        left, right = self.pad(axis)
        return (size + left + right - self.extent(axis)) // self.stride[axis] + 1

    def describe(self) -> dict[str, object]:
        """A JSON-ready description of the layer."""
        return {
            "kernel_size": list(self.kernel_size),
            "dilation": list(self.dilation),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
        }


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_list(value: object) -> object:
    """A numpy array (or anything array-like with ``tolist``) as nested lists; else as is."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", 0) >= 1:
        return tolist()
    return value


def _per_axis(value: object, ndim: int, name: str, layer: int, minimum: int) -> tuple[int, ...]:
    """Broadcast one layer's int or per-axis tuple to ``ndim`` checked ints."""
    if _is_int(value):
        values: tuple[object, ...] = (value,) * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != ndim:
            raise InvalidSpecError(
                f"{name} of layer {layer + 1} has {len(values)} axes, expected {ndim}, "
                f"got {list(values)}"
            )
    else:
        raise InvalidSpecError(
            f"{name} must be integers (or one tuple per axis), got {value!r} at layer {layer + 1}"
        )
    for v in values:
        if not _is_int(v) or int(v) < minimum:  # type: ignore[call-overload]
            kind = "positive integers" if minimum == 1 else "non-negative integers"
            raise InvalidSpecError(f"{name} must be {kind}, got {value!r} at layer {layer + 1}")
    return tuple(int(v) for v in values)  # type: ignore[call-overload]


def _per_layer(value: object, n_layers: int, name: str) -> list[object]:
    """Broadcast an option to one entry per layer (an int, a string or a flat list)."""
    value = _as_list(value)
    if isinstance(value, str) or _is_int(value):
        return [value] * n_layers
    if isinstance(value, Sequence):
        items = list(value)
        if len(items) != n_layers:
            raise InvalidSpecError(
                f"{name} has {len(items)} entries but the schedule has {n_layers} layers; "
                f"give one value, or one per layer, got {items}"
            )
        return items
    raise InvalidSpecError(f"{name} must be an integer or one value per layer, got {value!r}")


def _infer_ndim(dilations: Sequence[object], kernel_size: object) -> int | None:
    for entries in (dilations, kernel_size):
        if isinstance(entries, Sequence) and not isinstance(entries, str):
            for entry in entries:
                if isinstance(entry, Sequence) and not isinstance(entry, str):
                    return len(entry)
    return None


def conv_stack(
    dilations: Sequence[ScheduleEntry],
    kernel_size: int | Sequence[ScheduleEntry] = 3,
    *,
    ndim: int | None = None,
    stride: int | Sequence[ScheduleEntry] = 1,
    padding: str | int | Sequence[object] = "same",
) -> tuple[ConvLayer, ...]:
    """Build and validate a stack of convolution layers.

    Parameters
    ----------
    dilations
        One entry per layer: an int, or a tuple with one dilation per axis.
    kernel_size, stride
        One int for every layer, or one entry (int or per-axis tuple) per layer.
    ndim
        Number of spatial axes (1, 2 or 3).  Default: inferred from per-axis tuples, else 2.
    padding
        ``"same"`` (PyTorch's, the default), ``"valid"``, ``"causal"`` (left only) or an
        explicit int / per-axis tuple; one for every layer or one per layer.

    >>> conv_stack([2, (1, 3)], kernel_size=[3, 2])[1]
    ConvLayer(kernel_size=(2, 2), dilation=(1, 3), stride=(1, 1), padding='same')
    """
    dilations = _as_list(dilations)  # type: ignore[assignment]
    if isinstance(dilations, str) or not isinstance(dilations, Sequence):
        raise InvalidSpecError(f"dilations must be a sequence of integers, got {dilations!r}")
    dilations = list(dilations)
    if not dilations:
        raise InvalidSpecError("dilations must name at least one layer, got an empty schedule")
    inferred = _infer_ndim(dilations, kernel_size)
    if ndim is None:
        ndim = inferred if inferred is not None else 2
    if not _is_int(ndim) or not 1 <= ndim <= 3:
        raise InvalidSpecError(f"ndim must be 1, 2 or 3, got {ndim!r}")
    n = len(dilations)
    kernels = _per_layer(kernel_size, n, "kernel_size")
    strides = _per_layer(stride, n, "stride")
    paddings = _per_layer(padding, n, "padding")
    layers = []
    for i in range(n):
        dil = _per_axis(dilations[i], ndim, "dilations", i, 1)
        ker = _per_axis(kernels[i], ndim, "kernel_size", i, 1)
        std = _per_axis(strides[i], ndim, "stride", i, 1)
        pad: PaddingSpec
        if isinstance(paddings[i], str):
            pad = str(paddings[i])
            if pad not in PADDING_MODES:
                raise InvalidSpecError(
                    f"padding must be one of {', '.join(PADDING_MODES)} or an integer, got {pad!r}"
                )
            if pad == "same" and any(s != 1 for s in std):
                raise InvalidSpecError(
                    f"padding='same' needs stride 1 (as in PyTorch), got stride {list(std)} at "
                    f"layer {i + 1}; give an explicit integer padding"
                )
        else:
            pad = _per_axis(paddings[i], ndim, "padding", i, 0)
        layers.append(ConvLayer(ker, dil, std, pad))
    return tuple(layers)


def output_sizes(layers: Sequence[ConvLayer], size: Sequence[int]) -> list[tuple[int, ...]]:
    """Sizes of the input and of every layer output, ``[input, layer 1, ..., layer L]``.

    Raises :class:`InvalidSpecError` when a layer's output would be empty.

    >>> output_sizes(conv_stack([1], stride=2, padding=1), (9, 8))
    [(9, 8), (5, 4)]
    """
    sizes = [tuple(size)]
    for i, layer in enumerate(layers):
        out = tuple(layer.output_size(n, axis) for axis, n in enumerate(sizes[-1]))
        if min(out) < 1:
            raise InvalidSpecError(
                f"size {list(size)} is too small for this stack: layer {i + 1} would output "
                f"{list(out)}"
            )
        sizes.append(out)
    return sizes


def receptive_field_size(
    layers: Sequence[ConvLayer] | Sequence[ScheduleEntry],
    axis: int = 0,
    kernel_size: int | Sequence[ScheduleEntry] = 3,
) -> int:
    """Extent of the theoretical receptive field along ``axis`` (unbounded input).

    ``1 + sum_l (extent_l - 1) * jump_{l-1}`` where the jump is the product of the
    strides before layer ``l``.  ``layers`` is a stack built by :func:`conv_stack`, or
    a dilation schedule, built with ``kernel_size`` (stride 1).

    >>> receptive_field_size(conv_stack([1, 2, 4]))
    15
    >>> receptive_field_size([1, 2, 5]), receptive_field_size([1, 2, 5], kernel_size=2)
    (17, 9)
    """
    items = list(layers) if isinstance(layers, Sequence) and not isinstance(layers, str) else None
    if items and all(isinstance(layer, ConvLayer) for layer in items):
        stack: Sequence[ConvLayer] = items  # type: ignore[assignment]
    elif items and any(isinstance(layer, ConvLayer) for layer in items):
        raise InvalidSpecError(
            "layers must be all ConvLayer (from conv_stack) or a dilation schedule, "
            f"got a mix: {items!r}"
        )
    else:
        stack = conv_stack(layers, kernel_size)  # type: ignore[arg-type]
    ndim = stack[0].ndim
    if isinstance(axis, bool) or not isinstance(axis, int) or not 0 <= axis < ndim:
        raise InvalidSpecError(f"axis must be an integer in 0..{ndim - 1}, got {axis!r}")
    rf, jump = 1, 1
    for layer in stack:
        rf += (layer.extent(axis) - 1) * jump
        jump *= layer.stride[axis]
    return rf


def _collapse(values: tuple[int, ...]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else list(values)


def schedule_dilations(layers: Sequence[ConvLayer]) -> list[int | list[int]]:
    """The schedule as JSON: one int per layer, or a per-axis list where the axes differ.

    >>> schedule_dilations(conv_stack([1, (2, 3)]))
    [1, [2, 3]]
    """
    return [_collapse(layer.dilation) for layer in layers]


def schedule_kernel(layers: Sequence[ConvLayer]) -> int | list[int | list[int]]:
    """One kernel size when all layers and axes agree, else one entry per layer.

    >>> schedule_kernel(conv_stack([1, 2])), schedule_kernel(conv_stack([1, 2], [3, 5]))
    (3, [3, 5])
    """
    per_layer = [_collapse(layer.kernel_size) for layer in layers]
    first = per_layer[0]
    if isinstance(first, int) and all(k == first for k in per_layer):
        return first
    return list(per_layer)


def schedule_title(layers: Sequence[ConvLayer]) -> str:
    """The notebook's title, e.g. ``'Dilation rates: (1, 2, 4)'``."""
    return "Dilation rates: " + format_schedule(layers)


class DescribesSchedule:
    """Mixin for results that hold ``layers``: the schedule's dilations, kernel and title."""

    layers: tuple[ConvLayer, ...]

    @property
    def dilations(self) -> list[int | list[int]]:
        """The schedule: one int per layer, or a per-axis list where the axes differ."""
        return schedule_dilations(self.layers)

    @property
    def kernel(self) -> int | list[int | list[int]]:
        """One kernel size when all layers and axes agree, else one per layer."""
        return schedule_kernel(self.layers)

    @property
    def title(self) -> str:
        """The notebook's title, e.g. ``'Dilation rates: (1, 2, 4)'``."""
        return schedule_title(self.layers)


def _format_entry(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def format_schedule(layers: Sequence[ConvLayer]) -> str:
    """The dilation schedule in the notebook's title form, e.g. ``'(1, 1, 2)'``.

    A layer with different dilations per axis prints as ``2x3``.
    """
    return "(" + ", ".join(_format_entry(layer.dilation) for layer in layers) + ")"


_INT = re.compile(r"^[+-]?\d+$")


def parse_int_list(text: str, name: str) -> list[int]:
    """Parse ``"3,5,7"`` into ``[3, 5, 7]``; a one-line error names ``name`` otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or not all(_INT.match(p) for p in parts):
        raise InvalidSpecError(f"{name} must be comma-separated integers, got {text!r}")
    return [int(p) for p in parts]


def parse_schedule(text: str, name: str = "dilations") -> list[int | tuple[int, ...]]:
    """Parse a schedule such as ``"1,2,4"``; ``"2x3"`` is one layer with a per-axis value.

    Only the syntax is checked here; :func:`conv_stack` checks the values.

    >>> parse_schedule("1, 2x3, 4")
    [1, (2, 3), 4]
    """
    if not text.strip():
        raise InvalidSpecError(f"{name} must name at least one layer, got an empty schedule")
    entries: list[int | tuple[int, ...]] = []
    for part in text.split(","):
        axes = [a.strip() for a in part.strip().lower().split("x")]
        if not all(_INT.match(a) for a in axes):
            raise InvalidSpecError(
                f"{name} must be comma-separated integers (use AxB for per-axis values), "
                f"got {text!r}"
            )
        values = tuple(int(a) for a in axes)
        entries.append(values[0] if len(values) == 1 else values)
    return entries
