"""The PyTorch frontend's rules for operations that slide a window over positions:
convolutions, pools, unfolds, resampling and pixel shuffles (torch only when a rule
runs).  Registered by :func:`rfmap.frontends.torch_rules.install`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..builder import GraphBuilder, Mix, Reduce, Relation, Same, Slide, TensorRef, Unsupported
from ..windows import IDENTITY, Adaptive, Conv, Resample, ResampleMode, Transposed, Whole, Window

if TYPE_CHECKING:
    from .torch_rules import OpContext

#: A rule: ``rule(ctx) -> TensorRef | tuple | None``.
Rule = Callable[["OpContext"], Any]

__all__: list[str] = []  # rules are registered by torch_rules.install, not imported


def _short(op: Any) -> str:
    """``add`` for ``aten.add_.Tensor``: the op's name, in-place or not."""
    name = str(getattr(op, "__name__", op)).split(".")[0]
    return name.rstrip("_") or name


def _ints(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        values = tuple(int(v) for v in value)
        return values * n if len(values) == 1 else values
    return (int(value),) * n


def _sliding(
    b: GraphBuilder,
    name: str,
    op: str,
    x: TensorRef,
    shape: Sequence[int],
    windows: Sequence[Window],
    mix_channels: bool,
) -> TensorRef:
    """An op over the trailing ``len(windows)`` dims of ``(N, C, *S)`` or ``(C, *S)``;
    with ``mix_channels`` every output channel reads every input channel."""
    nd = len(windows)
    rank = len(x.shape)
    lead = rank - nd
    blocks = [
        d
        for d in range(lead, rank)
        if _is_block(windows[d - lead], x.shape[d]) and _packed_dim(b, x, d)
    ]
    if blocks:
        return _block_pool(b, name, op, x, shape, windows, mix_channels, blocks)
    rel: list[Relation] = []
    for d in range(rank):
        if d >= lead:
            window = windows[d - lead]
            # a kernel-1 window keeps positions (a 1x1 convolution over flattened tokens)
            rel.append(Same(d) if window == IDENTITY else Slide(d, window))
        elif d == lead - 1 and mix_channels:
            rel.append(Mix(d))
        else:
            rel.append(Same(d))
    return b.apply(name, op, shape, [(x, tuple(rel))])


def _is_block(window: Window, n: int) -> bool:
    """A window that reads disjoint blocks tiling the dim (a pool with stride = kernel)."""
    return (
        isinstance(window, Conv)
        and window.kernel == window.stride > 1
        and window.dilation == 1
        and window.offset == 0
        and n % window.kernel == 0
    )


def _packed_dim(b: GraphBuilder, x: TensorRef, d: int) -> bool:
    """Whether dim ``d`` holds positions other than one whole axis (tokens, windows)."""
    for p in x.parts:
        spatial = [atom for atom in p.layout[d] if atom[0] >= 0]
        if not spatial:
            continue
        a, n, step = spatial[0]
        if len(p.layout[d]) > 1 or step != 1 or b.extents(p.node)[a] != n:
            return True
    return False


def _block_pool(
    b: GraphBuilder,
    name: str,
    op: str,
    x: TensorRef,
    shape: Sequence[int],
    windows: Sequence[Window],
    mix_channels: bool,
    blocks: list[int],
) -> TensorRef:
    """Pooling in blocks over a dim of flattened tokens: split the dim into
    (blocks, block size) and read each block whole, digit by digit."""
    nd = len(windows)
    rank = len(x.shape)
    lead = rank - nd
    split: list[int] = []
    rel: list[Relation] = []
    for d in range(rank):
        if d in blocks:
            k = windows[d - lead].kernel  # type: ignore[attr-defined]
            split += [x.shape[d] // k, k]
            rel += [Same(d), Reduce()]
        elif d >= lead:
            split.append(x.shape[d])
            window = windows[d - lead]
            rel.append(Same(d) if window == IDENTITY else Slide(d, window))
        elif d == lead - 1 and mix_channels:
            split.append(x.shape[d])
            rel.append(Mix(d))
        else:
            split.append(x.shape[d])
            rel.append(Same(d))
    y = b.reshape(x, split)
    return b.apply(name, op, shape, [(y, tuple(rel))])


# -- convolutions and pools --------------------------------------------------------------


def _convolution(ctx: OpContext) -> Any:
    x = ctx.need("input")
    if ctx.ref(ctx.args.get("weight")) is not None:
        raise Unsupported("a convolution whose weight depends on the input")
    weight = ctx.args["weight"]
    nd = weight.dim() - 2
    k = tuple(int(n) for n in weight.shape[2:])
    s = _ints(ctx.arg("stride", 1), nd)
    p = _ints(ctx.arg("padding", 0), nd)
    d = _ints(ctx.arg("dilation", 1), nd)
    windows: list[Window]
    if ctx.arg("transposed", False):
        windows = [Transposed(kk, ss, dd, pp) for kk, ss, dd, pp in zip(k, s, d, p, strict=True)]
    else:
        windows = [Conv(kk, ss, dd, -pp) for kk, ss, dd, pp in zip(k, s, d, p, strict=True)]
    groups = int(ctx.arg("groups", 1))
    channels = x.shape[-nd - 1]
    out = ctx.shape
    if groups == channels == out[-nd - 1] and groups > 1:
        return _sliding(ctx.builder, ctx.name, "conv", x, out, windows, mix_channels=False)
    return _sliding(ctx.builder, ctx.name, "conv", x, out, windows, mix_channels=True)


def _pool(kind: str) -> Rule:
    def rule(ctx: OpContext) -> Any:
        x = ctx.need()
        nd = int(kind[-1])
        kernel = _ints(ctx.arg("kernel_size"), nd)
        stride = ctx.arg("stride")
        s = _ints(stride if stride not in (None, []) else kernel, nd)
        p = _ints(ctx.arg("padding", 0), nd)
        d = _ints(ctx.arg("dilation", 1), nd)
        windows = [Conv(kk, ss, dd, -pp) for kk, ss, dd, pp in zip(kernel, s, d, p, strict=True)]
        out = _sliding(ctx.builder, ctx.name, kind[:-1], x, ctx.shape, windows, False)
        return ctx.same(out)

    return rule


def _adaptive(ctx: OpContext) -> Any:
    x = ctx.need()
    shape = ctx.shape
    nd = len(ctx.arg("output_size"))
    windows: list[Window] = []
    for n_in, n_out in zip(x.shape[-nd:], shape[-nd:], strict=True):
        if n_out == 1:
            windows.append(Whole(n_in))
        elif n_in % n_out == 0:
            windows.append(Conv(n_in // n_out, n_in // n_out))
        else:
            windows.append(Adaptive(n_in, n_out))
    out = _sliding(ctx.builder, ctx.name, "adaptive_pool", x, shape, windows, False)
    return ctx.same(out)


def _unfold(ctx: OpContext) -> Any:
    """``x.unfold(dim, size, step)``: windows along ``dim``, their taps in a new last dim.

    Window ``w`` of a spatial dim reads ``[w*step, w*step + size)``; its taps (the new
    dim) are not positions of their own, so every tap is taken to read the whole window.
    """
    x = ctx.need()
    b = ctx.builder
    d = int(ctx.arg("dimension")) % max(1, len(x.shape))
    size, step = int(ctx.arg("size")), int(ctx.arg("step"))
    shape = ctx.shape
    windows_shape = shape[:-1]
    rel: list[Relation] = [Same(k) for k in range(len(x.shape))]
    rel[d] = Slide(d, Conv(size, step)) if _spatial_dim(x, d) else Mix(d)
    y = b.apply(ctx.name, "unfold", windows_shape, [(x, tuple(rel))])
    return b.expand(b.reshape(y, (*windows_shape, 1)), shape)


def _spatial_dim(x: TensorRef, d: int) -> bool:
    return any(a >= 0 for p in x.parts for a, _, _ in p.layout[d])


def _im2col(ctx: OpContext) -> Any:
    """``F.unfold``: ``(N, C, H, W)`` to ``(N, C*kh*kw, L)``, L the flattened windows."""
    x = ctx.need()
    b = ctx.builder
    k, d, p, s = _unfold_args(ctx)
    *lead, c, h, w = x.shape
    oh, ow = _conv_sizes((h, w), k, d, p, s)
    windows = [Conv(kk, ss, dd, -pp) for kk, ss, dd, pp in zip(k, s, d, p, strict=True)]
    y = _sliding(b, ctx.name, "im2col", x, (*lead, c, oh, ow), windows, mix_channels=False)
    y = b.reshape(y, (*lead, c, 1, oh, ow))
    y = b.expand(y, (*lead, c, k[0] * k[1], oh, ow))
    return b.reshape(y, ctx.shape)


def _unfold_args(
    ctx: OpContext,
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Kernel size, dilation, padding and stride of ``F.unfold``/``F.fold``, per axis."""
    return tuple(  # type: ignore[return-value]
        _ints(ctx.arg(name), 2) for name in ("kernel_size", "dilation", "padding", "stride")
    )


def _conv_sizes(
    sizes: Sequence[int],
    k: Sequence[int],
    d: Sequence[int],
    p: Sequence[int],
    s: Sequence[int],
) -> list[int]:
    """Output sizes of a convolution (PyTorch's formula)."""
    return [
        (n + 2 * pp - dd * (kk - 1) - 1) // ss + 1
        for n, kk, dd, pp, ss in zip(sizes, k, d, p, s, strict=True)
    ]


def _col2im(ctx: OpContext) -> Any:
    """``F.fold``: ``(N, C*kh*kw, L)`` back to ``(N, C, H, W)``, summing the windows."""
    x = ctx.need()
    b = ctx.builder
    h, w = (int(n) for n in ctx.arg("output_size"))
    k, d, p, s = _unfold_args(ctx)
    oh, ow = _conv_sizes((h, w), k, d, p, s)
    *lead, ckk, _ = x.shape
    c = ckk // (k[0] * k[1])
    y = b.reshape(x, (*lead, c, k[0] * k[1], oh, ow))
    n = len(lead)
    rel: list[Relation] = [Same(i) for i in range(n + 1)]
    rel += [
        Reduce(),
        Slide(n + 1, Transposed(k[0], s[0], d[0], p[0])),
        Slide(n + 2, Transposed(k[1], s[1], d[1], p[1])),
    ]
    return b.apply(ctx.name, "col2im", ctx.shape, [(y, tuple(rel))])


# -- resampling --------------------------------------------------------------------------


def _float32_ratio(n_in: int, n_out: int, scale: float | None) -> Fraction:
    """PyTorch's source step per output unit, rounded to float32 as its kernels do."""
    if scale is not None and scale > 0:
        return Fraction(float(np.float32(1.0 / scale)))
    return Fraction(float(np.float32(n_in) / np.float32(n_out)))


def _upsample(mode: str) -> Rule:
    def rule(ctx: OpContext) -> Any:
        x = ctx.need("self" if "self" in ctx.args else "input")
        shape = ctx.shape
        nd = len(shape) - 2
        scales = ctx.arg("scale_factors")
        if scales is None:
            keys = ("scales",) if nd == 1 else tuple(f"scales_{c}" for c in "dhw"[3 - nd :])
            scales = [ctx.args.get(k) for k in keys]
        scales = list(scales) if scales else [None] * nd
        if len(scales) == 1 and nd > 1:
            scales = scales * nd
        align = bool(ctx.arg("align_corners", False))
        windows = [
            _resample(mode, int(n_in), int(n_out), None if sc is None else float(sc), align)
            for n_in, n_out, sc in zip(x.shape[-nd:], shape[-nd:], scales, strict=True)
        ]
        return _sliding(ctx.builder, ctx.name, f"upsample ({mode})", x, shape, windows, False)

    return rule


def _resample(mode: str, n_in: int, n_out: int, scale: float | None, align: bool) -> Window:
    if mode in ("nearest", "nearest-exact"):
        kind = ResampleMode.NEAREST if mode == "nearest" else ResampleMode.NEAREST_EXACT
        if n_in == n_out and mode == "nearest":
            return IDENTITY
        if mode == "nearest" and n_out == 2 * n_in and scale in (None, 2.0):
            ratio = Fraction(1, 2)
        else:
            ratio = _float32_ratio(n_in, n_out, scale)
        return Resample(n_in, n_out, kind, ratio)
    kind = ResampleMode.CUBIC if mode == "bicubic" else ResampleMode.LINEAR
    if align:
        ratio = Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
    else:
        ratio = _float32_ratio(n_in, n_out, scale)
    return Resample(n_in, n_out, kind, ratio, align)


def _pixel_shuffle(up: bool) -> Rule:
    def rule(ctx: OpContext) -> Any:
        x = ctx.need()
        b = ctx.builder
        r = int(ctx.arg("upscale_factor" if up else "downscale_factor"))
        *lead, c, h, w = x.shape
        if up:
            y = b.reshape(x, (*lead, c // (r * r), r, r, h, w))
            n = len(lead)
            y = b.permute(y, (*range(n), n, n + 3, n + 1, n + 4, n + 2))
            return b.reshape(y, ctx.shape)
        y = b.reshape(x, (*lead, c, h // r, r, w // r, r))
        n = len(lead)
        y = b.permute(y, (*range(n), n, n + 2, n + 4, n + 1, n + 3))
        return b.reshape(y, ctx.shape)

    return rule
