"""The rules of the PyTorch frontend: one small function per ATen operation (torch).

A rule receives an :class:`OpContext` -- the operation's arguments bound by name, what
rfmap knows of each tensor argument (:meth:`OpContext.ref`), the output the operation
produced (on the meta device: shapes only) and the :class:`~rfmap.builder.GraphBuilder`
-- and returns the :class:`~rfmap.builder.TensorRef` of each output (a tuple for ops with
several outputs; None for an output that does not depend on the input).  A rule raises
:class:`~rfmap.builder.Unsupported` for a case it cannot express; the frontend then
measures that one operation with the gradient.

Rules are looked up by operation (``torch.ops.aten.convolution.default``, or the whole
overload packet ``torch.ops.aten.convolution``), as ``torch.utils.flop_counter`` does.
:func:`register_rule` adds a rule, for ATen ops or custom ops
(``torch.library.custom_op``); :func:`register_module_rule` gives the geometry of a
whole module class, whose forward is then not run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..builder import (
    GraphBuilder,
    Mix,
    Reduce,
    Relation,
    Same,
    Slide,
    TensorRef,
    Unsupported,
)
from ..gradient import require_torch
from ..windows import (
    Conv,
    PadMode,
)
from .torch_spatial import (
    _adaptive,
    _col2im,
    _convolution,
    _im2col,
    _ints,
    _pixel_shuffle,
    _pool,
    _sliding,
    _unfold,
    _upsample,
)

__all__ = [
    "OpContext",
    "Rule",
    "module_rule",
    "register_module_rule",
    "register_rule",
    "rule_for",
]

#: A rule: ``rule(ctx) -> TensorRef | tuple | None``.
Rule = Callable[["OpContext"], Any]

_RULES: dict[Any, Rule] = {}
_MODULE_RULES: dict[type, Callable[..., Any]] = {}


def register_rule(*ops: Any) -> Callable[[Rule], Rule]:
    """Register ``rule(ctx)`` for operations (``OpOverload`` or ``OpOverloadPacket``).

    A rule for a packet covers all its overloads; a rule for one overload wins over it.

    >>> import torch
    >>> from rfmap.frontends.torch_rules import register_rule, rule_for
    >>> @register_rule(torch.ops.aten.relu)
    ... def relu(ctx):
    ...     return ctx.ref(ctx.arg("self"))
    >>> rule_for(torch.ops.aten.relu.default) is relu
    True
    """

    def add(rule: Rule) -> Rule:
        for op in ops:
            _RULES[op] = rule
        return rule

    return add


def register_module_rule(*types: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``rule(ctx, module, *inputs)`` for module classes (and their subclasses).

    The module's forward is not run: the rule returns the TensorRef(s) of its output,
    built with ``ctx.builder`` or the helpers :meth:`OpContext.conv` and
    :meth:`OpContext.whole`; ``ctx.ref(x)`` gives what rfmap knows of an input.
    """

    def add(rule: Callable[..., Any]) -> Callable[..., Any]:
        for kind in types:
            _MODULE_RULES[kind] = rule
        return rule

    return add


def rule_for(op: Any) -> Rule | None:
    """The rule of ``op`` (an overload's own rule, else its packet's), or None."""
    rule = _RULES.get(op)
    if rule is None:
        packet = getattr(op, "overloadpacket", None)
        if packet is not None:
            rule = _RULES.get(packet)
    return rule


def module_rule(module: Any) -> Callable[..., Any] | None:
    """The module rule of ``module``'s class (or of its nearest registered base)."""
    for kind in type(module).__mro__:
        rule = _MODULE_RULES.get(kind)
        if rule is not None:
            return rule
    return None


# -- the context -----------------------------------------------------------------------


@dataclass
class OpContext:
    """One operation as a rule sees it."""

    builder: GraphBuilder
    op: Any
    args: dict[str, Any]
    out: Any
    refs: Callable[[Any], TensorRef | None]
    name: str

    @property
    def b(self) -> GraphBuilder:
        return self.builder

    def arg(self, name: str, default: Any = None) -> Any:
        """An argument by its schema name."""
        value = self.args.get(name, default)
        return default if value is None else value

    def ref(self, value: Any) -> TensorRef | None:
        """What rfmap knows of a tensor argument (None: it does not depend on the input)."""
        ref = self.refs(value)
        if ref is None or ref.constant:
            return None
        return ref

    def need(self, name: str = "self") -> TensorRef:
        """The TensorRef of argument ``name``, which must depend on the input."""
        ref = self.ref(self.args.get(name))
        if ref is None:
            raise Unsupported(f"{self.name} whose {name!r} does not depend on the input")
        return ref

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of the (first) output."""
        out = self.out[0] if isinstance(self.out, (tuple, list)) else self.out
        return tuple(int(n) for n in out.shape)

    def same(self, ref: TensorRef | None) -> Any:
        """``ref`` for every output: an op that keeps positions as they are."""
        if isinstance(self.out, (tuple, list)):
            return tuple(ref if i == 0 else None for i in range(len(self.out)))
        return ref

    # helpers for module rules ---------------------------------------------------------
    def conv(
        self,
        x: Any,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        out_channels: int | None = None,
    ) -> TensorRef:
        """A convolution-like geometry over the trailing spatial dims of ``(N, C, *S)``."""
        ref = x if isinstance(x, TensorRef) else self.ref(x)
        if ref is None:
            raise Unsupported("a module whose input does not depend on the model input")
        nd = len(ref.shape) - 2
        k, s, p, d = (_ints(v, nd) for v in (kernel_size, stride, padding, dilation))
        sizes = [
            (n + 2 * pp - dd * (kk - 1) - 1) // ss + 1
            for n, kk, ss, pp, dd in zip(ref.shape[2:], k, s, p, d, strict=True)
        ]
        shape = (ref.shape[0], out_channels or ref.shape[1], *sizes)
        windows = [Conv(kk, ss, dd, -pp) for kk, ss, dd, pp in zip(k, s, d, p, strict=True)]
        return _sliding(self.builder, self.name, "module", ref, shape, windows, mix_channels=True)

    def whole(self, x: Any, dims: Sequence[int], shape: Sequence[int] | None = None) -> TensorRef:
        """Every output element reads ``dims`` of ``x`` whole (a recurrence, attention)."""
        ref = x if isinstance(x, TensorRef) else self.ref(x)
        if ref is None:
            raise Unsupported("a module whose input does not depend on the model input")
        out = ref.shape if shape is None else tuple(shape)
        return self.builder.mix(self.name, "module", _resize(ref, out, self.builder), dims)


def _resize(ref: TensorRef, shape: tuple[int, ...], b: GraphBuilder) -> TensorRef:
    """``ref`` with the sizes of non-spatial dims changed to ``shape`` (features)."""
    if ref.shape == shape:
        return ref
    if len(shape) != len(ref.shape):
        raise Unsupported("a module rule that changes the number of dims")
    rel: list[Relation] = []
    for d, (n_in, n_out) in enumerate(zip(ref.shape, shape, strict=True)):
        rel.append(Same(d) if n_in == n_out else Mix(d))
    return b.apply("resize", "resize", shape, [(ref, tuple(rel))])


# -- element-wise ------------------------------------------------------------------------

_UNARY = """
abs neg exp exp2 expm1 log log1p log2 log10 sqrt rsqrt square reciprocal sign sgn erf erfc
erfinv sin cos tan asin acos atan sinh cosh tanh asinh acosh atanh sigmoid logit relu relu6
gelu silu mish hardswish hardsigmoid hardtanh leaky_relu elu selu celu softplus softshrink
hardshrink threshold tanhshrink log_sigmoid_forward rrelu clamp clamp_min clamp_max clip
floor ceil round trunc frac nan_to_num isnan isinf isfinite logical_not bitwise_not
_to_copy clone alias detach lift_fresh lift_fresh_copy contiguous positive
_conj conj resolve_conj resolve_neg native_dropout dropout feature_dropout
alpha_dropout feature_alpha_dropout _prelu_kernel prelu
"""
_BINARY = """
add sub rsub mul div true_divide floor_divide pow maximum minimum fmax fmin fmod remainder
eq ne lt le gt ge logical_and logical_or logical_xor bitwise_and bitwise_or bitwise_xor
atan2 hypot copysign where masked_fill lerp addcmul addcdiv xlogy clamp heaviside
max min masked_scatter
"""


def _words(text: str) -> list[str]:
    return text.split()


def _elementwise(ctx: OpContext) -> Any:
    tensors = [
        ref for value in ctx.args.values() for ref in _tensor_refs(ctx, value) if ref is not None
    ]
    out = ctx.shape
    refs = [r for r in tensors if len(r.shape) <= len(out)]
    if not refs:
        return ctx.same(None)
    if len(refs) == 1 and refs[0].shape == out:
        if refs[0].scores is not None:
            return ctx.same(_masked(ctx, refs[0]))
        return ctx.same(refs[0])
    return ctx.same(ctx.builder.elementwise(ctx.name, _short(ctx.op), out, refs))


def _masked(ctx: OpContext, scores: TensorRef) -> TensorRef:
    """Attention scores after a mask: pairs with an additive mask below -50, or removed
    by ``masked_fill``, are dead (their softmax weight is below e^-50)."""
    from ..attention import DEAD_BELOW, mask_scores

    torch = require_torch()
    name = _short(ctx.op)
    if name == "masked_fill":
        mask, value = ctx.args.get("mask"), ctx.args.get("value")
        if isinstance(value, torch.Tensor):
            value = value.item() if value.numel() == 1 and not value.is_meta else None
        if (
            isinstance(mask, torch.Tensor)
            and not mask.is_meta
            and value is not None
            and float(value) <= DEAD_BELOW
        ):
            return mask_scores(scores, ~mask.detach().cpu().bool().numpy())
        return scores
    if name in ("add", "sub"):
        other = ctx.args.get("other")
        if isinstance(other, torch.Tensor) and not other.is_meta and other.is_floating_point():
            values = other.detach().cpu().double().numpy()
            if name == "sub":
                values = -values
            if ctx.args.get("alpha", 1) not in (1, 1.0):
                return scores
            if (values <= DEAD_BELOW).any():
                return mask_scores(scores, values > DEAD_BELOW)
    return scores


def _tensor_refs(ctx: OpContext, value: Any) -> list[TensorRef | None]:
    torch = require_torch()
    if isinstance(value, torch.Tensor):
        return [ctx.ref(value)]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in _tensor_refs(ctx, v)]
    return []


def _short(op: Any) -> str:
    """``add`` for ``aten.add_.Tensor``: the op's name, in-place or not."""
    name = str(getattr(op, "__name__", op)).split(".")[0]
    return name.rstrip("_") or name


# -- layouts -----------------------------------------------------------------------------


def _view(ctx: OpContext) -> Any:
    x = ctx.need()
    return ctx.builder.reshape(x, ctx.shape)


def _squeeze(ctx: OpContext) -> Any:
    x = ctx.need()
    dim = ctx.arg("dim")
    if dim is None:
        dims = [d for d, n in enumerate(x.shape) if n == 1]
    else:
        dims = [int(d) for d in dim] if isinstance(dim, (list, tuple)) else [int(dim)]
    return ctx.builder.squeeze(x, dims)


def _permute(ctx: OpContext) -> Any:
    return ctx.builder.permute(ctx.need(), ctx.arg("dims"))


def _transpose(ctx: OpContext) -> Any:
    x = ctx.need()
    n = len(x.shape)
    order = list(range(n))
    if ctx.op.__name__.startswith("t."):
        if n == 2:
            order = [1, 0]
    else:
        i, j = int(ctx.arg("dim0")) % n, int(ctx.arg("dim1")) % n
        order[i], order[j] = order[j], order[i]
    return ctx.builder.permute(x, order)


def _expand(ctx: OpContext) -> Any:
    return ctx.builder.expand(ctx.need(), ctx.shape)


def _slice(ctx: OpContext) -> Any:
    x = ctx.need()
    d = int(ctx.arg("dim", 0)) % len(x.shape)
    n = x.shape[d]
    start, stop, step = slice(ctx.arg("start"), ctx.arg("end"), int(ctx.arg("step", 1))).indices(n)
    return ctx.builder.slice(x, d, start, stop, step, ctx.name, "slice")


def _select(ctx: OpContext) -> Any:
    x = ctx.need()
    return ctx.builder.select(x, int(ctx.arg("dim")), int(ctx.arg("index")), ctx.name)


def _narrow(ctx: OpContext) -> Any:
    x = ctx.need()
    d = int(ctx.arg("dim")) % len(x.shape)
    start = int(ctx.arg("start")) % max(1, x.shape[d])
    return ctx.builder.slice(x, d, start, start + int(ctx.arg("length")), 1, ctx.name)


def _split(ctx: OpContext) -> Any:
    x = ctx.need()
    d = int(ctx.arg("dim", 0)) % len(x.shape)
    out = []
    start = 0
    for piece in ctx.out:
        n = int(piece.shape[d]) if piece.dim() == len(x.shape) else 1
        if piece.dim() == len(x.shape):
            out.append(ctx.builder.slice(x, d, start, start + n, 1, ctx.name))
        else:  # unbind
            out.append(ctx.builder.select(x, d, start, ctx.name))
        start += n
    return tuple(out)


def _cat(ctx: OpContext) -> Any:
    b = ctx.builder
    tensors = ctx.arg("tensors")
    d = int(ctx.arg("dim", 0))
    refs = []
    for t in tensors:
        if t.numel() == 0 and t.dim() == 1:
            continue  # legacy empty tensors are skipped by cat
        ref = ctx.ref(t)
        refs.append(ref if ref is not None else b.constant(tuple(t.shape)))
    return b.concat(refs, d % len(ctx.shape), ctx.name, "cat")


def _stack(ctx: OpContext) -> Any:
    b = ctx.builder
    d = int(ctx.arg("dim", 0)) % len(ctx.shape)
    refs = []
    for t in ctx.arg("tensors"):
        ref = ctx.ref(t)
        shape = (*t.shape[:d], 1, *t.shape[d:])
        refs.append(b.reshape(ref, shape) if ref is not None else b.constant(shape))
    return b.concat(refs, d, ctx.name, "stack")


def _pad_constant(ctx: OpContext) -> Any:
    x = ctx.need()
    pads = [int(p) for p in ctx.arg("pad")]
    return ctx.builder.pad(x, _pairs(pads, len(x.shape)), PadMode.ZEROS, ctx.name)


def _pairs(pads: list[int], rank: int) -> list[tuple[int, int]]:
    """PyTorch's pad list (last dim first) as one (before, after) pair per dim."""
    out = [(0, 0)] * rank
    for i in range(len(pads) // 2):
        out[rank - 1 - i] = (pads[2 * i], pads[2 * i + 1])
    return out


def _pad_mode(mode: PadMode) -> Rule:
    def rule(ctx: OpContext) -> Any:
        x = ctx.need()
        pads = [int(p) for p in ctx.arg("padding")]
        return ctx.builder.pad(x, _pairs(pads, len(x.shape)), mode, ctx.name)

    return rule


def _roll(ctx: OpContext) -> Any:
    x = ctx.need()
    shifts = [int(s) for s in ctx.arg("shifts")]
    dims = [int(d) for d in ctx.arg("dims", [])]
    if not dims:
        raise Unsupported("roll of the flattened tensor")
    return ctx.builder.roll(x, shifts, dims, ctx.name)


def _flip(ctx: OpContext) -> Any:
    x = ctx.need()
    part = x.single
    dims = [int(d) % len(x.shape) for d in ctx.arg("dims")]
    if part is None or any(any(a >= 0 for a, _, _ in part.layout[d]) for d in dims):
        raise Unsupported("flip of a spatial dim")
    return x


# -- mixing: reductions, softmax, matrix products ----------------------------------------


def _reduction(ctx: OpContext) -> Any:
    x = ctx.need()
    rank = len(x.shape)
    dims = ctx.args.get("dim")
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        dims_list = list(range(rank))
    elif isinstance(dims, int):
        dims_list = [dims]
    else:
        dims_list = [int(d) for d in dims]
    keep = bool(ctx.arg("keepdim", False))
    out = ctx.builder.reduce(ctx.name, _short(ctx.op), x, dims_list, keep)
    if tuple(out.shape) != ctx.shape:
        out = ctx.builder.reshape(out, ctx.shape)
    if isinstance(ctx.out, (tuple, list)):
        return tuple(out for _ in ctx.out)
    return out


def _mix_dim(ctx: OpContext) -> Any:
    x = ctx.need()
    d = ctx.args.get("dim")
    if d is None:
        raise Unsupported(f"{_short(ctx.op)} without dim")
    out = ctx.builder.mix(ctx.name, _short(ctx.op), x, [int(d)])
    if isinstance(ctx.out, (tuple, list)):
        return tuple(out for _ in ctx.out)
    return out


def _topk(ctx: OpContext) -> Any:
    x = ctx.need()
    d = int(ctx.arg("dim", -1)) % len(x.shape)
    rel = tuple(Mix(k) if k == d else Same(k) for k in range(len(x.shape)))
    out = ctx.builder.apply(ctx.name, "topk", ctx.shape, [(x, rel)])
    return (out, out)


def _glu(ctx: OpContext) -> Any:
    x = ctx.need()
    d = int(ctx.arg("dim", -1)) % len(x.shape)
    if any(a >= 0 for p in x.parts for a, _, _ in p.layout[d]):
        raise Unsupported("glu along a spatial dim")
    n = x.shape[d] // 2
    b = ctx.builder
    return b.elementwise(ctx.name, "glu", ctx.shape, [b.slice(x, d, 0, n), b.slice(x, d, n, 2 * n)])


def _layer_norm(ctx: OpContext) -> Any:
    x = ctx.need("input")
    return (x, None, None)


def _norm_first(ctx: OpContext) -> Any:
    x = ctx.need("input")
    return tuple(x if i == 0 else None for i in range(len(ctx.out)))


#: The operands of the matrix products: (bias, a, b) argument names.
_MM_ARGS = {
    "mm": (None, "self", "mat2"),
    "bmm": (None, "self", "mat2"),
    "addmm": ("self", "mat1", "mat2"),
    "baddbmm": ("self", "batch1", "batch2"),
    "mv": (None, "self", "vec"),
    "addmv": ("self", "mat", "vec"),
    "dot": (None, "self", "tensor"),
}


def _mm(ctx: OpContext) -> Any:
    b = ctx.builder
    bias_name, a_name, b_name = _MM_ARGS[_short(ctx.op)]
    a_val, b_val = ctx.args[a_name], ctx.args[b_name]
    a, bb = ctx.ref(a_val), ctx.ref(b_val)
    shape = ctx.shape
    if a_val.dim() == 1:
        a = None if a is None else b.reshape(a, (1, a_val.shape[0]))
    if b_val.dim() == 1:
        bb = None if bb is None else b.reshape(bb, (b_val.shape[0], 1))
    inner = (
        *([] if a_val.dim() > 1 else [1]),
        *shape,
        *([] if b_val.dim() > 1 else [1]),
    )
    if a_val.dim() == 1 and b_val.dim() == 1:
        inner = (1, 1)
    out = b.matmul(ctx.name, _short(ctx.op), a, bb, inner)
    out = b.reshape(out, shape)
    if bias_name is not None:
        bias = ctx.ref(ctx.args[bias_name])
        if bias is not None:
            out = b.elementwise(ctx.name, "add", shape, [out, bias])
    return out


def _sdpa(ctx: OpContext) -> Any:
    """Attention as one op (fused kernels): every query reads every key and value."""
    b = ctx.builder
    from ..attention import DEAD_BELOW, mask_scores

    torch = require_torch()
    q, k, v = ctx.args["query"], ctx.args["key"], ctx.args["value"]
    qr, kr, vr = ctx.ref(q), ctx.ref(k), ctx.ref(v)
    scores_shape = (*q.shape[:-1], k.shape[-2])
    kt = b.permute(kr, (*range(k.dim() - 2), k.dim() - 1, k.dim() - 2)) if kr else None
    scores = b.matmul(ctx.name, "attention", qr, kt, scores_shape)
    mask = ctx.arg("attn_mask")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.is_meta or ctx.ref(mask) is not None:
            raise Unsupported("fused attention with a mask that is not a constant")
        values = mask.detach().cpu()
        alive = (
            values.numpy() if values.dtype == torch.bool else values.double().numpy() > DEAD_BELOW
        )
        scores = mask_scores(scores, alive)
    if ctx.arg("is_causal", False):
        n, m = scores_shape[-2], scores_shape[-1]
        scores = mask_scores(scores, np.tril(np.ones((n, m), dtype=bool)))
    scores = b.mix(ctx.name, "softmax", scores, [-1])
    out = b.matmul(ctx.name, "attention", scores, vr, ctx.shape)
    return tuple(out if i == 0 else None for i in range(len(ctx.out)))


def _index(ctx: OpContext) -> Any:
    """Advanced indexing with constant index tensors on non-spatial dims."""
    torch = require_torch()
    x = ctx.need()
    indices = ctx.arg("indices")
    part = x.single
    if part is None:
        raise Unsupported("indexing a concatenation")
    if any(i is not None and ctx.ref(i) is not None for i in indices):
        raise Unsupported("indexing with indices that depend on the input")
    used = [d for d, i in enumerate(indices) if i is not None]
    if any(any(a >= 0 for a, _, _ in part.layout[d]) for d in used):
        raise Unsupported("advanced indexing of a spatial dim")
    # the indexed dims become the index shape, placed first or in place (NumPy rules)
    tensors = [indices[d] for d in used]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise Unsupported("indexing")
    rest = [d for d in range(len(x.shape)) if d not in used]
    keep = {}
    for d in rest:
        keep[d] = part.layout[d]
    out = ctx.shape
    # find the output dims of the kept input dims: they keep their order and sizes
    contiguous = used == list(range(used[0], used[-1] + 1))
    index_rank = len(out) - len(rest)
    if contiguous:
        order = rest[: used[0]] + [-1] * index_rank + rest[used[0] :]
    else:
        order = [-1] * index_rank + rest
    rel: list[Relation] = [Reduce()] * len(x.shape)
    for o, d in enumerate(order):
        if d >= 0:
            rel[d] = Same(o)
    return ctx.builder.apply(ctx.name, "index", out, [(x, tuple(rel))])


def _index_select(ctx: OpContext) -> Any:
    x = ctx.need()
    d = int(ctx.arg("dim")) % len(x.shape)
    if ctx.ref(ctx.args["index"]) is not None:
        raise Unsupported("index_select with indices that depend on the input")
    if any(a >= 0 for p in x.parts for a, _, _ in p.layout[d]):
        raise Unsupported("index_select of a spatial dim")
    rel = tuple(Mix(k) if k == d else Same(k) for k in range(len(x.shape)))
    return ctx.builder.apply(ctx.name, "index_select", ctx.shape, [(x, rel)])


def _copy(ctx: OpContext) -> Any:
    """``copy_(self, src)``: self now holds src (broadcast)."""
    src = ctx.ref(ctx.args.get("src", ctx.args.get("other")))
    if src is None:
        return None
    return ctx.builder.expand(src, ctx.shape)


def _as_strided(ctx: OpContext) -> Any:
    """``as_strided``: only the restriding of a tensor to its own shape (memory format)."""
    x = ctx.need()
    if tuple(int(n) for n in ctx.arg("size")) != tuple(x.shape) or ctx.arg("storage_offset", 0):
        raise Unsupported("as_strided to another shape")
    return x


def _constant(ctx: OpContext) -> Any:
    return ctx.same(None)


def _repeat(ctx: OpContext) -> Any:
    x = ctx.need()
    part = x.single
    repeats = [int(r) for r in ctx.arg("repeats")]
    lead = len(repeats) - len(x.shape)
    if part is None or any(
        r != 1 and any(a >= 0 for a, _, _ in part.layout[d - lead])
        for d, r in enumerate(repeats)
        if d >= lead
    ):
        raise Unsupported("repeat along a spatial dim")
    y = ctx.builder.reshape(x, (1,) * lead + x.shape)
    # tiling non-spatial dims: every copy reads the same positions
    rel = tuple(Mix(d) if r != 1 else Same(d) for d, r in enumerate(repeats))
    return ctx.builder.apply(ctx.name, "repeat", ctx.shape, [(y, rel)])


# -- registration ------------------------------------------------------------------------


@functools.cache
def install() -> None:
    """Register the built-in rules (once, when the PyTorch frontend is first used)."""
    torch = require_torch()
    aten = torch.ops.aten

    def ops(names: list[str]) -> list[Any]:
        found = []
        for name in names:
            op = getattr(aten, name, None)
            if op is not None:
                found.append(op)
            inplace = getattr(aten, name + "_", None)
            if inplace is not None:
                found.append(inplace)
        return found

    register_rule(*ops(_words(_UNARY) + _words(_BINARY)))(_elementwise)
    register_rule(
        *ops(
            _words(
                "view _unsafe_view reshape _reshape_alias view_copy unsqueeze "
                "flatten unflatten unsqueeze_copy"
            )
        )
    )(_view)
    register_rule(aten.squeeze, aten.squeeze_copy)(_squeeze)
    register_rule(aten.permute)(_permute)
    register_rule(aten.transpose, aten.t, aten.swapaxes, aten.swapdims)(_transpose)
    register_rule(aten.expand, aten.expand_as, aten.broadcast_to)(_expand)
    register_rule(aten.slice)(_slice)
    register_rule(aten.select)(_select)
    register_rule(aten.narrow)(_narrow)
    register_rule(aten.split, aten.split_with_sizes, aten.unbind, aten.chunk, aten.tensor_split)(
        _split
    )
    register_rule(aten.cat, aten.concat)(_cat)
    register_rule(aten.stack)(_stack)
    register_rule(aten.constant_pad_nd)(_pad_constant)
    for n in (1, 2, 3):
        register_rule(getattr(aten, f"reflection_pad{n}d"))(_pad_mode(PadMode.REFLECT))
        register_rule(getattr(aten, f"replication_pad{n}d"))(_pad_mode(PadMode.REPLICATE))
        register_rule(
            getattr(aten, f"max_pool{n}d_with_indices", getattr(aten, f"max_pool{n}d", None))
        )(_pool(f"max_pool{n}"))
        register_rule(getattr(aten, f"avg_pool{n}d"))(_pool(f"avg_pool{n}"))
        register_rule(getattr(aten, f"upsample_nearest{n}d"))(_upsample("nearest"))
        register_rule(getattr(aten, f"_upsample_nearest_exact{n}d"))(_upsample("nearest-exact"))
    for name, nd in (("max_pool1d", 1), ("max_pool2d", 2), ("max_pool3d", 3)):
        register_rule(getattr(aten, name))(_pool(f"max_pool{nd}"))
    register_rule(aten._pad_circular)(_pad_mode(PadMode.CIRCULAR))
    register_rule(aten.upsample_linear1d, aten.upsample_bilinear2d, aten.upsample_trilinear3d)(
        _upsample("linear")
    )
    register_rule(aten.upsample_bicubic2d)(_upsample("bicubic"))
    register_rule(
        aten._adaptive_avg_pool2d,
        aten._adaptive_avg_pool3d,
        aten.adaptive_avg_pool1d,
        aten.adaptive_max_pool1d,
        aten.adaptive_max_pool2d,
        aten.adaptive_max_pool3d,
        aten.adaptive_avg_pool2d,
        aten.adaptive_avg_pool3d,
    )(_adaptive)
    register_rule(aten.convolution, aten._convolution)(_convolution)
    register_rule(aten.roll)(_roll)
    register_rule(aten.flip)(_flip)
    register_rule(aten.pixel_shuffle)(_pixel_shuffle(True))
    register_rule(aten.pixel_unshuffle)(_pixel_shuffle(False))
    register_rule(aten.im2col)(_im2col)
    register_rule(aten.col2im)(_col2im)
    register_rule(aten.unfold)(_unfold)
    register_rule(
        *ops(
            _words(
                "sum mean amax amin prod std var var_mean std_mean logsumexp norm "
                "linalg_vector_norm nansum nanmean all any argmax argmin count_nonzero "
                "median nanmedian aminmax"
            )
        )
    )(_reduction)
    register_rule(aten.max.dim, aten.min.dim, aten.max.default, aten.min.default)(_reduction)
    register_rule(aten.max.other, aten.min.other)(_elementwise)
    register_rule(
        *ops(
            _words(
                "_softmax _log_softmax _safe_softmax softmax log_softmax cumsum cumprod "
                "logcumsumexp cummax cummin sort argsort"
            )
        )
    )(_mix_dim)
    register_rule(aten.topk)(_topk)
    register_rule(aten.glu)(_glu)
    register_rule(aten.native_layer_norm)(_layer_norm)
    register_rule(
        *ops(
            _words(
                "native_batch_norm _native_batch_norm_legit_no_training "
                "_native_batch_norm_legit native_group_norm _fused_rms_norm"
            )
        )
    )(_norm_first)
    register_rule(aten.mm, aten.bmm, aten.addmm, aten.baddbmm, aten.mv, aten.addmv, aten.dot)(_mm)
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
    ):
        op = getattr(aten, name, None)
        if op is not None:
            register_rule(op)(_sdpa)
    register_rule(aten.index, aten._unsafe_index)(_index)
    register_rule(aten.index_select)(_index_select)
    register_rule(aten.repeat)(_repeat)
    register_rule(aten.copy_, aten.copy)(_copy)
    register_rule(aten._local_scalar_dense, aten.is_nonzero, aten.equal)(_constant)
    register_rule(aten.as_strided, aten.as_strided_)(_as_strided)
    register_rule(*ops(_words("fill zero bernoulli")))(_constant)
    register_rule(
        *ops(
            _words(
                "zeros_like ones_like empty_like full_like rand_like randn_like randint_like "
                "new_zeros new_ones new_empty new_full new_empty_strided sym_size sym_numel "
                "sym_stride _shape_as_tensor empty_strided"
            )
        )
    )(_constant)
    _install_module_rules()


def _install_module_rules() -> None:
    torch = require_torch()
    nn = torch.nn

    @register_module_rule(nn.RNNBase)
    def recurrence(ctx: OpContext, module: Any, x: Any, *rest: Any) -> Any:
        """A recurrence reads its whole time axis (either direction, the whole output)."""
        ref = ctx.ref(x)
        if ref is None:
            raise Unsupported("a recurrence whose input does not depend on the model input")
        time_dim = 1 if module.batch_first and x.dim() == 3 else 0
        size = module.hidden_size * (2 if module.bidirectional else 1)
        proj = getattr(module, "proj_size", 0) or 0
        if proj:
            size = proj * (2 if module.bidirectional else 1)
        shape = (*x.shape[:-1], size)
        n = x.shape[time_dim]
        if module.bidirectional:
            out = ctx.whole(ref, [time_dim], shape)
        else:
            # step t reads steps 0..t: a causal window as long as the sequence
            rel: list[Relation] = [Same(d) for d in range(len(shape))]
            rel[time_dim] = Slide(time_dim, Conv(n, 1, 1, -(n - 1)))
            rel[-1] = Mix(len(shape) - 1)
            out = ctx.builder.apply(ctx.name, type(module).__name__, shape, [(ref, tuple(rel))])
        layers = module.num_layers * (2 if module.bidirectional else 1)
        batch = x.shape[1 - time_dim] if x.dim() == 3 else None
        hidden_shape = (
            (layers, batch, proj or module.hidden_size)
            if batch
            else (
                layers,
                proj or module.hidden_size,
            )
        )
        hidden = ctx.builder.reduce(ctx.name, "hidden", out, [time_dim])
        hidden = _to_shape(ctx.builder, hidden, hidden_shape)
        if isinstance(module, nn.LSTM):
            cell_shape = (*hidden_shape[:-1], module.hidden_size)
            return out, (hidden, _to_shape(ctx.builder, hidden, cell_shape))
        return out, hidden


def _to_shape(b: GraphBuilder, ref: TensorRef, shape: tuple[int, ...]) -> TensorRef:
    """A tensor of ``shape`` whose every element reads all that ``ref`` reads."""
    flat = b.reduce("state", "state", ref, range(len(ref.shape)))
    return b.expand(b.reshape(flat, (1,) * len(shape)), shape)
