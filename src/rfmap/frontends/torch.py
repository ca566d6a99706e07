"""The PyTorch frontend: every ATen operation a model runs, captured into a layer graph.

:func:`trace` runs the model once under a ``TorchDispatchMode`` (the mechanism of
``torch.utils.flop_counter``) and looks every ATen operation up in the registry of
:mod:`rfmap.frontends.torch_rules`.  Nothing is derived from class names or Python
source: padding done inside ``forward`` (TF-style "same" convolutions), weight
reparametrisations, Python control flow and functional calls are all seen as the ATen
operations they run.

The model runs on the *meta* device: the input is a meta tensor, parameters are moved
to meta as each operation needs them, and no arithmetic is done, so the cost does not
depend on the input size.  Tensors that do not depend on the input stay real (masks,
relative position tables), so rules can read their values.  A forward that needs real
values (``.item()``, data-dependent control flow) is run again on a real random input.
Module hooks name the graph nodes after the modules that run them.

Operations without a rule are measured on their own with the gradient
(:func:`rfmap.measure.measure_windows`) and flagged; a model whose operations cannot
even be measured one by one is measured as a whole.  Needs PyTorch.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..builder import GraphBuilder, TensorRef, Unsupported
from ..errors import ModelError, RFMapError, UnsupportedLayerError
from ..gradient import require_torch
from ..windows import BROADCAST, IDENTITY, Table, Whole, Window
from .base import Traced
from .torch_rules import OpContext, install, module_rule, rule_for

__all__ = ["Method", "trace"]


class _NeedReal(Exception):
    """The forward cannot run on meta tensors: run it again on real ones."""


class GiveUp(Exception):
    """An operation can be neither derived nor measured on its own."""


class Method:
    """Values of the ``method`` argument (see :class:`rfmap.trace.Method`)."""

    AUTO = "auto"
    ANALYTIC = "analytic"


@functools.cache
def _schema_kinds(op: Any) -> tuple[bool, bool]:
    """``(in_place, view)``: whether ``op`` writes its first argument or returns a view."""
    schema = op._schema
    returns = schema.returns
    if not returns:
        return False, False
    info = returns[0].alias_info
    if info is None:
        return False, False
    return bool(info.is_write), not info.is_write


def bind(op: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an ATen call by their schema names, with defaults filled in."""
    out: dict[str, Any] = {}
    schema = op._schema
    params = schema.arguments
    positional = [p for p in params if not p.kwarg_only]
    for p, value in zip(positional, args, strict=False):
        out[p.name] = value
    for p in params:
        if p.name in kwargs:
            out[p.name] = kwargs[p.name]
        elif p.name not in out and p.has_default_value():
            out[p.name] = p.default_value
    return out


@dataclass
class _Capture:
    """The state of one capture: tensors seen, their refs, modules being run."""

    builder: GraphBuilder
    real: bool
    method: str
    names: dict[int, str]
    refs: dict[int, TensorRef] = field(default_factory=dict)
    keep: list[Any] = field(default_factory=list)
    views: dict[int, tuple[Any, Any, dict[str, Any]]] = field(default_factory=dict)
    meta_copies: dict[int, Any] = field(default_factory=dict)
    stack: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    aliases: dict[str, TensorRef] = field(default_factory=dict)
    leaf_nodes: dict[str, str] = field(default_factory=dict)
    measured_ops: list[str] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)
    pending: list[Any] = field(default_factory=list)
    real_values: dict[int, Any] = field(default_factory=dict)
    from_params: set[int] = field(default_factory=set)
    fx_aliases: dict[str, TensorRef] = field(default_factory=dict)

    # -- tensors -----------------------------------------------------------------------
    def ref(self, value: Any) -> TensorRef | None:
        torch = require_torch()
        if isinstance(value, torch.Tensor):
            return self.refs.get(id(value))
        return None

    def track(self, tensor: Any, ref: TensorRef | None) -> None:
        if ref is None or ref.constant:
            self.refs.pop(id(tensor), None)
            return
        if tuple(ref.shape) != tuple(tensor.shape):
            raise Unsupported(
                f"a rule gave shape {list(ref.shape)} for an output of shape {list(tensor.shape)}"
            )
        self.refs[id(tensor)] = ref
        self.keep.append(tensor)

    def to_meta(self, value: Any) -> Any:
        torch = require_torch()
        if not isinstance(value, torch.Tensor) or value.is_meta:
            return value
        copy_ = self.meta_copies.get(id(value))
        if copy_ is None:
            copy_ = value.to("meta")
            self.meta_copies[id(value)] = copy_
            self.real_values[id(copy_)] = value
            self.keep.append(value)
        return copy_

    # -- names -------------------------------------------------------------------------
    def node_name(self, op: str) -> str | tuple[str, str]:
        """The base name of a node made by ``op``: the module's name (and class, as the
        node's op) for the first node of a call of a leaf module, else ``module.op``."""
        op = op.rstrip("_") or op
        if not self.stack:
            return op
        scope = self.stack[-1]
        count = self.counts[-1]
        self.counts[-1] = count + 1
        if scope and count == 0 and scope in self.leaf_nodes:
            return scope, self.leaf_nodes[scope]
        return f"{scope}.{op}" if scope else op


def _short(op: Any) -> str:
    name = getattr(op, "__name__", str(op))
    return name.split(".")[0]


_CONSTANT_LIKE = frozenset(
    [
        "zeros_like",
        "ones_like",
        "empty_like",
        "full_like",
        "rand_like",
        "randn_like",
        "randint_like",
        "new_zeros",
        "new_ones",
        "new_empty",
        "new_full",
        "new_empty_strided",
    ]
)


#: Element-wise operations whose output has the shape and dtype of their first input.
_SAME_AS_INPUT = frozenset(
    [
        "relu",
        "relu6",
        "gelu",
        "silu",
        "sigmoid",
        "tanh",
        "hardswish",
        "hardsigmoid",
        "hardtanh",
        "leaky_relu",
        "elu",
        "selu",
        "celu",
        "mish",
        "softplus",
        "clone",
        "alias",
        "detach",
        "contiguous",
        "neg",
        "abs",
        "exp",
        "sqrt",
        "rsqrt",
        "reciprocal",
        "log1p",
        "erf",
        "clamp",
        "clamp_min",
        "clamp_max",
        "hardshrink",
        "softshrink",
        "_to_copy",
    ]
)
#: Broadcasting binary operations (type promotion as PyTorch does it).
_BROADCAST = frozenset(["add", "sub", "mul", "div", "maximum", "minimum"])
#: Batch norms: (normalised input, two small statistics tensors).
_BATCH_NORMS = frozenset(
    ["native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit"]
)


def _fast_meta(short: str, func: Any, args: Any, kwargs: Any, in_place: bool) -> Any:
    """The meta output of common operations without running PyTorch's meta kernels
    (some go through slow Python decompositions); None: run the kernel."""
    torch = require_torch()
    name = short.rstrip("_") if in_place else short
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or not x.is_meta:
        return None
    if name in _SAME_AS_INPUT:
        if name == "_to_copy" and (set(kwargs) - {"dtype", "memory_format"}):
            return None
        if in_place:
            return x
        dtype = kwargs.get("dtype") if name == "_to_copy" else None
        return torch.empty(x.shape, dtype=dtype or x.dtype, device="meta")
    if name in _BROADCAST and len(args) == 2 and not (set(kwargs) - {"alpha"}):
        y = args[1]
        if isinstance(y, torch.Tensor):
            if y.device.type not in ("meta", "cpu"):
                return None
            shape = x.shape if y.shape == x.shape else torch.broadcast_shapes(x.shape, y.shape)
        elif isinstance(y, (int, float)) and not isinstance(y, bool):
            shape = x.shape
        else:
            return None
        if in_place:
            return x if tuple(shape) == tuple(x.shape) else None
        dtype = torch.result_type(x, y)
        return torch.empty(shape, dtype=dtype, device="meta")
    if name in ("mean", "sum", "amax", "amin") and len(args) >= 2 and not kwargs:
        dims = args[1]
        if not isinstance(dims, (list, tuple)) or not dims:
            return None
        keep = bool(args[2]) if len(args) > 2 else False
        reduced = {int(d) % x.dim() for d in dims}
        shape = [
            1 if d in reduced else n for d, n in enumerate(x.shape) if keep or d not in reduced
        ]
        return torch.empty(shape, dtype=x.dtype, device="meta")
    if name == "native_layer_norm" and len(args) >= 2:
        k = len(args[1])
        stats = (*x.shape[: x.dim() - k], *([1] * k))
        return (
            torch.empty(x.shape, dtype=x.dtype, device="meta"),
            torch.empty(stats, dtype=torch.float32, device="meta"),
            torch.empty(stats, dtype=torch.float32, device="meta"),
        )
    if name in ("_softmax", "_log_softmax", "_safe_softmax") and len(args) >= 2:
        return torch.empty(x.shape, dtype=x.dtype, device="meta")
    if name in ("mm", "bmm", "addmm") and not kwargs:
        a, b = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
        if (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dim() == b.dim() == (3 if name == "bmm" else 2)
            and a.shape[-1] == b.shape[-2]
            and a.shape[:-2] == b.shape[:-2]
            and a.dtype == b.dtype
        ):
            return torch.empty((*a.shape[:-1], b.shape[-1]), dtype=a.dtype, device="meta")
        return None
    if name in _BATCH_NORMS and x.dim() >= 2:
        stats = torch.empty((0,), dtype=x.dtype, device="meta")
        return (torch.empty(x.shape, dtype=x.dtype, device="meta"), stats, stats)
    if name == "convolution" and not kwargs and len(args) == 9:
        _, weight, _, stride, padding, dilation, transposed, output_padding, groups = args
        if not isinstance(weight, torch.Tensor) or x.dim() != weight.dim():
            return None
        nd = weight.dim() - 2
        sizes = []
        for i in range(nd):
            n, k = int(x.shape[2 + i]), int(weight.shape[2 + i])
            s, p, d = int(stride[i]), int(padding[i]), int(dilation[i])
            if transposed:
                sizes.append((n - 1) * s - 2 * p + d * (k - 1) + int(output_padding[i]) + 1)
            else:
                sizes.append((n + 2 * p - d * (k - 1) - 1) // s + 1)
        channels = int(weight.shape[1]) * int(groups) if transposed else int(weight.shape[0])
        if min(sizes) < 1 or int(x.shape[1]) != (
            int(weight.shape[0]) if transposed else int(weight.shape[1]) * int(groups)
        ):
            return None  # let PyTorch raise its own error
        return torch.empty((x.shape[0], channels, *sizes), dtype=x.dtype, device="meta")
    return None


#: Operations that read values (``.item()``, ``bool(x)``): the forward is run on real tensors.
_NEEDS_VALUES = frozenset(("_local_scalar_dense", "is_nonzero", "equal", "nonzero", "item"))


def _tensors(args: Sequence[Any], kwargs: dict[str, Any], kind: type) -> list[Any]:
    """The tensors among an op's arguments (lists and tuples included)."""
    found = []
    for value in (*args, *kwargs.values()):
        if isinstance(value, kind):
            found.append(value)
        elif isinstance(value, (list, tuple)):
            found.extend(v for v in value if isinstance(v, kind))
    return found


def _map_tensors(args: Sequence[Any], fn: Any, kind: type) -> list[Any]:
    """``args`` with ``fn`` applied to each tensor (in lists and tuples too)."""
    out = []
    for value in args:
        if isinstance(value, kind):
            out.append(fn(value))
        elif isinstance(value, (list, tuple)) and any(isinstance(v, kind) for v in value):
            out.append(type(value)(fn(v) if isinstance(v, kind) else v for v in value))
        else:
            out.append(value)
    return out


def _no_dispatch_mode() -> Any:
    """Run without rfmap's dispatch mode (to move a constant to the meta device)."""
    from torch.utils._python_dispatch import _disable_current_modes

    return _disable_current_modes()


def _function_mode(capture: _Capture) -> Any:
    """A function mode for the few functions that dispatch no operation of their own:
    scaled dot-product attention compares devices first (a constant query beside meta
    keys goes to meta too), and a circular pad is written as copies into slices (it is
    read as the one circular window it is)."""
    torch = require_torch()
    from torch.overrides import TorchFunctionMode

    from ..windows import PadMode

    Tensor = torch.Tensor

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", None)
            if name == "scaled_dot_product_attention" and not capture.real:
                tensors = _tensors(args, kwargs, Tensor)
                if any(t.is_meta for t in tensors) and not all(t.is_meta for t in tensors):
                    meta = capture.to_meta
                    with _no_dispatch_mode():
                        args = _map_tensors(args, meta, Tensor)
                        kwargs = {k: _map_tensors((v,), meta, Tensor)[0] for k, v in kwargs.items()}
            elif name == "pad" and args and isinstance(args[0], Tensor):
                bound = dict(zip(("input", "pad", "mode", "value"), args, strict=False))
                bound.update(kwargs)
                ref = capture.ref(bound["input"])
                if bound.get("mode") == "circular" and ref is not None and not ref.constant:
                    with _no_dispatch_mode():
                        out = func(*args, **kwargs)
                    x = bound["input"]
                    pads = [int(p) for p in bound["pad"]]
                    pairs = [(0, 0)] * x.dim()
                    for i in range(len(pads) // 2):
                        pairs[x.dim() - 1 - i] = (pads[2 * i], pads[2 * i + 1])
                    try:
                        result = capture.builder.pad(ref, pairs, PadMode.CIRCULAR, "pad")
                    except Unsupported:
                        return func(*args, **kwargs)
                    capture.track(out, result)
                    return out
            return func(*args, **kwargs)

    return Mode()


def _make_mode(capture: _Capture) -> Any:
    torch = require_torch()
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten, tree_unflatten

    Tensor = torch.Tensor
    Parameter = torch.nn.Parameter

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            tensors = _tensors(args, kwargs, Tensor)
            refs = capture.refs
            tracked = any(id(a) in refs for a in tensors)
            short = _short(func)
            in_place, view = _schema_kinds(func)
            if not tracked:
                if not capture.real and any(
                    isinstance(a, Parameter) or id(a) in capture.from_params for a in tensors
                ):
                    # computed from parameters (weight norms, relative position biases):
                    # on meta too, as no rule reads such values
                    if short in _NEEDS_VALUES:
                        raise _NeedReal(f"{short} reads the values of parameters")
                    meta = capture.to_meta
                    out = func(
                        *_map_tensors(args, meta, Tensor),
                        **{k: _map_tensors((v,), meta, Tensor)[0] for k, v in kwargs.items()},
                    )
                    for t in out if isinstance(out, (tuple, list)) else (out,):
                        if isinstance(t, Tensor):
                            capture.from_params.add(id(t))
                            capture.keep.append(t)
                    return out
                if not capture.real:
                    if kwargs.get("device") is not None and str(kwargs["device"]) == "meta":
                        kwargs = {**kwargs, "device": torch.device("cpu")}
                    if any(a.is_meta for a in tensors):
                        flat, spec = tree_flatten((args, kwargs))
                        # a constant computed from tracked shapes only (new_zeros' result)
                        flat = [
                            torch.zeros(a.shape, dtype=a.dtype)
                            if isinstance(a, Tensor) and a.is_meta
                            else a
                            for a in flat
                        ]
                        args, kwargs = tree_unflatten(flat, spec)
                        if kwargs.get("device") is not None and str(kwargs["device"]) == "meta":
                            kwargs = {**kwargs, "device": torch.device("cpu")}
                out = func(*args, **kwargs)
                if view and args and isinstance(args[0], Tensor):
                    capture.views[id(out)] = (args[0], func, bind(func, args, kwargs))
                    capture.keep.append(out)
                return out
            if short in _NEEDS_VALUES and not capture.real:
                raise _NeedReal(f"{short} reads the values of a tensor")
            if short in _CONSTANT_LIKE:
                if capture.real:
                    return func(*args, **kwargs)
                flat, spec = tree_flatten((args, kwargs))
                stand_in = [
                    torch.empty(a.shape, dtype=a.dtype)
                    if isinstance(a, Tensor) and a.is_meta
                    else a
                    for a in flat
                ]
                cargs, ckwargs = tree_unflatten(stand_in, spec)
                if ckwargs.get("device") is not None:
                    ckwargs = {**ckwargs, "device": torch.device("cpu")}
                return func(*cargs, **ckwargs)
            if capture.real:
                out = func(*args, **kwargs)
            elif (fast := _fast_meta(short, func, args, kwargs, in_place)) is not None:
                out = fast
            elif in_place and args and isinstance(args[0], Tensor) and not args[0].is_meta:
                # a value that depends on the input written into a real tensor: the
                # tensor is tracked from now on (its values are never read again)
                out = args[0]
            else:
                out = func(
                    *_map_tensors(args, capture.to_meta, Tensor),
                    **{
                        k: _map_tensors((v,), capture.to_meta, Tensor)[0] for k, v in kwargs.items()
                    },
                )
            bound = bind(func, args, kwargs)
            name = short
            ctx = OpContext(capture.builder, func, bound, out, capture.ref, name)
            rule = rule_for(func)
            try:
                if rule is None:
                    raise Unsupported(f"no rule for {func}")
                result = rule(ctx)
            except Unsupported as exc:
                result = _measure_op(capture, func, args, kwargs, out, name, exc)
            _record(capture, func, args, bound, out, result, in_place, view)
            return out

    return Mode()


def _record(
    capture: _Capture,
    func: Any,
    args: Sequence[Any],
    bound: dict[str, Any],
    out: Any,
    result: Any,
    in_place: bool,
    view: bool,
) -> None:
    """Remember the refs of an op's outputs; write in-place results back to bases."""
    torch = require_torch()
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    results = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(results) < len(outs):
        results += [None] * (len(outs) - len(results))
    for tensor, ref in zip(outs, results, strict=False):
        if isinstance(tensor, torch.Tensor):
            if ref is not None and not isinstance(ref, TensorRef):
                raise Unsupported(f"the rule of {func} returned {type(ref).__name__}")
            capture.track(tensor, ref)
    if view and args and isinstance(args[0], torch.Tensor):
        for tensor in outs:
            if isinstance(tensor, torch.Tensor):
                capture.views[id(tensor)] = (args[0], func, bound)
                capture.keep.append(tensor)
    if in_place and args and isinstance(args[0], torch.Tensor):
        target = args[0]
        ref = results[0] if isinstance(results[0], TensorRef) else None
        capture.track(target, ref)
        _write_back(capture, target, ref)


def _write_back(capture: _Capture, tensor: Any, ref: TensorRef | None) -> None:
    """Propagate an in-place write into ``tensor`` to the tensors it is a view of."""
    b = capture.builder
    while id(tensor) in capture.views:
        base, func, bound = capture.views[id(tensor)]
        value = ref if ref is not None else b.constant(tuple(tensor.shape))
        shape = tuple(int(n) for n in base.shape)
        base_ref = capture.ref(base) or b.constant(shape)
        name = _short(func)
        region = [(0, n) for n in shape]
        if name in ("slice", "narrow"):
            d = int(bound.get("dim", 0)) % len(shape)
            if name == "slice":
                start, stop, step = slice(
                    bound.get("start"), bound.get("end"), bound.get("step", 1)
                ).indices(shape[d])
            else:
                start = int(bound["start"]) % max(1, shape[d])
                stop, step = start + int(bound["length"]), 1
            if step != 1:
                raise GiveUp(f"an in-place write into a strided slice ({name})")
            region[d] = (start, stop)
        elif name == "select":
            d = int(bound["dim"]) % len(shape)
            i = int(bound["index"]) % shape[d]
            region[d] = (i, i + 1)
            value = b.reshape(value, (*shape[:d], 1, *shape[d + 1 :]))
        elif name in (
            "alias",
            "detach",
            "view",
            "_reshape_alias",
            "reshape",
            "squeeze",
            "unsqueeze",
            "_unsafe_view",
            "flatten",
            "unflatten",
        ):
            value = b.reshape(value, shape)
        elif name in ("permute", "transpose", "t"):
            order = list(range(len(shape)))
            if name == "permute":
                order = [int(d) % len(shape) for d in bound["dims"]]
            elif name == "transpose":
                i, j = int(bound["dim0"]) % len(shape), int(bound["dim1"]) % len(shape)
                order[i], order[j] = order[j], order[i]
            elif len(shape) == 2:
                order = [1, 0]
            inverse = [order.index(k) for k in range(len(order))]
            value = b.permute(value, inverse)
        else:
            raise GiveUp(f"an in-place write through a view made by {name}")
        try:
            new = b.assign(base_ref, tuple(region), value)
        except Unsupported as exc:
            raise GiveUp(f"an in-place write into a slice: {exc}") from exc
        capture.track(base, new)
        tensor, ref = base, new


def _measure_op(
    capture: _Capture,
    func: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    out: Any,
    name: str,
    reason: Exception,
) -> Any:
    """A node for an operation the rules cannot express, to be measured with the
    gradient once the forward is done (autograd does not run inside a dispatch mode)."""
    torch = require_torch()
    from torch.utils._pytree import tree_flatten

    from ..builder import Part
    from ..measure import first_tensor

    what = f"{_short(func)} ({func})"
    if capture.method == Method.ANALYTIC:
        raise UnsupportedLayerError(
            f"cannot derive the receptive field of {what}: {reason}; "
            "use method='auto' to measure it with the gradient"
        )
    flat, spec = tree_flatten((list(args), dict(kwargs)))
    dep = [i for i, a in enumerate(flat) if isinstance(a, torch.Tensor) and id(a) in capture.refs]
    refs = [capture.refs[id(flat[i])] for i in dep]
    result = first_tensor(out)
    if result is None or not dep:
        raise GiveUp(f"{what}: {reason}")
    dims = [r.spatial_dims() for r in refs]
    if any(d is None for d in dims):
        raise GiveUp(f"{what}: {reason}, on a tensor whose positions are packed")
    if result.dim() != len(refs[0].shape):
        raise GiveUp(f"{what}: {reason}, and it changes the number of dims")
    out_dims = dict(dims[0] or {})
    realised = [
        torch.ones(a.shape, dtype=a.dtype)
        if isinstance(a, torch.Tensor) and a.is_meta
        else a.detach().clone()
        if isinstance(a, torch.Tensor)
        else a
        for a in flat
    ]
    b = capture.builder
    shape = tuple(int(n) for n in result.shape)
    extents = [1] * b.ndim
    for axis, d in out_dims.items():
        extents[axis] = shape[d]
    placeholder = [(ref.parts[0].node, [IDENTITY] * b.ndim) for ref in refs]
    node = b.add_node(
        name, f"{_short(func)} (measured)", tuple(extents), placeholder, shape, measured=True
    )
    capture.pending.append(
        _Pending(node, func, realised, spec, dep, [d or {} for d in dims], out_dims, refs)
    )
    axis_of = {d: a for a, d in out_dims.items()}
    layout = tuple(
        ((axis_of[d], shape[d], 1),) if d in axis_of else ((-1, shape[d], 0),)
        for d in range(len(shape))
    )
    ref = TensorRef(shape, (Part(node, tuple((0, n) for n in shape), layout),))
    b.notes.append(f"{what} is not supported ({reason}): measured with the gradient")
    if isinstance(out, (tuple, list)):
        return tuple(ref if i == 0 else None for i in range(len(out)))
    return ref


@dataclass
class _Pending:
    """An operation to measure with the gradient after the forward."""

    node: str
    func: Any
    inputs: list[Any]
    spec: Any
    dep: list[int]
    in_dims: list[dict[int, int]]
    out_dims: dict[int, int]
    refs: list[TensorRef]


def _measure_pending(capture: _Capture) -> None:
    """Measure the operations the rules could not express, and give their nodes windows."""
    torch = require_torch()
    from torch.utils._pytree import tree_unflatten

    from ..measure import measure_windows

    b = capture.builder
    for job in capture.pending:

        def call(*values: Any, job: _Pending = job) -> Any:
            a, k = tree_unflatten(list(values), job.spec)
            return job.func(*a, **k)

        what = f"{_short(job.func)} ({job.func})"
        try:
            with torch.enable_grad():
                measured = measure_windows(call, job.inputs, job.dep, job.in_dims, job.out_dims)
        except RFMapError:
            raise
        except Exception as exc:
            raise GiveUp(f"{what}: measuring it failed: {_one_line(exc)}") from exc
        if measured is None:
            raise GiveUp(f"{what} cannot be measured as one operation")
        record = b.nodes[job.node]
        edges = []
        for ref, windows in zip(job.refs, measured, strict=True):
            src_ext = b.extents(ref.parts[0].node)
            per_axis: list[Window] = []
            for a in range(b.ndim):
                if a in windows:
                    per_axis.append(Table(windows[a]))
                elif src_ext[a] == record.extents[a]:
                    per_axis.append(IDENTITY)
                else:
                    per_axis.append(BROADCAST if src_ext[a] == 1 else Whole(src_ext[a]))
            edges.append((ref.parts[0].node, tuple(per_axis)))
        record.edges = edges


# -- running the model ---------------------------------------------------------------------


@contextlib.contextmanager
def _module_hooks(capture: _Capture, model: Any) -> Iterator[None]:
    """Name nodes after the modules that run them; apply module rules."""
    torch = require_torch()
    from torch.nn.modules import module as module_mod

    names = capture.names

    def pre(module: Any, args: Any) -> None:
        capture.stack.append(names.get(id(module), capture.stack[-1] if capture.stack else ""))
        capture.counts.append(0)

    def post(module: Any, args: Any, output: Any) -> None:
        name = capture.stack.pop() if capture.stack else ""
        if capture.counts:
            capture.counts.pop()
        if id(module) not in names:
            return
        from ..measure import first_tensor

        tensor = first_tensor(output)
        if tensor is not None:
            ref = capture.ref(tensor)
            if ref is not None:
                # the module's name is its last call; torch.fx's names (dots as
                # underscores, '_k' for the k-th call) each call
                calls = capture.calls.get(name, 0)
                capture.calls[name] = calls + 1
                capture.aliases[name] = ref
                fx = name.replace(".", "_")
                fx = f"_{fx}" if fx[:1].isdigit() else fx
                capture.fx_aliases.setdefault(fx if calls == 0 else f"{fx}_{calls}", ref)

    overridden: list[tuple[Any, Any]] = []
    for module in model.modules():
        rule = module_rule(module)
        if rule is not None:
            overridden.append((module, module.__dict__.get("forward")))
            module.forward = functools.partial(_rule_forward, capture, module, rule)
    handles = [
        module_mod.register_module_forward_pre_hook(pre),
        module_mod.register_module_forward_hook(post, always_call=True),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module, forward in overridden:
            if forward is None:
                del module.forward
            else:
                module.forward = forward
        del torch


def _rule_forward(capture: _Capture, module: Any, rule: Any, *args: Any, **kwargs: Any) -> Any:
    """A module's forward replaced by its registered rule."""
    torch = require_torch()
    name = type(module).__name__
    ctx = OpContext(
        capture.builder, module, {"input": args[0] if args else None}, None, capture.ref, name
    )
    try:
        result = rule(ctx, module, *args, **kwargs)
    except Unsupported:
        forward = type(module).forward
        return forward(module, *args, **kwargs)
    dtype = args[0].dtype if args and isinstance(args[0], torch.Tensor) else torch.float32

    def make(ref: Any) -> Any:
        if isinstance(ref, TensorRef):
            if capture.real:
                tensor = torch.zeros(ref.shape, dtype=dtype)
            else:
                tensor = torch.empty(ref.shape, dtype=dtype, device="meta")
            capture.track(tensor, ref)
            return tensor
        if isinstance(ref, (tuple, list)):
            return type(ref)(make(r) for r in ref)
        return ref

    return make(result)


def _run(model: Any, size: tuple[int, ...], method: str, real: bool) -> tuple[_Capture, Any]:
    torch = require_torch()
    ndim = len(size) - 1
    builder = GraphBuilder(ndim)
    names: dict[int, str] = {}
    leaves: dict[str, str] = {}
    for qualname, module in model.named_modules(remove_duplicate=False):
        names.setdefault(id(module), qualname)
        if qualname and not any(True for _ in module.children()):
            leaves[qualname] = type(module).__name__
    capture = _Capture(builder, real, method, names, leaf_nodes=leaves)
    builder.namer = capture.node_name
    param = next(iter(model.parameters()), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if real:
        device = param.device if param is not None else torch.device("cpu")
        generator = torch.Generator(device="cpu").manual_seed(0)
        x = torch.randn((1, *size), generator=generator).to(device=device, dtype=dtype)
    else:
        x = torch.empty((1, *size), dtype=dtype, device="meta")
    builder.namer = None
    ref = builder.input("x", x.shape, tuple(range(2, 2 + ndim)))
    builder.namer = capture.node_name
    capture.track(x, ref)
    mode = _make_mode(capture)
    devices = _function_mode(capture)
    with torch.no_grad(), _module_hooks(capture, model), devices, mode:
        out = model(x)
    _measure_pending(capture)
    return capture, out


def trace(model: Any, size: tuple[int, ...], method: str = Method.AUTO) -> Traced:
    """Capture ``model`` on an input of ``size`` (``(C, *spatial)``) into a graph.

    Raises :class:`~rfmap.errors.ModelError` when the forward fails,
    :class:`GiveUp` when an operation can be neither derived nor measured, and
    :class:`~rfmap.errors.UnsupportedLayerError` for an operation without a rule when
    ``method='analytic'``.
    """
    install()
    _check_forward(model)
    try:
        capture, out = _run(model, size, method, real=False)
    except RFMapError:
        raise
    except Exception:  # a forward that wants real values, or an op measured on them
        try:
            capture, out = _run(model, size, method, real=True)
        except (RFMapError, GiveUp):
            raise
        except Exception as exc:
            raise ModelError(
                f"the model's forward failed on input size {list(size)}: "
                f"{type(exc).__name__}: {_one_line(exc)}"
            ) from exc
    return _finish(capture, out)


def _check_forward(model: Any) -> None:
    """A clear error for a forward that needs more than the one input rfmap feeds it."""
    import inspect

    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in params if p.kind in kinds or p.kind is p.VAR_POSITIONAL]
    if not positional:
        raise ModelError("the model's forward takes no input")
    required = [
        p.name
        for p in params[1:]
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        required = []
    if required:
        raise ModelError(
            f"the model's forward needs more inputs than one tensor ({', '.join(required)} "
            "too); rfmap feeds it the input alone: wrap the model so that it takes one tensor"
        )


def _finish(capture: _Capture, out: Any) -> Traced:
    torch = require_torch()
    from torch.utils._pytree import tree_leaves

    b = capture.builder
    outputs = []
    for leaf in tree_leaves(out):
        if isinstance(leaf, torch.Tensor):
            ref = capture.ref(leaf)
            if ref is not None and not ref.constant:
                outputs.append(ref)
    if not outputs:
        raise ModelError("the model's output does not depend on its input")
    aliases: dict[str, str] = {}
    for table in (capture.aliases, capture.fx_aliases):
        for name, ref in table.items():
            if name and name not in aliases and not ref.constant:
                try:
                    aliases[name] = b.merged(ref, f"{name}.merge")
                except Unsupported:
                    continue  # no grid (pooled tokens): not a layer one can ask for
    # rows of leaf modules show the shape of the module's output
    for name, ref in capture.aliases.items():
        record = b.nodes.get(name)
        if record is not None and len(ref.parts) == 1 and ref.parts[0].node == name:
            record.shape = tuple(ref.shape)
    try:
        graph = b.graph(outputs)
    except Unsupported as exc:
        raise GiveUp(f"the output: {exc}") from None
    return Traced(graph, aliases, list(b.measured), list(b.notes))


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def copy_if_lazy(model: Any) -> Any:
    """A deep copy of ``model`` if it has lazy modules (running them would change it)."""
    torch = require_torch()
    lazy = torch.nn.parameter.is_lazy
    if any(
        lazy(t)
        for m in model.modules()
        for own in (m._parameters, m._buffers)
        for t in own.values()
    ):
        return copy.deepcopy(model)
    return model
