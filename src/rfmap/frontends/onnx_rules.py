"""ONNX operators as operations of the tensor algebra: the rule registry (numpy only).

Every ONNX operator that rfmap derives has one small rule, registered with
:func:`register_onnx_rule` under its ``(domain, op_type)``.  A rule receives an
:class:`OnnxContext` (the node's attributes, its inputs and the
:class:`~rfmap.builder.GraphBuilder`) and returns one value per node output: a
:class:`~rfmap.builder.TensorRef` for a tensor that depends on the model input, a numpy
array for a constant (``Shape`` of a feature map), or None for an output it does not
produce.  A rule raises :class:`~rfmap.builder.Unsupported` for a case it cannot
express; the operator is then measured with onnxruntime (see
:mod:`rfmap.frontends.onnx_measure`), like an operator without a rule.

Rules only ever see nodes with at least one input that depends on the model input;
nodes of constants alone are folded with numpy by the driver
(:mod:`rfmap.frontends.onnx`).  Rules for spatial operators (convolutions, pools,
padding, resizing) are in :mod:`rfmap.frontends.onnx_spatial`.

>>> from rfmap.builder import GraphBuilder
>>> b = GraphBuilder(1)
>>> x = b.input("x", (1, 2, 8), (2,))
>>> ctx = OnnxContext(b, "Relu", "", "relu", 17, {}, [x], 1)
>>> rule_for("Relu")(ctx)[0] == x  # element-wise: the same positions, no node
True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from ..builder import GraphBuilder, Mix, Reduce, Relation, Same, Slide, TensorRef, Unsupported
from ..errors import ModelError
from ..windows import Conv, Table

__all__ = [
    "OnnxContext",
    "OnnxRule",
    "Opaque",
    "Value",
    "register_onnx_rule",
    "registered_onnx_ops",
    "rule_for",
]

#: The largest constant (in elements) a rule reads as numbers (shapes, pads, scales...).
MAX_PARAMETER_ELEMENTS = 1 << 16


@dataclass(frozen=True)
class Opaque:
    """A tensor that does not depend on the model input and whose values rfmap has not
    read: a large initializer (``load`` reads it on demand), a tensor in external data,
    or the result of an operation that was not folded.  ``shape`` is None if unknown."""

    shape: tuple[int, ...] | None
    why: str = ""
    load: Callable[[], np.ndarray] | None = field(default=None, compare=False, repr=False)


#: What a tensor is while a graph is traced (None: an optional input left out).
Value = Union[TensorRef, np.ndarray, Opaque, None]  # noqa: UP007 (runtime alias on 3.10)


@dataclass
class OnnxContext:
    """What a rule knows of one ONNX node.

    ``inputs[i]`` is the value of the node's ``i``-th input, ``attrs`` its attributes as
    Python values (ints, floats, str, lists, numpy arrays for tensors), ``opset`` the
    version of the node's domain, ``name`` the name its graph nodes get.
    """

    builder: GraphBuilder
    op: str
    domain: str
    name: str
    opset: int
    attrs: dict[str, Any]
    inputs: list[Value]
    n_outputs: int

    # -- inputs ---------------------------------------------------------------------------
    def ref(self, i: int) -> TensorRef | None:
        """Input ``i`` if it depends on the model input, else None."""
        value = self.inputs[i] if i < len(self.inputs) else None
        return value if isinstance(value, TensorRef) else None

    def tensor(self, i: int) -> TensorRef:
        """Input ``i`` as a :class:`TensorRef` (a constant one if it does not depend on
        the model input)."""
        value = self.inputs[i] if i < len(self.inputs) else None
        if isinstance(value, TensorRef):
            return value
        return self.builder.constant(self.shape(i))

    def present(self, i: int) -> bool:
        """Whether the node has input ``i`` (optional inputs may be left out)."""
        return i < len(self.inputs) and self.inputs[i] is not None

    def shape(self, i: int) -> tuple[int, ...]:
        """The shape of input ``i``."""
        value = self.inputs[i] if i < len(self.inputs) else None
        if isinstance(value, TensorRef):
            return value.shape
        if isinstance(value, np.ndarray):
            return tuple(int(n) for n in value.shape)
        if isinstance(value, Opaque) and value.shape is not None:
            return value.shape
        raise Unsupported(f"the shape of input {i} of {self.op} is unknown")

    def const(self, i: int) -> np.ndarray | None:
        """The values of constant input ``i`` (None if it is left out).

        Raises :class:`Unsupported` when they are computed from the model input or not
        known (external data, an operation rfmap did not fold).
        """
        value = self.inputs[i] if i < len(self.inputs) else None
        if value is None:
            return None
        if isinstance(value, np.ndarray):
            return value
        if isinstance(value, Opaque):
            small = value.shape is not None and math.prod(value.shape) <= MAX_PARAMETER_ELEMENTS
            if value.load is not None and small:
                return value.load()
            why = f" ({value.why})" if value.why else ""
            raise Unsupported(f"input {i} of {self.op} is a constant rfmap cannot read{why}")
        raise Unsupported(f"input {i} of {self.op} depends on the model input")

    def ints(self, i: int) -> list[int] | None:
        """Constant input ``i`` as a list of Python ints (None if left out)."""
        value = self.const(i)
        if value is None:
            return None
        if value.dtype.kind not in "iub":
            raise ModelError(f"{self.label}: input {i} must hold integers, got {value.dtype}")
        return [int(v) for v in value.reshape(-1)]

    def floats(self, i: int) -> list[float] | None:
        """Constant input ``i`` as a list of Python floats (None if left out)."""
        value = self.const(i)
        if value is None:
            return None
        return [float(v) for v in value.reshape(-1)]

    # -- attributes -------------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        """Attribute ``name`` (``default`` if absent)."""
        return self.attrs.get(name, default)

    def int_attr(self, name: str, default: int) -> int:
        """An integer attribute."""
        value = self.attrs.get(name, default)
        if isinstance(value, (bool, np.integer)):
            value = int(value)
        if not isinstance(value, int):
            raise ModelError(f"{self.label}: attribute {name!r} must be an integer, got {value!r}")
        return value

    def ints_attr(self, name: str, default: Sequence[int] | None = None) -> list[int] | None:
        """A list-of-integers attribute (``default`` if absent)."""
        if name not in self.attrs:
            return None if default is None else list(default)
        value = self.attrs[name]
        if isinstance(value, (int, np.integer)):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, (int, np.integer)) for v in value
        ):
            raise ModelError(f"{self.label}: attribute {name!r} must be integers, got {value!r}")
        return [int(v) for v in value]

    def str_attr(self, name: str, default: str) -> str:
        """A string attribute."""
        value = self.attrs.get(name, default)
        if not isinstance(value, str):
            raise ModelError(f"{self.label}: attribute {name!r} must be a string, got {value!r}")
        return value

    @property
    def label(self) -> str:
        """``node 'name' (Op)``, for messages."""
        return f"node {self.name!r} ({self.op})"

    def axis(self, axis: int, rank: int) -> int:
        """``axis`` (possibly negative) as a dim index of a tensor of ``rank`` dims."""
        if not -rank <= axis < max(rank, 1):
            raise ModelError(f"{self.label}: axis {axis} is out of range for {rank} dims")
        return axis % max(rank, 1)


#: A rule: the values of the node's outputs.
OnnxRule = Callable[[OnnxContext], Sequence[Value]]

_RULES: dict[tuple[str, str], OnnxRule] = {}


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register_onnx_rule(*op_types: str, domain: str = "") -> Callable[[OnnxRule], OnnxRule]:
    """Register a rule for ONNX operators ``op_types`` of ``domain`` ("" is ai.onnx).

    The rule replaces any earlier rule for those operators.  It returns one value per
    node output (see the module docstring).

    >>> from rfmap.builder import GraphBuilder
    >>> @register_onnx_rule("MyGelu", domain="my.domain")
    ... def _my_gelu(ctx):
    ...     return [ctx.tensor(0)]
    >>> rule_for("MyGelu", "my.domain") is _my_gelu
    True
    """

    def decorate(rule: OnnxRule) -> OnnxRule:
        for op in op_types:
            _RULES[(_domain(domain), op)] = rule
        return rule

    return decorate


def rule_for(op_type: str, domain: str = "") -> OnnxRule | None:
    """The rule registered for an operator, if any."""
    return _RULES.get((_domain(domain), op_type))


def registered_onnx_ops() -> list[tuple[str, str]]:
    """Every ``(domain, op_type)`` with a rule, sorted."""
    return sorted(_RULES)


def _words(text: str) -> list[str]:
    return text.split()


# -- element-wise -----------------------------------------------------------------------

ELEMENTWISE = _words(
    """
    Abs Acos Acosh Add And Asin Asinh Atan Atanh BitShift BitwiseAnd BitwiseNot BitwiseOr
    BitwiseXor Ceil Celu Clip Cos Cosh Div Elu Equal Erf Exp Floor Gelu Greater
    GreaterOrEqual HardSigmoid HardSwish IsInf IsNaN LeakyRelu Less
    LessOrEqual Log Max Mean Min Mish Mod Mul Neg Not Or PRelu Pow Reciprocal Relu Round
    Selu Shrink Sigmoid Sign Sin Sinh Softplus Softsign Sqrt Sub Sum Tan Tanh
    ThresholdedRelu Where Xor
    """
)


@register_onnx_rule(*ELEMENTWISE)
def _elementwise(ctx: OnnxContext) -> list[Value]:
    """Broadcasting element-wise operators (NumPy rules)."""
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs)) if ctx.present(i)]
    try:
        shape = tuple(int(n) for n in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ModelError(f"{ctx.label}: inputs of shapes {shapes} do not broadcast") from None
    refs = [r for i in range(len(ctx.inputs)) if (r := ctx.ref(i)) is not None]
    if len(refs) == 1 and refs[0].shape == shape:
        return [refs[0]]  # a unary op, or a constant operand: the same positions
    return [ctx.builder.elementwise(ctx.name, ctx.op, shape, refs)]


#: Operators whose first input is read element for element and whose other inputs are
#: parameters (constants that broadcast along a channel axis, not NumPy-style).
FIRST_INPUT = _words(
    """
    Identity Dropout Cast CastLike BatchNormalization DequantizeLinear QuantizeLinear
    DynamicQuantizeLinear Optional OptionalGetElement
    """
)


def _first_only(
    ctx: OnnxContext, reason: str = "with parameters that depend on the model input"
) -> TensorRef:
    """The first input, which must depend on the model input while the others do not."""
    x = ctx.ref(0)
    if x is None or any(ctx.ref(i) is not None for i in range(1, len(ctx.inputs))):
        raise Unsupported(f"{ctx.op} {reason}")
    return x


@register_onnx_rule(*FIRST_INPUT)
def _first_input(ctx: OnnxContext) -> list[Value]:
    """Element-wise in the first input; the other inputs must not depend on the model."""
    x = _first_only(ctx)
    if ctx.op == "BatchNormalization" and ctx.int_attr("training_mode", 0):
        raise Unsupported("BatchNormalization in training mode")
    return [x] * ctx.n_outputs


# -- layout -----------------------------------------------------------------------------


def _data(ctx: OnnxContext) -> TensorRef:
    return _first_only(ctx, "whose shape parameters depend on the model input")


@register_onnx_rule("Reshape")
def _reshape(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    target = ctx.ints_attr("shape", []) if ctx.opset < 5 else ctx.ints(1)
    if target is None:
        raise ModelError(f"{ctx.label}: no target shape")
    allow_zero = ctx.int_attr("allowzero", 0)
    shape = _reshape_target(ctx, x.shape, target, bool(allow_zero))
    return [ctx.builder.reshape(x, shape)]


def _reshape_target(
    ctx: OnnxContext, shape: tuple[int, ...], target: Sequence[int], allow_zero: bool
) -> tuple[int, ...]:
    out = []
    for d, n in enumerate(target):
        if n == 0 and not allow_zero:
            if d >= len(shape):
                raise ModelError(f"{ctx.label}: target dim {d} copies a dim that does not exist")
            out.append(shape[d])
        else:
            out.append(n)
    if out.count(-1) > 1 or any(n < -1 for n in out):
        raise ModelError(f"{ctx.label}: invalid target shape {list(target)}")
    total = math.prod(shape)
    if -1 in out:
        known = math.prod(n for n in out if n != -1)
        if known == 0 or total % known:
            raise ModelError(f"{ctx.label}: cannot reshape {list(shape)} to {list(target)}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise ModelError(f"{ctx.label}: cannot reshape {list(shape)} to {list(target)}")
    return tuple(out)


@register_onnx_rule("Flatten")
def _flatten(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    rank = len(x.shape)
    axis = ctx.int_attr("axis", 1)
    if not -rank <= axis <= rank:
        raise ModelError(f"{ctx.label}: axis {axis} is out of range for {rank} dims")
    axis %= rank + 1
    shape = (math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
    return [ctx.builder.reshape(x, shape)]


def _need_first(ctx: OnnxContext) -> TensorRef:
    x = ctx.ref(0)
    if x is None:
        raise Unsupported(f"{ctx.op} whose data is a constant but a parameter is not")
    return x


def _axes(ctx: OnnxContext, index: int) -> list[int] | None:
    """Axes from an attribute (older opsets) or an input."""
    if "axes" in ctx.attrs:
        return ctx.ints_attr("axes")
    if ctx.present(index):
        return ctx.ints(index)
    return None


@register_onnx_rule("Squeeze")
def _squeeze(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    axes = _axes(ctx, 1)
    rank = len(x.shape)
    if axes is None:
        drop = {d for d, n in enumerate(x.shape) if n == 1}
    else:
        drop = {ctx.axis(a, rank) for a in axes}
        if any(x.shape[d] != 1 for d in drop):
            raise ModelError(f"{ctx.label}: cannot squeeze dims {sorted(drop)} of {list(x.shape)}")
    shape = tuple(n for d, n in enumerate(x.shape) if d not in drop)
    return [ctx.builder.reshape(x, shape)]


@register_onnx_rule("Unsqueeze")
def _unsqueeze(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    axes = _axes(ctx, 1)
    if axes is None:
        raise ModelError(f"{ctx.label}: no axes")
    rank = len(x.shape) + len(axes)
    new = {ctx.axis(a, rank) for a in axes}
    if len(new) != len(axes):
        raise ModelError(f"{ctx.label}: repeated axes {axes}")
    dims = iter(x.shape)
    shape = tuple(1 if d in new else next(dims) for d in range(rank))
    return [ctx.builder.reshape(x, shape)]


@register_onnx_rule("Transpose")
def _transpose(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    rank = len(x.shape)
    perm = ctx.ints_attr("perm", list(reversed(range(rank))))
    assert perm is not None
    if sorted(p % max(rank, 1) for p in perm) != list(range(rank)):
        raise ModelError(f"{ctx.label}: perm {perm} is not a permutation of {rank} dims")
    return [ctx.builder.permute(x, perm)]


@register_onnx_rule("Expand")
def _expand(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    target = ctx.ints(1)
    if target is None:
        raise ModelError(f"{ctx.label}: no shape")
    try:
        shape = tuple(int(n) for n in np.broadcast_shapes(x.shape, tuple(target)))
    except ValueError:
        raise ModelError(f"{ctx.label}: cannot expand {list(x.shape)} to {target}") from None
    if len(shape) > len(x.shape):
        x = ctx.builder.reshape(x, (1,) * (len(shape) - len(x.shape)) + x.shape)
    return [ctx.builder.expand(x, shape)]


@register_onnx_rule("Tile")
def _tile(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    repeats = ctx.ints(1)
    if repeats is None or len(repeats) != len(x.shape) or min(repeats, default=1) < 0:
        raise ModelError(f"{ctx.label}: repeats {repeats} for {len(x.shape)} dims")
    shape = tuple(n * r for n, r in zip(x.shape, repeats, strict=True))
    rel: list[Relation] = []
    for d, r in enumerate(repeats):
        if r == 1:
            rel.append(Same(d))
        elif _carries_positions(x, d):
            rel.append(Slide(d, Conv(1, 1, 1, 0, _circular())))
        else:
            rel.append(Mix(d))
    return [ctx.builder.apply(ctx.name, ctx.op, shape, [(x, tuple(rel))])]


def _circular() -> Any:
    from ..windows import PadMode

    return PadMode.CIRCULAR


def _carries_positions(x: TensorRef, d: int) -> bool:
    return any(atom[0] >= 0 for p in x.parts for atom in p.layout[d])


def _slice_bounds(start: int, end: int, step: int, n: int) -> tuple[int, int, int]:
    """ONNX (and Python) slice clamping: ``range(*result)`` are the indices read."""
    if step == 0:
        raise ValueError("step 0")
    return slice(start, end, step).indices(n)


@register_onnx_rule("Slice")
def _slice(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    rank = len(x.shape)
    steps: list[int] | None
    if ctx.opset < 10:
        starts = ctx.ints_attr("starts", [])
        ends = ctx.ints_attr("ends", [])
        axes = ctx.ints_attr("axes", list(range(len(starts or []))))
        steps = [1] * len(starts or [])
    else:
        starts, ends = ctx.ints(1), ctx.ints(2)
        axes = ctx.ints(3) if ctx.present(3) else None
        steps = ctx.ints(4) if ctx.present(4) else None
        if starts is None or ends is None:
            raise ModelError(f"{ctx.label}: starts and ends are required")
        if axes is None:
            axes = list(range(len(starts)))
        if steps is None:
            steps = [1] * len(starts)
    assert starts is not None and ends is not None and axes is not None
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ModelError(f"{ctx.label}: starts, ends, axes and steps differ in length")
    out = x
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        d = ctx.axis(axis, rank)
        if step == 0:
            raise ModelError(f"{ctx.label}: step 0")
        a, b, s = _slice_bounds(start, end, step, x.shape[d])
        if s > 0:
            out = ctx.builder.slice(out, d, a, b, s, ctx.name, ctx.op)
            continue
        indices = list(range(a, b, s))
        out = _take(ctx, out, d, indices)
    return [out]


def _take(ctx: OnnxContext, x: TensorRef, d: int, indices: Sequence[int]) -> TensorRef:
    """``x`` indexed by a list of indices along dim ``d``."""
    n = len(indices)
    steps = [b - a for a, b in itertools.pairwise(indices)]
    if n and all(step == steps[0] > 0 for step in steps):
        step = indices[1] - indices[0] if n > 1 else 1
        return ctx.builder.slice(x, d, indices[0], indices[-1] + 1, step, ctx.name, ctx.op)
    shape = list(x.shape)
    shape[d] = n
    if not _carries_positions(x, d):
        rel = tuple(Mix(d) if k == d else Same(k) for k in range(len(shape)))
        return ctx.builder.apply(ctx.name, ctx.op, shape, [(x, rel)])
    if any(step < 0 for step in steps):
        raise Unsupported(f"{ctx.op} that reorders positions")
    table = Table(tuple((int(i),) for i in indices))
    slid = tuple(Slide(d, table) if k == d else Same(k) for k in range(len(shape)))
    return ctx.builder.apply(ctx.name, ctx.op, shape, [(x, slid)])


@register_onnx_rule("Concat")
def _concat(ctx: OnnxContext) -> list[Value]:
    parts = [ctx.tensor(i) for i in range(len(ctx.inputs)) if ctx.present(i)]
    rank = len(parts[0].shape)
    axis = ctx.axis(ctx.int_attr("axis", 1 if ctx.opset < 4 else 0), rank)
    for p in parts:
        if len(p.shape) != rank or any(
            p.shape[k] != parts[0].shape[k] for k in range(rank) if k != axis
        ):
            raise ModelError(f"{ctx.label}: inputs of shapes {[list(q.shape) for q in parts]}")
    return [ctx.builder.concat(parts, axis, ctx.name, ctx.op)]


@register_onnx_rule("Split")
def _split(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    rank = len(x.shape)
    axis = ctx.axis(ctx.int_attr("axis", 0), rank)
    n = x.shape[axis]
    if "split" in ctx.attrs:
        sizes = ctx.ints_attr("split")
    elif ctx.present(1):
        sizes = ctx.ints(1)
    else:
        count = ctx.int_attr("num_outputs", ctx.n_outputs)
        if count < 1:
            raise ModelError(f"{ctx.label}: num_outputs {count}")
        chunk = -(-n // count)
        sizes = [min(chunk, max(0, n - k * chunk)) for k in range(count)]
    assert sizes is not None
    if sum(sizes) != n or min(sizes, default=0) < 0:
        raise ModelError(f"{ctx.label}: split sizes {sizes} do not add up to {n}")
    out: list[Value] = []
    start = 0
    for size in sizes:
        out.append(ctx.builder.slice(x, axis, start, start + size, 1, ctx.name, ctx.op))
        start += size
    return out


@register_onnx_rule("Gather")
def _gather(ctx: OnnxContext) -> list[Value]:
    rank = len(ctx.shape(0))
    axis = ctx.axis(ctx.int_attr("axis", 0), rank)
    data, indices = ctx.ref(0), ctx.ref(1)
    if indices is not None:
        if data is not None:
            raise Unsupported("Gather of model-dependent data at model-dependent indices")
        # a lookup table (embedding): each output element reads its index
        shape = ctx.shape(0)
        out = shape[:axis] + indices.shape + shape[axis + 1 :]
        rel = tuple(Same(axis + k) for k in range(len(indices.shape)))
        return [ctx.builder.apply(ctx.name, ctx.op, out, [(indices, rel)])]
    assert data is not None
    index = ctx.const(1)
    assert index is not None
    if index.dtype.kind not in "iu":
        raise ModelError(f"{ctx.label}: indices must be integers")
    n = data.shape[axis]
    flat = [int(i) for i in index.reshape(-1)]
    if any(not -n <= i < n for i in flat):
        raise ModelError(f"{ctx.label}: an index is out of range for a dim of size {n}")
    flat = [i % n for i in flat]
    if index.ndim == 0:
        return [ctx.builder.select(data, axis, flat[0], ctx.name, ctx.op)]
    taken = _take(ctx, data, axis, flat)
    shape = data.shape[:axis] + tuple(index.shape) + data.shape[axis + 1 :]
    return [ctx.builder.reshape(taken, shape)]


@register_onnx_rule("Shape")
def _shape(ctx: OnnxContext) -> list[Value]:
    shape = ctx.shape(0)
    start = ctx.int_attr("start", 0)
    end = ctx.int_attr("end", len(shape))
    return [np.array(shape[slice(start, end)], dtype=np.int64)]


@register_onnx_rule("Size")
def _size(ctx: OnnxContext) -> list[Value]:
    return [np.array(math.prod(ctx.shape(0)), dtype=np.int64)]


@register_onnx_rule("ConstantOfShape", "EyeLike")
def _constant_like(ctx: OnnxContext) -> list[Value]:
    raise Unsupported(f"{ctx.op} of a shape that depends on the model input")


# -- reductions and mixing ----------------------------------------------------------------

REDUCTIONS = _words(
    """
    ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceSumSquare
    """
)


@register_onnx_rule(*REDUCTIONS)
def _reduce(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    rank = len(x.shape)
    axes = _axes(ctx, 1)
    if not axes:
        if ctx.int_attr("noop_with_empty_axes", 0):
            return [x]
        axes = list(range(rank))
    dims = {ctx.axis(a, rank) for a in axes}
    keep = bool(ctx.int_attr("keepdims", 1))
    return [ctx.builder.reduce(ctx.name, ctx.op, x, sorted(dims), keepdim=keep)]


@register_onnx_rule("ArgMax", "ArgMin")
def _arg_reduce(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    rank = len(x.shape)
    axis = ctx.axis(ctx.int_attr("axis", 0), rank)
    keep = bool(ctx.int_attr("keepdims", 1))
    return [ctx.builder.reduce(ctx.name, ctx.op, x, [axis], keepdim=keep)]


@register_onnx_rule("Softmax", "LogSoftmax", "Hardmax")
def _softmax(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    rank = len(x.shape)
    if ctx.opset < 13:  # the input is coerced to 2D at ``axis``
        axis = ctx.axis(ctx.int_attr("axis", 1), rank)
        dims = list(range(axis, rank))
    else:
        dims = [ctx.axis(ctx.int_attr("axis", -1), rank)]
    return [ctx.builder.mix(ctx.name, ctx.op, x, dims)]


@register_onnx_rule("LayerNormalization")
def _layer_norm(ctx: OnnxContext) -> list[Value]:
    x = _first_only(ctx)
    rank = len(x.shape)
    axis = ctx.axis(ctx.int_attr("axis", -1), rank)
    dims = list(range(axis, rank))
    out: list[Value] = [ctx.builder.mix(ctx.name, ctx.op, x, dims)]
    if ctx.n_outputs > 1:  # the mean and inverse standard deviation
        stats = ctx.builder.reduce(ctx.name, ctx.op, x, dims, keepdim=True)
        out += [stats] * (ctx.n_outputs - 1)
    return out


@register_onnx_rule("InstanceNormalization")
def _instance_norm(ctx: OnnxContext) -> list[Value]:
    x = _first_only(ctx)
    return [ctx.builder.mix(ctx.name, ctx.op, x, range(2, len(x.shape)))]


@register_onnx_rule("GroupNormalization")
def _group_norm(ctx: OnnxContext) -> list[Value]:
    x = _first_only(ctx)
    return [ctx.builder.mix(ctx.name, ctx.op, x, range(1, len(x.shape)))]


@register_onnx_rule("MeanVarianceNormalization")
def _mvn(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    rank = len(x.shape)
    axes = ctx.ints_attr("axes", [0, 2, 3])
    assert axes is not None
    return [ctx.builder.mix(ctx.name, ctx.op, x, [ctx.axis(a, rank) for a in axes])]


@register_onnx_rule("LpNormalization")
def _lp_norm(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    axis = ctx.axis(ctx.int_attr("axis", -1), len(x.shape))
    return [ctx.builder.mix(ctx.name, ctx.op, x, [axis])]


@register_onnx_rule("LRN")
def _lrn(ctx: OnnxContext) -> list[Value]:
    x = _need_first(ctx)
    if len(x.shape) < 2:
        raise ModelError(f"{ctx.label}: needs at least 2 dims")
    return [ctx.builder.mix(ctx.name, ctx.op, x, [1])]


@register_onnx_rule("CumSum")
def _cumsum(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    rank = len(x.shape)
    axis_value = ctx.ints(1)
    if not axis_value or len(axis_value) != 1:
        raise ModelError(f"{ctx.label}: axis must be one integer")
    d = ctx.axis(axis_value[0], rank)
    n = x.shape[d]
    exclusive = bool(ctx.int_attr("exclusive", 0))
    reverse = bool(ctx.int_attr("reverse", 0))
    if not _carries_positions(x, d):
        return [ctx.builder.mix(ctx.name, ctx.op, x, [d])]
    # unit u sums [0, u] (or [u, n)); exclusive sums leave u itself out
    if exclusive and n == 1:
        return [ctx.builder.constant(x.shape)]
    kernel = n - 1 if exclusive else n
    window = Conv(kernel, 1, 1, 1 if exclusive else 0) if reverse else Conv(kernel, 1, 1, 1 - n)
    rel = tuple(Slide(d, window) if k == d else Same(k) for k in range(rank))
    return [ctx.builder.apply(ctx.name, ctx.op, x.shape, [(x, rel)])]


@register_onnx_rule("TopK")
def _topk(ctx: OnnxContext) -> list[Value]:
    x = _data(ctx)
    rank = len(x.shape)
    axis = ctx.axis(ctx.int_attr("axis", -1), rank)
    if ctx.opset < 10:
        k = ctx.int_attr("k", 1)
    else:
        ks = ctx.ints(1)
        if not ks or len(ks) != 1:
            raise ModelError(f"{ctx.label}: K must be one integer")
        k = ks[0]
    if not 0 <= k <= x.shape[axis]:
        raise ModelError(f"{ctx.label}: K={k} for a dim of size {x.shape[axis]}")
    shape = list(x.shape)
    shape[axis] = k
    rel = tuple(Mix(d) if d == axis else Same(d) for d in range(rank))
    y = ctx.builder.apply(ctx.name, ctx.op, shape, [(x, rel)])
    return [y, y]


# -- products -------------------------------------------------------------------------------


@register_onnx_rule("MatMul", "MatMulInteger")
def _matmul(ctx: OnnxContext) -> list[Value]:
    a_shape, b_shape = ctx.shape(0), ctx.shape(1)
    if not a_shape or not b_shape:
        raise ModelError(f"{ctx.label}: MatMul of a scalar")
    b = ctx.builder
    a, bb = ctx.tensor(0), ctx.tensor(1)
    a2 = b.reshape(a, (1, a_shape[0])) if len(a_shape) == 1 else a
    b2 = b.reshape(bb, (b_shape[0], 1)) if len(b_shape) == 1 else bb
    if a2.shape[-1] != b2.shape[-2]:
        raise ModelError(f"{ctx.label}: shapes {list(a_shape)} and {list(b_shape)} do not match")
    try:
        batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ModelError(f"{ctx.label}: batch dims of {list(a_shape)}, {list(b_shape)}") from None
    shape = (*batch, a2.shape[-2], b2.shape[-1])
    out = b.matmul(
        ctx.name,
        ctx.op,
        a2 if ctx.ref(0) is not None else None,
        b2 if ctx.ref(1) is not None else None,
        shape,
    )
    final = list(shape)
    if len(b_shape) == 1:
        final.pop(-1)
    if len(a_shape) == 1:
        final.pop(-2 if len(b_shape) != 1 else -1)
    return [b.reshape(out, tuple(final)) if tuple(final) != shape else out]


@register_onnx_rule("Gemm")
def _gemm(ctx: OnnxContext) -> list[Value]:
    a_shape, b_shape = ctx.shape(0), ctx.shape(1)
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise ModelError(f"{ctx.label}: Gemm needs 2D inputs, got {list(a_shape)}, {list(b_shape)}")
    ta, tb = ctx.int_attr("transA", 0), ctx.int_attr("transB", 0)
    m, k = (a_shape[1], a_shape[0]) if ta else a_shape
    k2, n = (b_shape[1], b_shape[0]) if tb else b_shape
    if k != k2:
        raise ModelError(f"{ctx.label}: shapes {list(a_shape)} and {list(b_shape)} do not match")
    operands: list[tuple[TensorRef, tuple[Relation, ...]]] = []
    a, bb = ctx.ref(0), ctx.ref(1)
    if a is not None:
        operands.append((a, (Reduce(), Same(0)) if ta else (Same(0), Reduce())))
    if bb is not None:
        operands.append((bb, (Same(1), Reduce()) if tb else (Reduce(), Same(1))))
    c = ctx.ref(2)
    if c is not None:
        lead = 2 - len(c.shape)
        if lead < 0:
            raise ModelError(f"{ctx.label}: C of shape {list(c.shape)}")
        operands.append((c, tuple(Same(lead + d) for d in range(len(c.shape)))))
    return [ctx.builder.apply(ctx.name, ctx.op, (m, n), operands)]


@register_onnx_rule("Einsum")
def _einsum(ctx: OnnxContext) -> list[Value]:
    equation = ctx.str_attr("equation", "").replace(" ", "")
    shapes = [ctx.shape(i) for i in range(len(ctx.inputs))]
    terms, out_labels, sizes = _parse_einsum(ctx, equation, shapes)
    shape = tuple(sizes[c] for c in out_labels)
    operands: list[tuple[TensorRef, tuple[Relation, ...]]] = []
    for i, labels in enumerate(terms):
        x = ctx.ref(i)
        if x is None:
            continue
        if len(set(labels)) != len(labels):
            raise Unsupported("Einsum with a repeated index in one operand (a diagonal)")
        rel = tuple(Same(out_labels.index(c)) if c in out_labels else Reduce() for c in labels)
        operands.append((x, rel))
    return [ctx.builder.apply(ctx.name, ctx.op, shape, operands)]


def _parse_einsum(
    ctx: OnnxContext, equation: str, shapes: list[tuple[int, ...]]
) -> tuple[list[str], str, dict[str, int]]:
    """Operand labels (ellipses expanded to upper-case labels), output labels, sizes."""
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ModelError(f"{ctx.label}: equation {equation!r} for {len(shapes)} inputs")
    ell = max((len(s) - len(t.replace("...", "")) for t, s in zip(terms, shapes, strict=True)))
    extra = "".join(chr(ord("A") + k) for k in range(max(ell, 0)))
    expanded = []
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes, strict=True):
        if "..." in term:
            n = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", extra[len(extra) - n :] if n else "")
        if len(term) != len(shape) or not all(c.isalpha() for c in term):
            raise ModelError(f"{ctx.label}: equation {equation!r} does not fit the inputs")
        for c, n in zip(term, shape, strict=True):
            if sizes.get(c, n) != n and 1 not in (sizes.get(c), n):
                raise ModelError(f"{ctx.label}: index {c!r} has sizes {sizes[c]} and {n}")
            sizes[c] = max(sizes.get(c, n), n)
        expanded.append(term)
    if arrow:
        out = rhs.replace("...", extra)
    else:
        counts: dict[str, int] = {}
        for term in expanded:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        out = extra + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in extra))
    if any(c not in sizes for c in out) or len(set(out)) != len(out):
        raise ModelError(f"{ctx.label}: invalid output of equation {equation!r}")
    return expanded, out, sizes


@register_onnx_rule("DepthToSpace", "SpaceToDepth")
def _depth_space(ctx: OnnxContext) -> list[Value]:
    from fractions import Fraction

    from ..windows import PadMode, Resample, ResampleMode, Window

    x = _need_first(ctx)
    if len(x.shape) != 4:
        raise ModelError(f"{ctx.label}: needs a 4D input, got {list(x.shape)}")
    r = ctx.int_attr("blocksize", 0)
    n, c, h, w = x.shape
    if r < 1:
        raise ModelError(f"{ctx.label}: blocksize {r}")
    if ctx.op == "DepthToSpace":
        if c % (r * r):
            raise ModelError(f"{ctx.label}: {c} channels for blocksize {r}")
        shape = (n, c // (r * r), h * r, w * r)
        windows: list[Window] = [
            Resample(size, size * r, ResampleMode.NEAREST, Fraction(1, r), pad_mode=PadMode.ZEROS)
            for size in (h, w)
        ]
    else:
        if h % r or w % r:
            raise ModelError(f"{ctx.label}: size {h}x{w} for blocksize {r}")
        shape = (n, c * r * r, h // r, w // r)
        windows = [Conv(r, r), Conv(r, r)]
    rel = (Same(0), Mix(1), Slide(2, windows[0]), Slide(3, windows[1]))
    return [ctx.builder.apply(ctx.name, ctx.op, shape, [(x, rel)])]
