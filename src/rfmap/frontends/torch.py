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
from ..windows import IDENTITY, Table, Window
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
    used: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, TensorRef] = field(default_factory=dict)
    leaf_nodes: dict[str, str] = field(default_factory=dict)
    measured_ops: list[str] = field(default_factory=list)

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
            self.keep.append(value)
        return copy_

    # -- names -------------------------------------------------------------------------
    def node_name(self, op: str) -> str:
        """The base name of a node made by ``op``: the module's name for the first node
        of a leaf module, else ``module.op``."""
        scope = self.stack[-1] if self.stack else ""
        count = self.used.get(scope, 0)
        self.used[scope] = count + 1
        if scope and count == 0 and scope in self.leaf_nodes:
            return scope
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


def _make_mode(capture: _Capture) -> Any:
    torch = require_torch()
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten

    Tensor = torch.Tensor

    class Mode(TorchDispatchMode):  # type: ignore[misc]
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            kwargs = kwargs or {}
            flat, spec = tree_flatten((args, kwargs))
            refs = capture.refs
            tracked = [a for a in flat if isinstance(a, Tensor) and id(a) in refs]
            short = _short(func)
            in_place, view = _schema_kinds(func)
            if not tracked:
                if not capture.real:
                    if kwargs.get("device") is not None and str(kwargs["device"]) == "meta":
                        kwargs = {**kwargs, "device": torch.device("cpu")}
                    if any(isinstance(a, Tensor) and a.is_meta for a in flat):
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
            if short in _CONSTANT_LIKE:
                if capture.real:
                    return func(*args, **kwargs)
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
            if in_place and not capture.real and args and not args[0].is_meta:
                raise _NeedReal(
                    f"{short} writes a tensor that depends on the input into a constant"
                )
            if capture.real:
                out = func(*args, **kwargs)
            else:
                out = func(*tree_map(capture.to_meta, args), **tree_map(capture.to_meta, kwargs))
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
        if capture.real or target.is_meta:
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
        if not capture.real and not base.is_meta and not new.constant:
            raise _NeedReal("an in-place write into a constant tensor")
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
    """Measure one operation the rules cannot express, with the gradient."""
    torch = require_torch()
    from torch.utils._pytree import tree_flatten, tree_unflatten

    from ..measure import first_tensor, measure_windows

    what = f"{func} ({name})"
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
        raise GiveUp(f"{what} ({reason})")
    dims = [r.spatial_dims() for r in refs]
    if any(d is None for d in dims):
        raise GiveUp(f"{what} ({reason}) on a tensor whose positions are packed")
    first = refs[0]
    if result.dim() != len(first.shape):
        raise GiveUp(f"{what} ({reason}) changes the number of dims")
    out_dims = dict(dims[0] or {})
    realised = [
        torch.ones(a.shape, dtype=a.dtype) if isinstance(a, torch.Tensor) and a.is_meta else a
        for a in flat
    ]

    def call(*values: Any) -> Any:
        full = list(realised)
        for i, v in zip(range(len(full)), values, strict=False):
            full[i] = v
        a, k = tree_unflatten(full, spec)
        return func(*a, **k)

    mode = torch.utils._python_dispatch._get_current_dispatch_mode()  # type: ignore[attr-defined]
    try:
        with torch.utils._python_dispatch._disable_current_modes(), torch.enable_grad():  # type: ignore[attr-defined]
            measured = measure_windows(call, realised, dep, [d or {} for d in dims], out_dims)
    except RFMapError:
        raise
    except Exception as exc:
        raise GiveUp(f"{what}: measuring it failed: {exc}") from exc
    del mode
    if measured is None:
        raise GiveUp(f"{what} ({reason}) cannot be measured as one op")
    b = capture.builder
    ndim = b.ndim
    shape = tuple(int(n) for n in result.shape)
    extents = [1] * ndim
    for axis, d in out_dims.items():
        extents[axis] = shape[d]
    edges = []
    for ref, windows in zip(refs, measured, strict=True):
        src_ext = b.extents(ref.parts[0].node)
        per_axis: list[Window] = []
        for a in range(ndim):
            if a in windows:
                per_axis.append(Table(windows[a]))
            elif src_ext[a] == extents[a]:
                per_axis.append(IDENTITY)
            else:
                per_axis.append(Table(((0,),) * extents[a]) if src_ext[a] == 1 else IDENTITY)
        edges.append((ref.parts[0].node, per_axis))
    node = b.add_node(
        name, f"{_short(func)} (measured)", tuple(extents), edges, shape, measured=True
    )
    layout = tuple(
        ((axis, shape[d], 1),)
        if shape[d] > 1
        else ((-1, 1, 0),)
        if (axis := next((a for a, dd in out_dims.items() if dd == d), None)) is not None
        else ((-1, shape[d], 0),)
        for d in range(len(shape))
    )
    from ..builder import Part

    ref = TensorRef(shape, (Part(node, tuple((0, n) for n in shape), layout),))
    b.notes.append(f"{what} is not supported ({reason}): measured with the gradient")
    capture.measured_ops.append(node)
    if isinstance(out, (tuple, list)):
        return tuple(ref if i == 0 else None for i in range(len(out)))
    return ref


# -- running the model ---------------------------------------------------------------------


@contextlib.contextmanager
def _module_hooks(capture: _Capture, model: Any) -> Iterator[None]:
    """Name nodes after the modules that run them; apply module rules."""
    torch = require_torch()
    from torch.nn.modules import module as module_mod

    names = capture.names

    def pre(module: Any, args: Any) -> None:
        capture.stack.append(names.get(id(module), capture.stack[-1] if capture.stack else ""))

    def post(module: Any, args: Any, output: Any) -> None:
        name = capture.stack.pop() if capture.stack else ""
        if id(module) not in names:
            return
        from ..measure import first_tensor

        tensor = first_tensor(output)
        if tensor is not None:
            ref = capture.ref(tensor)
            if ref is not None:
                capture.aliases.setdefault(name, ref)
                capture.aliases[name] = ref

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
    with torch.no_grad(), _module_hooks(capture, model), mode:
        out = model(x)
    return capture, out


def trace(model: Any, size: tuple[int, ...], method: str = Method.AUTO) -> Traced:
    """Capture ``model`` on an input of ``size`` (``(C, *spatial)``) into a graph.

    Raises :class:`~rfmap.errors.ModelError` when the forward fails,
    :class:`GiveUp` when an operation can be neither derived nor measured, and
    :class:`~rfmap.errors.UnsupportedLayerError` for an operation without a rule when
    ``method='analytic'``.
    """
    install()
    try:
        capture, out = _run(model, size, method, real=False)
    except (RFMapError, GiveUp):
        raise
    except Exception:  # _NeedReal, or a forward that wants real values
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
    for name, ref in capture.aliases.items():
        if name and not ref.constant:
            aliases[name] = b.merged(ref, f"{name}.merge")
    for name, node in list(aliases.items()):
        aliases.setdefault(name.replace(".", "_"), node)
    # rows of leaf modules carry the module's class as their op
    for name, kind in capture.leaf_nodes.items():
        record = b.nodes.get(name)
        if record is not None:
            record.op = kind
    graph = b.graph(outputs)
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
