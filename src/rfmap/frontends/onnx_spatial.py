"""Rules for the ONNX operators that read neighbourhoods: convolutions, pools, padding
and resizing (numpy only).

The geometry is the ONNX specification's, as onnxruntime computes it: ``auto_pad``
(``SAME_UPPER``/``SAME_LOWER``/``VALID``/``NOTSET``), ``pads``, ``strides``,
``dilations`` and ``ceil_mode`` (where, as in PyTorch, a last window that would start
in the right padding is dropped).  ``Resize`` and ``Upsample`` taps are computed per
axis with onnxruntime's float32 formulas for every ``coordinate_transformation_mode``
and ``nearest_mode``; a tap whose interpolation weight is exactly zero is not read.
Where the taps are those of :class:`~rfmap.windows.Resample` (PyTorch's
``interpolate``) that window is used, otherwise an exact table of taps.

>>> from rfmap.builder import GraphBuilder
>>> from rfmap.frontends.onnx_rules import OnnxContext, rule_for
>>> b = GraphBuilder(1)
>>> x = b.input("x", (1, 1, 9), (2,))
>>> attrs = {"kernel_shape": [3], "strides": [2], "auto_pad": "SAME_UPPER"}
>>> y, _ = rule_for("MaxPool")(OnnxContext(b, "MaxPool", "", "pool", 17, attrs, [x], 2))
>>> y.shape, b.nodes["pool"].edges[0][1]
((1, 1, 5), (Conv(kernel=3, stride=2, dilation=1, offset=-1, pad_mode=<PadMode.ZEROS: 'zeros'>),))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..builder import Mix, Reduce, Relation, Same, Slide, TensorRef, Unsupported
from ..errors import ModelError
from ..windows import (
    Conv,
    Jump,
    PadMode,
    Resample,
    ResampleMode,
    Table,
    Transposed,
    Window,
    _fold_pairs,
    _jump,
)
from .onnx_rules import OnnxContext, Value, register_onnx_rule

__all__ = ["MAX_EXTENT", "MAX_KERNEL", "Taps", "resize_taps", "sliding_geometry"]

#: The most units along one axis that an operator may produce.
MAX_EXTENT = 1 << 26
#: The largest kernel (taps along one axis) rfmap accepts.
MAX_KERNEL = 1 << 16


def _per_axis(ctx: OnnxContext, name: str, nd: int, default: int, low: int) -> list[int]:
    values = ctx.ints_attr(name, [default] * nd)
    assert values is not None
    if len(values) != nd or any(v < low for v in values):
        raise ModelError(f"{ctx.label}: {name} must be {nd} integers >= {low}, got {values}")
    return values


def _trunc_div(a: int, b: int) -> int:
    """C's integer division (towards zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def sliding_geometry(
    ctx: OnnxContext,
    sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    ceil_mode: bool = False,
    pool: bool = False,
) -> list[tuple[int, int]]:
    """``(pad_begin, output_size)`` per spatial axis of a convolution (or a ``pool``),
    as onnxruntime computes them.

    ``SAME_UPPER``/``SAME_LOWER`` pad so that the output has ``ceil(n / stride)`` units,
    the odd unit of padding at the end or the beginning; onnxruntime's pools leave the
    dilation out of that padding.  ``ceil_mode`` drops a last window that would start
    in the right padding.  A window that does not fit the padded input still gives one
    unit when the shortfall is less than a stride (C division), as in onnxruntime.
    """
    nd = len(sizes)
    auto_pad = ctx.str_attr("auto_pad", "NOTSET")
    pads = _per_axis(ctx, "pads", 2 * nd, 0, 0)
    out = []
    for i, (n, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations, strict=True)):
        if k > MAX_KERNEL or d * (k - 1) + 1 > MAX_EXTENT:
            raise ModelError(f"{ctx.label}: kernel {k} with dilation {d} is too large")
        span = d * (k - 1) + 1
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = -(-n // s)
            total = (target - 1) * s + (k if pool else span) - n
            if not pool:
                total = max(0, total)
            upper = auto_pad == "SAME_UPPER"
            begin = _trunc_div(total, 2) if upper else _trunc_div(total + 1, 2)
        elif auto_pad == "VALID":
            begin, total = 0, 0
        elif auto_pad == "NOTSET":
            begin, total = pads[i], pads[i] + pads[i + nd]
        else:
            raise ModelError(f"{ctx.label}: auto_pad {auto_pad!r} is not an ONNX value")
        room = n + total - span
        if ceil_mode:
            size = -(-room // s) + 1
            if size > 0 and (size - 1) * s >= n + begin:
                size -= 1  # the last window would start in the right padding
        else:
            size = _trunc_div(room, s) + 1
        if size < 1:
            raise ModelError(
                f"{ctx.label}: a window of {span} does not fit an input of {n} along spatial "
                f"axis {i} (the output would be empty)"
            )
        if size > MAX_EXTENT:
            raise ModelError(f"{ctx.label}: an output of {size} units along an axis is too large")
        out.append((begin, size))
    return out


def _spatial_input(ctx: OnnxContext, index: int = 0) -> tuple[TensorRef, int]:
    x = ctx.ref(index)
    if x is None:
        raise Unsupported(f"{ctx.op} of a constant input")
    nd = len(x.shape) - 2
    if nd < 1:
        raise ModelError(f"{ctx.label}: needs N, C and spatial dims, got shape {list(x.shape)}")
    return x, nd


def _kernel(ctx: OnnxContext, nd: int, weight_shape: tuple[int, ...] | None) -> list[int]:
    kernel = ctx.ints_attr("kernel_shape")
    if kernel is None:
        if weight_shape is None:
            raise Unsupported(f"{ctx.op} without kernel_shape and with a weight of unknown shape")
        kernel = list(weight_shape[2:])
    if len(kernel) != nd or min(kernel) < 1:
        raise ModelError(f"{ctx.label}: kernel_shape must be {nd} positive integers, got {kernel}")
    return kernel


def _weight_shape(ctx: OnnxContext, index: int) -> tuple[int, ...] | None:
    try:
        return ctx.shape(index)
    except Unsupported:
        return None


# -- convolutions -----------------------------------------------------------------------

#: Input positions of (X, W, B) for the convolution operators.
_CONV_INPUTS = {
    "Conv": (0, 1, 2),
    "ConvInteger": (0, 1, None),
    "QLinearConv": (0, 3, 8),
}


@register_onnx_rule(*_CONV_INPUTS)
def _conv(ctx: OnnxContext) -> list[Value]:
    ix, iw, ib = _CONV_INPUTS[ctx.op]
    x, nd = _spatial_input(ctx, ix)
    w_shape = _weight_shape(ctx, iw)
    if w_shape is None or len(w_shape) != nd + 2:
        raise Unsupported(f"{ctx.op} with a weight of unknown shape")
    kernel = _kernel(ctx, nd, w_shape)
    strides = _per_axis(ctx, "strides", nd, 1, 1)
    dilations = _per_axis(ctx, "dilations", nd, 1, 1)
    group = ctx.int_attr("group", 1)
    if group < 1 or x.shape[1] != w_shape[1] * group or w_shape[0] % group:
        raise ModelError(
            f"{ctx.label}: input {list(x.shape)} and weight {list(w_shape)} "
            f"do not fit group {group}"
        )
    geometry = sliding_geometry(ctx, x.shape[2:], kernel, strides, dilations)
    shape = (x.shape[0], w_shape[0], *(size for _, size in geometry))
    rel: list[Relation] = [Same(0), Reduce()]
    for i, ((begin, _), k, s, d) in enumerate(
        zip(geometry, kernel, strides, dilations, strict=True)
    ):
        rel.append(Slide(2 + i, Conv(k, s, d, -begin)))
    return [ctx.builder.apply(ctx.name, ctx.op, shape, [(x, tuple(rel)), *_params(ctx, iw, ib)])]


def _params(
    ctx: OnnxContext, iw: int, ib: int | None
) -> list[tuple[TensorRef, tuple[Relation, ...]]]:
    """Weights and bias computed from the model input (rare): read whole per channel."""
    out: list[tuple[TensorRef, tuple[Relation, ...]]] = []
    w = ctx.ref(iw)
    if w is not None:
        out.append((w, (Same(1), *(Reduce() for _ in w.shape[1:]))))
    b = ctx.ref(ib) if ib is not None else None
    if b is not None:
        out.append((b, (Same(1),)))
    return out


@register_onnx_rule("ConvTranspose")
def _conv_transpose(ctx: OnnxContext) -> list[Value]:
    x, nd = _spatial_input(ctx)
    w_shape = _weight_shape(ctx, 1)
    if w_shape is None or len(w_shape) != nd + 2:
        raise Unsupported("ConvTranspose with a weight of unknown shape")
    kernel = _kernel(ctx, nd, w_shape)
    strides = _per_axis(ctx, "strides", nd, 1, 1)
    dilations = _per_axis(ctx, "dilations", nd, 1, 1)
    out_pad = _per_axis(ctx, "output_padding", nd, 0, 0)
    group = ctx.int_attr("group", 1)
    if group < 1 or x.shape[1] != w_shape[0] or x.shape[1] % group:
        raise ModelError(
            f"{ctx.label}: input {list(x.shape)} and weight {list(w_shape)} "
            f"do not fit group {group}"
        )
    auto_pad = ctx.str_attr("auto_pad", "NOTSET")
    pads = _per_axis(ctx, "pads", 2 * nd, 0, 0)
    output_shape = ctx.ints_attr("output_shape")
    if output_shape is not None:
        output_shape = output_shape[-nd:]
        if len(output_shape) != nd:
            raise ModelError(f"{ctx.label}: output_shape {output_shape} for {nd} axes")
    rel: list[Relation] = [Same(0), Reduce()]
    sizes = []
    for i, n in enumerate(x.shape[2:]):
        k, s, d, op = kernel[i], strides[i], dilations[i], out_pad[i]
        if k > MAX_KERNEL:
            raise ModelError(f"{ctx.label}: kernel {k} is too large")
        full = s * (n - 1) + op + d * (k - 1) + 1
        if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            # as onnxruntime: the padding that brings the full output to the target; an
            # output_shape beyond the full output adds units at the end, "same" never does
            if output_shape is not None:
                size = output_shape[i]
                total = max(0, full - size)
            else:
                total = max(0, full - n * s)
                size = full - total
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        elif auto_pad in ("NOTSET", "VALID"):
            begin = pads[i] if auto_pad == "NOTSET" else 0
            end = pads[i + nd] if auto_pad == "NOTSET" else 0
            size = full - begin - end
        else:
            raise ModelError(f"{ctx.label}: auto_pad {auto_pad!r} is not an ONNX value")
        if not 1 <= size <= MAX_EXTENT:
            raise ModelError(f"{ctx.label}: output size {size} along spatial axis {i}")
        sizes.append(size)
        rel.append(Slide(2 + i, Transposed(k, s, d, begin)))
    shape = (x.shape[0], w_shape[1] * group, *sizes)
    params = _params(ctx, 1, 2)
    return [ctx.builder.apply(ctx.name, ctx.op, shape, [(x, tuple(rel)), *params])]


# -- pools ----------------------------------------------------------------------------


@register_onnx_rule("MaxPool", "AveragePool", "LpPool")
def _pool(ctx: OnnxContext) -> list[Value]:
    x, nd = _spatial_input(ctx)
    kernel = _kernel(ctx, nd, None)
    strides = _per_axis(ctx, "strides", nd, 1, 1)
    dilations = _per_axis(ctx, "dilations", nd, 1, 1)
    ceil_mode = bool(ctx.int_attr("ceil_mode", 0))
    geometry = sliding_geometry(ctx, x.shape[2:], kernel, strides, dilations, ceil_mode, pool=True)
    shape = (x.shape[0], x.shape[1], *(size for _, size in geometry))
    rel: list[Relation] = [Same(0), Same(1)]
    for i, ((begin, _), k, s, d) in enumerate(
        zip(geometry, kernel, strides, dilations, strict=True)
    ):
        rel.append(Slide(2 + i, Conv(k, s, d, -begin)))
    y = ctx.builder.apply(ctx.name, ctx.op, shape, [(x, tuple(rel))])
    return [y] * ctx.n_outputs  # MaxPool's Indices read the same windows


@register_onnx_rule("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")
def _global_pool(ctx: OnnxContext) -> list[Value]:
    x, _ = _spatial_input(ctx)
    return [ctx.builder.reduce(ctx.name, ctx.op, x, range(2, len(x.shape)), keepdim=True)]


# -- padding ----------------------------------------------------------------------------

_PAD_MODES = {
    "constant": PadMode.ZEROS,
    "reflect": PadMode.REFLECT,
    "edge": PadMode.REPLICATE,
    "wrap": PadMode.CIRCULAR,
}


@register_onnx_rule("Pad")
def _pad(ctx: OnnxContext) -> list[Value]:
    x = ctx.ref(0)
    if x is None or any(ctx.ref(i) is not None for i in range(1, len(ctx.inputs))):
        raise Unsupported("Pad whose pads or value depend on the model input")
    rank = len(x.shape)
    mode = ctx.str_attr("mode", "constant")
    if mode not in _PAD_MODES:
        raise ModelError(f"{ctx.label}: mode {mode!r} is not constant, reflect, edge or wrap")
    if ctx.opset < 11:
        pads = ctx.ints_attr("pads", ctx.ints_attr("paddings", []))
        axes = list(range(rank))
    else:
        pads = ctx.ints(1)
        axes_value = ctx.ints(3) if ctx.present(3) else None
        axes = [ctx.axis(a, rank) for a in axes_value] if axes_value else list(range(rank))
    if pads is None or len(pads) != 2 * len(axes):
        raise ModelError(f"{ctx.label}: pads {pads} for {len(axes)} axes")
    pairs = [(0, 0)] * rank
    for k, d in enumerate(axes):
        pairs[d] = (pads[k], pads[k + len(axes)])
    for d, (lo, hi) in enumerate(pairs):
        n = x.shape[d]
        if n + lo + hi < 0 or n + lo + hi > MAX_EXTENT:
            raise ModelError(f"{ctx.label}: pads {lo}, {hi} for a dim of size {n}")
        if mode == "reflect" and max(lo, hi) >= n and (lo, hi) != (0, 0):
            raise ModelError(f"{ctx.label}: reflect pads {lo}, {hi} need a dim larger than {n}")
    return [ctx.builder.pad(x, pairs, _PAD_MODES[mode], ctx.name, ctx.op)]


# -- resizing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Taps(Table):
    """The exact taps of a resize along one axis (``windows[u]``: the positions output
    unit ``u`` reads), with the jump ``size_in/size_out``."""

    size_in: int = 1
    size_out: int = 1

    @property
    def scale(self) -> Jump:
        return _jump(Fraction(self.size_in, self.size_out))

    def describe(self) -> str:
        return f"resize taps {self.size_in}->{self.size_out}"


_F = np.float32
#: Cubic coefficients whose zero weights are exactly zero in float32 (PyTorch's, TF's).
_EXACT_CUBIC = (-0.75, -0.5)


def _source(ctm: str, n_in: int, n_out: int, scale: np.float32) -> np.ndarray:
    """The source coordinate of every output unit, with onnxruntime's float32 formulas."""
    u = np.arange(n_out, dtype=np.float32)
    half = _F(0.5)
    if ctm == "asymmetric":
        return u / scale
    if ctm == "half_pixel":
        return (u + half) / scale - half
    if ctm == "pytorch_half_pixel":
        return (u + half) / scale - half if n_out > 1 else np.zeros(n_out, dtype=np.float32)
    if ctm == "tf_half_pixel_for_nn":
        return (u + half) / scale
    if ctm == "align_corners":
        if n_out == 1:
            return np.zeros(1, dtype=np.float32)
        return (u * _F(n_in - 1)) / _F(n_out - 1)
    raise Unsupported(f"coordinate_transformation_mode {ctm!r}")


def _round_half_away(x: np.ndarray) -> np.ndarray:
    xd = x.astype(np.float64)
    return np.where(xd >= 0, np.floor(xd + 0.5), -np.floor(-xd + 0.5))


def _nearest(x: np.ndarray, mode: str, downsample: bool) -> np.ndarray:
    xd = x.astype(np.float64)
    if mode == "simple":
        return np.ceil(xd) if downsample else np.trunc(xd)
    if mode == "round_prefer_floor":
        return np.where(xd == np.trunc(xd) + 0.5, np.floor(xd), _round_half_away(x))
    if mode == "round_prefer_ceil":
        return _round_half_away(x)
    if mode == "floor":
        return np.floor(xd)
    if mode == "ceil":
        return np.ceil(xd)
    raise ModelError(f"nearest_mode {mode!r} is not an ONNX value")


def _cubic_coefficients(s: np.ndarray, a: np.float32) -> list[np.ndarray]:
    s = np.abs(s).astype(np.float32)
    one, two = _F(1), _F(2)
    c0 = ((a * (s + one) - _F(5) * a) * (s + one) + _F(8) * a) * (s + one) - _F(4) * a
    c1 = ((a + two) * s - (a + _F(3))) * s * s + one
    c2 = ((a + two) * (one - s) - (a + _F(3))) * (one - s) * (one - s) + one
    c3 = ((a * (two - s) - _F(5) * a) * (two - s) + _F(8) * a) * (two - s) - _F(4) * a
    return [c0, c1, c2, c3]


def resize_taps(
    mode: str,
    ctm: str,
    nearest_mode: str,
    n_in: int,
    n_out: int,
    scale: float,
    cubic_a: float = -0.75,
    exclude_outside: bool = False,
) -> tuple[tuple[int, ...], ...]:
    """The input positions each output unit of a resize reads along one axis.

    >>> resize_taps("linear", "half_pixel", "", 3, 6, 2.0)
    ((0,), (0, 1), (0, 1), (1, 2), (1, 2), (2,))
    >>> resize_taps("nearest", "asymmetric", "floor", 3, 6, 2.0)
    ((0,), (0,), (1,), (1,), (2,), (2,))
    """
    f_scale = _F(scale)
    if f_scale == 1:
        return tuple((u,) for u in range(n_out))
    x = _source(ctm, n_in, n_out, f_scale)
    last = n_in - 1
    if mode == "nearest":
        idx = np.clip(_nearest(x, nearest_mode, bool(f_scale < 1)), 0, last).astype(np.int64)
        return tuple((int(i),) for i in idx)
    if mode == "linear":
        xc = np.maximum(_F(0), np.minimum(x, _F(last)))
        x1 = np.minimum(np.trunc(xc).astype(np.int64), last)
        x2 = np.minimum(x1 + 1, last)
        d1 = np.abs(xc - x1.astype(np.float32))
        d2 = np.abs(xc - x2.astype(np.float32))
        out = []
        for a, b, w1, w2 in zip(x1.tolist(), x2.tolist(), d2.tolist(), d1.tolist(), strict=True):
            if a == b:
                out.append((a,))
            else:
                out.append(tuple(p for p, w in ((a, w1), (b, w2)) if w != 0))
        return tuple(out)
    if mode == "cubic":
        base = np.floor(x.astype(np.float64)).astype(np.int64)
        s = (x - base.astype(np.float32)).astype(np.float32)
        coeffs = _cubic_coefficients(s, _F(cubic_a))
        out = []
        taps: list[tuple[int, ...]] = []
        for u in range(n_out):
            found = set()
            for j in range(4):
                p = int(base[u]) + j - 1
                if exclude_outside and not 0 <= p <= last:
                    continue
                if coeffs[j][u] != 0:
                    found.add(min(max(p, 0), last))
            taps.append(tuple(sorted(found)))
        return tuple(taps)
    raise ModelError(f"resize mode {mode!r} is not nearest, linear or cubic")


def _resize_window(
    taps: tuple[tuple[int, ...], ...],
    n_in: int,
    n_out: int,
    mode: str,
    ctm: str,
    nearest_mode: str,
    scale: float,
) -> Window:
    """PyTorch's :class:`Resample` window for the same interpolation when its taps are
    exactly ``taps``, else :class:`Taps`."""
    ratios = [Fraction(n_in, n_out)]
    inverse = Fraction(1) / Fraction(float(_F(scale)))
    if inverse not in ratios:
        ratios.append(inverse)
    candidates: list[Window] = []
    if mode == "nearest":
        if ctm == "asymmetric" and nearest_mode in ("floor", "simple"):
            candidates = [Resample(n_in, n_out, ResampleMode.NEAREST, r) for r in ratios]
        elif ctm == "half_pixel" and nearest_mode == "round_prefer_ceil":
            candidates = [Resample(n_in, n_out, ResampleMode.NEAREST_EXACT, r) for r in ratios]
    else:
        kind = ResampleMode.LINEAR if mode == "linear" else ResampleMode.CUBIC
        if ctm == "half_pixel" or (ctm == "pytorch_half_pixel" and n_out > 1):
            candidates = [Resample(n_in, n_out, kind, r) for r in ratios]
        elif ctm == "asymmetric":
            candidates = [Resample(n_in, n_out, kind, r, True) for r in ratios]
        elif ctm == "align_corners" and n_out > 1:
            candidates = [Resample(n_in, n_out, kind, Fraction(n_in - 1, n_out - 1), True)]
    want = [sorted(set(t)) for t in taps]
    units = np.arange(n_out, dtype=np.int64)
    for window in candidates:
        which, found = window.pairs(units)
        which, found = _fold_pairs(which, found, n_in, window.pad_mode)
        got: list[set[int]] = [set() for _ in range(n_out)]
        for w, p in zip(which.tolist(), found.tolist(), strict=True):
            got[w].add(p)
        if [sorted(g) for g in got] == want:
            return window
    return Taps(tuple(tuple(t) for t in want), n_in, n_out)


@register_onnx_rule("Resize", "Upsample")
def _resize(ctx: OnnxContext) -> list[Value]:
    x = ctx.ref(0)
    if x is None or any(ctx.ref(i) is not None for i in range(1, len(ctx.inputs))):
        raise Unsupported(f"{ctx.op} whose scales or sizes depend on the model input")
    rank = len(x.shape)
    mode = ctx.str_attr("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise ModelError(f"{ctx.label}: mode {mode!r} is not nearest, linear or cubic")
    resize = ctx.op == "Resize"
    if ctx.int_attr("antialias", 0):
        raise Unsupported(f"{ctx.op} with antialias")
    scales: list[float] | None = None
    sizes: list[int] | None = None
    if not resize:
        scales = [float(v) for v in ctx.attrs["scales"]] if "scales" in ctx.attrs else None
        if scales is None:
            scales = ctx.floats(1)
        ctm, nearest_mode = "asymmetric", "simple"
    elif ctx.opset < 11:
        scales = ctx.floats(1)
        ctm, nearest_mode = "asymmetric", "simple"
    else:
        scales = ctx.floats(2) if ctx.present(2) else None
        sizes = ctx.ints(3) if ctx.present(3) else None
        ctm = ctx.str_attr("coordinate_transformation_mode", "half_pixel")
        nearest_mode = ctx.str_attr("nearest_mode", "round_prefer_floor")
    if ctm == "tf_crop_and_resize":
        raise Unsupported("Resize with tf_crop_and_resize (it reads a region of interest)")
    if ctm == "half_pixel_symmetric":  # its rounding is onnxruntime's own: measure it
        raise Unsupported("Resize with half_pixel_symmetric")
    axes = ctx.ints_attr("axes")
    axes = [ctx.axis(a, rank) for a in axes] if axes else list(range(rank))
    f_scales, out = _resize_sizes(ctx, x.shape, axes, scales or None, sizes or None)
    if tuple(out) == x.shape:
        return [x]  # onnxruntime copies the input when no size changes
    cubic_a = float(ctx.attr("cubic_coeff_a", -0.75))
    if mode == "cubic" and cubic_a not in _EXACT_CUBIC:
        # another coefficient's taps of weight "zero" depend on rounding (measure them)
        raise Unsupported(f"cubic_coeff_a {cubic_a}")
    exclude = bool(ctx.int_attr("exclude_outside", 0))
    rel: list[Relation] = []
    for d in range(rank):
        n_in, n_out = x.shape[d], out[d]
        if f_scales[d] == 1:
            rel.append(Same(d))
        elif not any(atom[0] >= 0 for p in x.parts for atom in p.layout[d]):
            rel.append(Mix(d))  # channels: no positions
        else:
            taps = resize_taps(mode, ctm, nearest_mode, n_in, n_out, f_scales[d], cubic_a, exclude)
            rel.append(
                Slide(d, _resize_window(taps, n_in, n_out, mode, ctm, nearest_mode, f_scales[d]))
            )
    return [ctx.builder.apply(ctx.name, ctx.op, tuple(out), [(x, tuple(rel))])]


def _resize_sizes(
    ctx: OnnxContext,
    shape: tuple[int, ...],
    axes: list[int],
    scales: list[float] | None,
    sizes: list[int] | None,
) -> tuple[list[float], list[int]]:
    """The float32 scale and the output size of every dim, as onnxruntime computes them."""
    rank = len(shape)
    f_scales = [1.0] * rank
    out = list(shape)
    if sizes is not None:
        if len(sizes) not in (len(axes), rank):
            raise ModelError(f"{ctx.label}: sizes {sizes} for {len(axes)} axes")
        chosen = axes if len(sizes) == len(axes) else list(range(rank))
        for d, n in zip(chosen, sizes, strict=True):
            if not 0 <= n <= MAX_EXTENT:
                raise ModelError(f"{ctx.label}: size {n} is out of range")
            out[d] = n
            f_scales[d] = float(_F(n) / _F(shape[d])) if shape[d] else 1.0
        policy = ctx.str_attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            pick = min if policy == "not_larger" else max
            common = pick(f_scales[d] for d in chosen)
            for d in range(rank):
                f_scales[d] = common if d in chosen else 1.0
                out[d] = int(_round_half_away(np.array([_F(common) * _F(shape[d])]))[0])
                if d not in chosen:
                    out[d] = shape[d]
    elif scales is not None:
        if len(scales) not in (len(axes), rank):
            raise ModelError(f"{ctx.label}: scales {scales} for {len(axes)} axes")
        chosen = axes if len(scales) == len(axes) else list(range(rank))
        for d, s in zip(chosen, scales, strict=True):
            if not np.isfinite(s) or s <= 0:
                raise ModelError(f"{ctx.label}: scale {s} must be positive")
            f_scales[d] = float(_F(s))
            size = float(_F(s) * _F(shape[d]))
            if size > MAX_EXTENT:
                raise ModelError(f"{ctx.label}: scale {s} gives an output too large")
            out[d] = int(size)
    else:
        raise ModelError(f"{ctx.label}: neither scales nor sizes")
    if any(n < 1 for n in out):
        raise ModelError(f"{ctx.label}: the output {out} would be empty")
    return f_scales, out
