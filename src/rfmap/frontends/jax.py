"""Receptive fields of JAX functions and Flax modules: jaxprs traced on abstract shapes.

:func:`jax_rf` turns a model into a jaxpr with ``jax.make_jaxpr`` on a
``jax.ShapeDtypeStruct`` input (nothing is computed, no weights are needed: a Flax
linen module is initialised with ``jax.eval_shape``), then maps every primitive onto
the tensor algebra of :mod:`rfmap.builder` through the rules of
:mod:`rfmap.frontends.jax_rules`, and analyses the graph with
:func:`rfmap.receptive.graph_rf`: the same :class:`~rfmap.receptive.ReceptiveField` as
for PyTorch models.  (:mod:`rfmap.frontends.jax_windows` holds the rules of the
operations that read neighbourhoods.)

* **Models.**  A plain function ``f(x)``; a Flax linen module (``init`` with
  ``jax.random.PRNGKey(0)``, then ``apply``); a Flax nnx module (split into graph and
  state, called with the state abstract); a Keras 3 model on the JAX backend (see
  :mod:`rfmap.frontends.keras`).
* **Axes.**  ``input_size`` is ``(C, *spatial)`` as for PyTorch; with
  ``channels="last"`` (the JAX convention, the default) the model is fed
  ``(1, *spatial, C)``, with ``channels="first"`` ``(1, C, *spatial)``.
* **Names.**  Nodes are named after the Flax module path (or Keras layer) that runs
  them, from the jaxpr's name stack: ``Block_0.conv1.conv``; the module path itself
  (``Block_0.conv1`` or ``Block_0/conv1``) names the module's output for ``layer``.
* **Unknown primitives.**  A primitive without a rule is measured on its own with the
  gradient (``method="auto"``, flagged in the report) or reported
  (``method="analytic"``); :func:`register_jax_rule` adds a rule.
* **Measurement.**  :func:`measure_jax_rf` backpropagates one output unit through a
  *linearised* copy of the jaxpr in float64 (:mod:`rfmap.frontends.jax_measure`), the
  independent check of the analysis (``rfmap model --measure``).

Needs ``jax`` (``pip install 'rfmap[jax]'``; Flax for Flax models).
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

from ..builder import GraphBuilder, TensorRef, Unsupported
from ..errors import InvalidSpecError, ModelError, RFMapError, UnsupportedLayerError
from ..measure import MeasuredRF
from ..receptive import ReceptiveField, graph_rf
from . import jax_windows  # noqa: F401  (registers the window rules)
from .base import Traced
from .jax_rules import JAX_RULES, JaxRule, register_jax_rule, rule_for, short_name

__all__ = [
    "JAX_RULES",
    "Channels",
    "JaxContext",
    "JaxModel",
    "JaxRule",
    "Method",
    "TracedJax",
    "jax_rf",
    "measure_jax_rf",
    "register_jax_rule",
    "trace_jax",
]

#: Largest constant (elements) evaluated to learn static indices or fixed matrices.
_MAX_CONSTANT = 1 << 22
#: Largest spatial axis analysed (the analysis holds a few arrays of this length per node).
MAX_EXTENT = 1 << 24


class Channels(str, enum.Enum):
    """Where the channels of the input go: ``last`` ``(1, *spatial, C)`` (JAX, Keras) or
    ``first`` ``(1, C, *spatial)`` (PyTorch, ONNX)."""

    LAST = "last"
    FIRST = "first"


class Method(str, enum.Enum):
    """``auto``: derive, measure only primitives without a rule; ``analytic``: derive or
    raise :class:`~rfmap.errors.UnsupportedLayerError`; ``measure``: the gradient for
    the whole model."""

    AUTO = "auto"
    ANALYTIC = "analytic"
    MEASURE = "measure"


def _enum(kind: type[enum.Enum], value: Any, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise InvalidSpecError(f"{name} must be one of {choices}, got {value!r}") from None


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


class _GiveUp(UnsupportedLayerError):
    """An operation can be neither derived nor measured alone: measure the whole model
    (``method="auto"``; :func:`trace_jax` raises it as it is)."""


# -- the model, as a function of (variables, x) -----------------------------------------


@dataclass
class JaxModel:
    """A model as ``fn(variables, x)`` on one input shape (see :func:`as_jax_model`).

    ``variables`` may be abstract (``jax.ShapeDtypeStruct`` leaves): the analysis needs
    shapes only, and the gradient check replaces weights by positive constants.
    ``root`` is the name-stack component of the model itself (dropped from names).
    """

    fn: Callable[[Any, Any], Any]
    variables: Any
    input_shape: tuple[int, ...]
    spatial_dims: tuple[int, ...]
    kind: str = "function"
    root: str | None = None
    scopes: str = "join"
    dtype: Any = None
    _traced: dict[Method, TracedJax] = field(default_factory=dict, init=False, repr=False)
    _gradients: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.spatial_dims)

    @property
    def input_size(self) -> tuple[int, ...]:
        """Spatial size of the input."""
        return tuple(self.input_shape[d] for d in self.spatial_dims)

    def abstract_input(self) -> Any:
        """The input as a ``jax.ShapeDtypeStruct``."""
        return jax.ShapeDtypeStruct(self.input_shape, self.dtype or np.float32)

    def trace(self, method: Method | str = Method.AUTO) -> TracedJax:
        """The traced graph (cached per method)."""
        mode = _enum(Method, method, "method")
        if mode not in self._traced:
            self._traced[mode] = _trace(self, mode)
        return self._traced[mode]

    def receptive_field(
        self, layer: str | None = None, method: Method | str = Method.AUTO
    ) -> ReceptiveField:
        """The receptive field of ``layer`` (default: the output); see :func:`jax_rf`."""
        from .jax_measure import measured_rf

        mode = _enum(Method, method, "method")
        if mode is Method.MEASURE:
            return measured_rf(self, None, layer)
        try:
            traced = self.trace(mode)
        except _GiveUp as exc:
            try:
                return measured_rf(self, None, layer, reason=f"measured as a whole: {exc}")
            except RFMapError as failed:
                raise ModelError(f"{exc}; measuring the whole model failed too: {failed}") from None
        return graph_rf(traced.graph, traced.resolve(layer), notes=traced.notes)

    def measure(self, unit: Sequence[int] | None = None, layer: str | None = None) -> MeasuredRF:
        """The gradient support of ``unit`` of ``layer``; see :func:`measure_jax_rf`.

        Units and layers are those of the analysis when the model was traced.
        """
        from .jax_measure import measure_unit

        return measure_unit(self, unit, layer)

    def jaxpr(self) -> ClosedJaxpr:
        """``make_jaxpr`` of the model on abstract variables and input (nothing runs)."""
        variables = jax.tree_util.tree_map(_abstract, self.variables)
        try:
            return jax.make_jaxpr(self.fn)(variables, self.abstract_input())
        except RFMapError:
            raise
        except Exception as exc:
            hint = ""
            if self.kind == "flax.linen" and "immutable" in str(exc):
                hint = (
                    "; build the module in inference mode (BatchNorm(use_running_average="
                    "True)), or give rfmap a function that applies it so"
                )
            raise ModelError(
                f"the model failed on input shape {list(self.input_shape)} "
                f"(channels {'first' if self.spatial_dims[0] == 2 else 'last'}): "
                f"{_one_line(exc)}{hint}"
            ) from exc


def _abstract(leaf: Any) -> Any:
    if isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype)
    return leaf


def input_layout(
    input_size: Sequence[int], channels: Channels | str = Channels.LAST
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input shape (with a batch of 1) and its spatial dims for ``(C, *spatial)``.

    >>> input_layout((3, 32, 24))
    ((1, 32, 24, 3), (1, 2))
    >>> input_layout((3, 32, 24), "first")
    ((1, 3, 32, 24), (2, 3))
    """
    from ..loading import parse_input_size

    size = parse_input_size(input_size)
    order = _enum(Channels, channels, "channels")
    c, spatial = size[0], size[1:]
    if max(spatial) > MAX_EXTENT:
        raise InvalidSpecError(
            f"input size {list(size)}: a spatial axis of more than {MAX_EXTENT} positions "
            "is more than the analysis holds"
        )
    if order is Channels.LAST:
        return (1, *spatial, c), tuple(range(1, len(spatial) + 1))
    return (1, c, *spatial), tuple(range(2, len(spatial) + 2))


# -- the interpreter --------------------------------------------------------------------


@dataclass
class _Capture:
    """Where a value the user may ask for lives: an equation's result, by path."""

    path: tuple[int, ...]
    index: int
    ref: TensorRef


class JaxContext:
    """What a rule sees: the builder, the equation, and constant values.

    ``name`` is the node name to use (made unique by the builder, prefixed with the
    module path), ``op`` the primitive's name for the table.
    """

    def __init__(
        self,
        tracer: _Tracer,
        frame: _Frame,
        eqn: Any,
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> None:
        self._tracer = tracer
        self._frame = frame
        self.eqn = eqn
        self.path = path
        self.stack = stack
        self.op: str = eqn.primitive.name
        self.name: str = short_name(self.op)

    @property
    def builder(self) -> GraphBuilder:
        """The :class:`~rfmap.builder.GraphBuilder` collecting the graph."""
        return self._tracer.builder

    def value(self, atom: Any) -> np.ndarray | None:
        """The value of operand ``atom`` if it is a known constant (a literal, a closed-over
        constant, or computed from those), else None (weights, values of the input)."""
        return self._frame.value(atom)

    def call(self, jaxpr: Any, ins: Sequence[TensorRef], atoms: Sequence[Any]) -> list[TensorRef]:
        """Trace sub-jaxpr ``jaxpr`` (closed or open) on ``ins`` (the operands ``atoms``)."""
        values = [self._value_of(atom) for atom in atoms]
        return self.call_with(jaxpr, ins, values)[0]

    def _value_of(self, atom: Any) -> Callable[[], Any]:
        return lambda: self.value(atom)

    def call_with(
        self,
        jaxpr: Any,
        ins: Sequence[TensorRef],
        values: Sequence[Callable[[], Any]],
    ) -> tuple[list[TensorRef], Callable[[int], np.ndarray | None]]:
        """Trace ``jaxpr`` on ``ins``, whose constant values ``values[i]()`` gives (None:
        unknown); return its results and a function giving the value of result ``k``
        when it is a known constant (a loop counter, say)."""
        return self._tracer.run_sub(self._frame, jaxpr, ins, values, self.path, self.stack)


class _Frame:
    """The state of one jaxpr being traced: tensors, and constants known or computable."""

    def __init__(self, known: dict[Any, Callable[[], Any]]) -> None:
        self.env: dict[Any, TensorRef] = {}
        self.known: dict[Any, Callable[[], Any]] = known  # var -> its value, lazily
        self.values: dict[Any, np.ndarray | None] = {}
        self.producers: dict[Any, tuple[Any, int]] = {}  # constant var -> (eqn, index)

    def ref(self, builder: GraphBuilder, atom: Any) -> TensorRef:
        if not isinstance(atom, Literal) and atom in self.env:
            return self.env[atom]
        return builder.constant(getattr(atom.aval, "shape", ()))

    def value(self, atom: Any) -> np.ndarray | None:
        if isinstance(atom, Literal):
            return np.asarray(atom.val)
        if atom in self.values:
            return self.values[atom]
        out: np.ndarray | None = None
        if atom in self.known:
            got = self.known[atom]()
            out = None if got is None else np.asarray(got)
        elif atom in self.producers and atom not in self.env:
            eqn, index = self.producers[atom]
            out = self._evaluate(eqn, index)
        self.values[atom] = out
        return out

    def _evaluate(self, eqn: Any, index: int) -> np.ndarray | None:
        sizes = [math.prod(getattr(v.aval, "shape", ())) for v in (*eqn.invars, *eqn.outvars)]
        if sum(sizes) > _MAX_CONSTANT:
            return None
        args = [self.value(v) for v in eqn.invars]
        if any(a is None for a in args):
            return None
        try:
            with jax.ensure_compile_time_eval():
                out = eqn.primitive.bind(*args, **eqn.params)
        except Exception:
            return None
        outs = out if eqn.primitive.multiple_results else [out]
        for v, o in zip(eqn.outvars, outs, strict=False):
            self.values[v] = np.asarray(o)
        return self.values.get(eqn.outvars[index])


def _constant(value: Any) -> Callable[[], Any]:
    return lambda: value


def _tidy(ref: TensorRef) -> TensorRef:
    """Without blocks of no elements (a tensor without elements is constant)."""
    parts = tuple(p for p in ref.parts if all(hi > lo for lo, hi in p.region))
    empty = 0 in ref.shape
    if len(parts) == len(ref.parts) and not empty:
        return ref
    return TensorRef(ref.shape, () if empty else parts)


def _name_stack(eqn: Any) -> list[str]:
    text = str(getattr(eqn.source_info, "name_stack", "") or "")
    return [part for part in text.split("/") if part]


def _scope_name(stack: Sequence[str], root: str | None, style: str) -> str:
    """The module path of a name stack: its parts joined with dots (``join``), or its
    innermost part (``last``, when every scope is a full path); ``root`` is dropped.

    >>> _scope_name(("Net", "Block_0", "conv1"), "Net", "join")
    'Block_0.conv1'
    """
    parts = list(stack)
    if parts and root is not None and parts[0] == root:
        parts = parts[1:]
    if style == "last":
        return parts[-1] if parts else ""
    return ".".join(parts)


class _Tracer:
    """Walks a jaxpr (and its sub-jaxprs), calling the rules."""

    def __init__(self, ndim: int, method: Method, root: str | None, style: str) -> None:
        self.builder = GraphBuilder(ndim)
        self.method = method
        self.root = root
        self.style = style
        self.notes: list[str] = []
        self.scopes: dict[str, _Capture] = {}  # module path -> its last result
        self.captures: dict[str, _Capture] = {}  # node -> the last result it is part of
        self.last_frame: _Frame | None = None

    def run(
        self,
        jaxpr: Jaxpr,
        consts: Sequence[Any],
        ins: Sequence[TensorRef],
        known: dict[Any, Callable[[], Any]],
        scope: tuple[str, ...],
        path: tuple[int, ...],
    ) -> list[TensorRef]:
        frame = _Frame(known)
        for var, const in zip(jaxpr.constvars, consts, strict=True):
            frame.known[var] = _constant(const)
        for var, ref in zip(jaxpr.invars, ins, strict=True):
            if not ref.constant:
                frame.env[var] = ref
        b = self.builder
        for i, eqn in enumerate(jaxpr.eqns):
            refs = [frame.ref(b, v) for v in eqn.invars]
            if all(r.constant for r in refs):
                for k, v in enumerate(eqn.outvars):
                    frame.producers[v] = (eqn, k)
                continue
            stack = (*scope, *_name_stack(eqn))
            here = self._scope(stack)
            ctx = JaxContext(self, frame, eqn, (*path, i), stack)
            previous = b.scope
            b.scope = here
            try:
                outs = self._apply(ctx, eqn, refs)
            finally:
                b.scope = previous
            for k, (var, ref) in enumerate(zip(eqn.outvars, outs, strict=True)):
                if ref.constant:
                    frame.producers[var] = (eqn, k)
                    continue
                frame.env[var] = ref
                capture = _Capture((*path, i), k, ref)
                for p in ref.parts:
                    self.captures[p.node] = capture
                for j in range(1, len(stack) + 1):
                    name = self._scope(stack[:j])
                    if name:
                        self.scopes[name] = capture
        self.last_frame = frame
        return [frame.ref(b, v) for v in jaxpr.outvars]

    def run_sub(
        self,
        frame: _Frame,
        jaxpr: Any,
        ins: Sequence[TensorRef],
        values: Sequence[Callable[[], Any]],
        path: tuple[int, ...],
        stack: tuple[str, ...],
    ) -> tuple[list[TensorRef], Callable[[int], np.ndarray | None]]:
        if isinstance(jaxpr, ClosedJaxpr):
            inner, consts = jaxpr.jaxpr, jaxpr.consts
        else:
            inner, consts = jaxpr, ()
        if len(inner.invars) != len(ins):
            raise Unsupported("a sub-jaxpr whose inputs do not match the operands")
        known = {
            var: value
            for var, value, ref in zip(inner.invars, values, ins, strict=True)
            if ref.constant
        }
        refs = self.run(inner, consts, ins, known, stack, path)
        sub = self.last_frame
        assert sub is not None
        outvars = inner.outvars

        def value(k: int) -> np.ndarray | None:
            return None if not refs[k].constant else sub.value(outvars[k])

        return refs, value

    def _scope(self, stack: Sequence[str]) -> str:
        return _scope_name(stack, self.root, self.style)

    def _apply(self, ctx: JaxContext, eqn: Any, refs: list[TensorRef]) -> list[TensorRef]:
        name = eqn.primitive.name
        rule = rule_for(eqn.primitive)
        if rule is None:
            return self._fallback(ctx, eqn, refs, f"no rule for the JAX primitive {name!r}")
        try:
            outs = rule(ctx, eqn, refs)
        except Unsupported as exc:
            return self._fallback(ctx, eqn, refs, f"the JAX primitive {name!r}: {exc}")
        result = [_tidy(r) for r in ([outs] if isinstance(outs, TensorRef) else outs)]
        shapes = [tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars]
        got = [tuple(r.shape) for r in result]
        if got != [tuple(int(n) for n in s) for s in shapes]:
            raise InvalidSpecError(
                f"the rule for the JAX primitive {name!r} returned shapes {got}, "
                f"the primitive has {[list(s) for s in shapes]}"
            )
        return result

    def _fallback(
        self, ctx: JaxContext, eqn: Any, refs: list[TensorRef], reason: str
    ) -> list[TensorRef]:
        where = self.builder.scope or "the top level"
        if self.method is Method.ANALYTIC:
            raise UnsupportedLayerError(
                f"{reason} (in {where}); method 'auto' measures it with the gradient, or "
                "register a rule with rfmap.frontends.jax.register_jax_rule"
            )
        from .jax_measure import measure_eqn

        try:
            outs = measure_eqn(ctx, eqn, refs)
        except _GiveUp as exc:
            raise _GiveUp(
                f"{reason} (in {where}), and it cannot be measured alone: {exc}"
            ) from None
        names = sorted({p.node for r in outs for p in r.parts if p.node in self.builder.measured})
        if names:
            self.notes.append(
                f"{', '.join(names)}: {reason}; its windows were measured with the gradient"
            )
        return outs


@dataclass
class TracedJax(Traced):
    """A traced JAX model: the graph, names, and where each node's value is computed."""

    model: JaxModel | None = None
    closed: ClosedJaxpr | None = None
    outputs: list[TensorRef] = field(default_factory=list)
    output_index: int = 0
    captures: dict[str, _Capture] = field(default_factory=dict)
    scopes: dict[str, _Capture] = field(default_factory=dict)

    def capture(self, layer: str | None) -> tuple[_Capture | None, str]:
        """Where ``layer`` (default: the first output) is computed: ``(capture, node)``;
        the capture is None for the model's output."""
        node = self.resolve(layer)
        if layer is None or node == self.graph.output:
            return None, node
        for name in (layer, layer.replace("/", ".")):
            if name in self.scopes:
                return self.scopes[name], node
        if node in self.captures:
            return self.captures[node], node
        raise InvalidSpecError(
            f"layer {layer!r} is an intermediate node of one operation, which the gradient "
            "check cannot reach; name a module or an operation's node"
        )


def trace_jax(
    model: Any,
    input_size: Sequence[int],
    *,
    method: Method | str = Method.AUTO,
    channels: Channels | str = Channels.LAST,
) -> TracedJax:
    """Trace ``model`` (a function ``f(x)``, a Flax module, a Keras model on JAX) into a
    graph, on an input of ``input_size`` ``(C, *spatial)``."""
    from .jax_models import as_jax_model

    return as_jax_model(model, input_size, channels).trace(method)


def _trace(jm: JaxModel, method: Method) -> TracedJax:
    closed = jm.jaxpr()
    jaxpr = closed.jaxpr
    tracer = _Tracer(jm.ndim, method, jm.root, jm.scopes)
    b = tracer.builder
    x = b.input("input", jm.input_shape, jm.spatial_dims)
    ins = [b.constant(getattr(v.aval, "shape", ())) for v in jaxpr.invars[:-1]] + [x]
    outs = tracer.run(jaxpr, closed.consts, ins, {}, (), ())
    dependent = [r for r in outs if not r.constant]
    if not dependent:
        empty = [list(r.shape) for r in outs if not math.prod(r.shape)]
        if empty:
            raise ModelError(f"the model's output has no elements (shape {empty[0]})")
        raise ModelError("the model's output does not depend on its input")
    output_index = next(k for k, r in enumerate(outs) if not r.constant)
    b.scope = ""
    graph = b.graph(dependent)
    aliases: dict[str, str] = {}
    for name, capture in tracer.scopes.items():
        node = capture.ref.parts[0].node if len(capture.ref.parts) == 1 else None
        if node is None or name in graph.nodes:
            continue
        aliases[name] = node
        aliases.setdefault(name.replace(".", "/"), node)
    return TracedJax(
        graph,
        aliases,
        list(b.measured),
        list(tracer.notes),
        model=jm,
        closed=closed,
        outputs=dependent,
        output_index=output_index,
        captures=tracer.captures,
        scopes=tracer.scopes,
    )


# -- the public entry points ------------------------------------------------------------


def jax_rf(
    model: Any,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    method: Method | str = Method.AUTO,
    channels: Channels | str = Channels.LAST,
) -> ReceptiveField:
    """Receptive field of a JAX function, Flax module or Keras model (JAX backend).

    Parameters
    ----------
    model
        ``f(x)``, a Flax linen module (initialised with ``jax.random.PRNGKey(0)`` on
        an abstract input), a Flax nnx module, or a ``keras.Model`` on the JAX backend.
    input_size
        ``(C, H, W)`` for 2D models, ``(C, L)`` for 1D, ``(C, D, H, W)`` for 3D.
    layer
        A graph node (``Block_0.conv1.conv``) or a module path (``Block_0.conv1`` or
        ``Block_0/conv1``; a Keras layer name); default: the output.
    method
        ``"auto"``, ``"analytic"`` or ``"measure"`` (see :class:`Method`).
    channels
        ``"last"`` (default): the model takes ``(1, *spatial, C)``; ``"first"``:
        ``(1, C, *spatial)``.

    >>> import jax.numpy as jnp
    >>> from jax import lax
    >>> w = jnp.ones((3, 3, 1, 4))
    >>> def net(x):   # a 3x3 convolution, then a 2x2 max-pool, channels last
    ...     y = lax.conv_general_dilated(x, w, (1, 1), "SAME",
    ...                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ...     return lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    >>> r = jax_rf(net, (1, 16, 16))
    >>> r.receptive_field, r.stride, r.padding, r.grid
    ((4, 4), (2, 2), (1, 1), (8, 8))
    """
    from .jax_models import as_jax_model

    return as_jax_model(model, input_size, channels).receptive_field(layer, method)


def measure_jax_rf(
    model: Any,
    input_size: Sequence[int],
    unit: Sequence[int] | None = None,
    *,
    layer: str | None = None,
    channels: Channels | str = Channels.LAST,
) -> MeasuredRF:
    """Measure which input positions output ``unit`` of ``model`` depends on.

    The jaxpr is run in float64 on a positive input with every weight positive and
    every non-linearity linearised (max as sum...), so a position has a non-zero
    gradient exactly when some path links it to the unit
    (:mod:`rfmap.frontends.jax_measure`).  ``unit`` indexes the output grid (default:
    its centre), as the analysis defines it.
    """
    from .jax_models import as_jax_model

    jm = as_jax_model(model, input_size, channels)
    with contextlib.suppress(RFMapError):
        jm.trace()  # units and layers as the analysis names them, when it can
    return jm.measure(unit, layer)
