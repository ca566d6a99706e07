"""Receptive fields of ONNX models measured with onnxruntime, by perturbation.

Two measurements, both independent of the rules:

* :func:`measure_node` measures one operator without a rule: a one-node model is run on
  random inputs, and each input hyperplane (all positions with one coordinate along one
  axis) is changed in turn (up, down, and redrawn); the output units that change read
  that coordinate.  The result is one :class:`~rfmap.windows.Table` window per axis, as
  the PyTorch frontend measures unknown operations with the gradient.
* :func:`measure_rf` measures the box one output unit of a whole model depends on.  The
  model is *linearised* first, as :mod:`rfmap.measure` does for PyTorch: weights become
  ones and biases zeros, activations and normalisations the identity (normalisations
  and softmax keep their reach as ``x + max(x)`` over their axes), average pools become
  max-pools, products of two computed tensors sums.  Every value is then a sum of
  non-negative terms and is zero on a zero input, so an output unit is non-zero exactly
  when a changed input position reaches it (overflow to infinity only keeps it
  non-zero).  The first and last input rows that reach the unit are found by bisection
  over prefixes and suffixes of rows, ``2 log2(n)`` runs per axis.

Needs onnxruntime (``pip install 'rfmap[onnx]'``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..builder import GraphBuilder, Part, TensorRef, plain_layout
from ..errors import InvalidSpecError, MapTooLargeError, ModelError
from ..receptive import (
    ReceptiveField,
    _normalise_unit,
    measured_receptive_field,
)
from ..windows import BROADCAST, IDENTITY, Table, Window
from .onnx_rules import Opaque, Value, _words

__all__ = [
    "MeasureFailed",
    "MeasuredBox",
    "linearised",
    "measure_model_rf",
    "measure_node",
    "measure_rf",
    "require_onnxruntime",
]

#: The most one-node runs spent measuring one operator.
MAX_NODE_RUNS = 4096
#: The largest input (elements, batch included) fed to onnxruntime.
MAX_INPUT_ELEMENTS = 1 << 28


class MeasureFailed(Exception):
    """An operator cannot be measured on its own."""


def require_onnxruntime() -> Any:
    """The onnxruntime module, or :class:`~rfmap.errors.ModelError` if not installed."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            "measuring ONNX models needs onnxruntime: pip install 'rfmap[onnx]'"
        ) from None
    return onnxruntime


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def session(model: Any, threads: int = 1) -> Any:
    """An onnxruntime CPU session of ``model`` (quiet, ``threads`` threads)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelError(f"onnxruntime cannot load the model: {_one_line(exc)}") from exc


def _np_dtype(elem_type: int) -> Any:
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        return None


# -- one operator -----------------------------------------------------------------------


def _strip_external(tensor: Any) -> Any:
    """An in-memory copy of an initializer stored in external data: ones (its values
    are never read from a path the model names)."""
    from onnx import numpy_helper

    dtype = _np_dtype(tensor.data_type) or np.float32
    return numpy_helper.from_array(np.ones(tuple(tensor.dims), dtype=dtype), tensor.name)


def measure_node(
    model: Any,
    node: Any,
    ins: Sequence[Value],
    b: GraphBuilder,
    label: str,
    types: dict[str, Any],
    *,
    trials: int = 3,
    max_runs: int = MAX_NODE_RUNS,
) -> list[Value]:
    """Measure one operator by perturbation and add its nodes to ``b`` (flagged measured).

    Raises :class:`MeasureFailed` when the operator cannot be measured alone (inputs
    that are not plain feature maps, outputs of another rank, too many positions...).
    """
    dep = [i for i, v in enumerate(ins) if isinstance(v, TensorRef)]
    layouts: dict[int, dict[int, int]] = {}
    for i in dep:
        ref = ins[i]
        assert isinstance(ref, TensorRef)
        dims = ref.spatial_dims()
        if dims is None:
            raise MeasureFailed("an input is not a plain feature map")
        layouts[i] = dims
    sizes = [math.prod(v.shape) for v in ins if isinstance(v, (TensorRef, Opaque)) and v.shape]
    if sum(sizes) > MAX_INPUT_ELEMENTS // 16:
        raise MeasureFailed("its inputs are too large to measure")
    try:
        one, feeds = _one_node_model(model, node, ins, types)
    except MeasureFailed:
        raise
    except Exception as exc:
        raise MeasureFailed(f"it cannot be made a model of its own: {_one_line(exc)}") from exc
    try:
        sess = session(one)
        base = sess.run(None, feeds)
        again = sess.run(None, feeds)
    except ModelError as exc:
        raise MeasureFailed(str(exc)) from exc
    except Exception as exc:
        raise MeasureFailed(f"onnxruntime cannot run it: {_one_line(exc)}") from exc
    rng = np.random.default_rng(0)
    return _measured_outputs(
        node, ins, b, label, layouts, sess, feeds, base, again, rng, trials, max_runs
    )


def _one_node_model(
    model: Any, node: Any, ins: Sequence[Value], types: dict[str, Any]
) -> tuple[Any, dict[str, np.ndarray]]:
    """A model of ``node`` alone, and random inputs for the inputs that depend on the
    model input (constants are initializers; unread ones get placeholders)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    graph_inputs = []
    initializers: list[Any] = []
    for i, (name, value) in enumerate(zip(node.input, ins, strict=False)):
        if not name or name in feeds or any(t.name == name for t in initializers):
            continue
        elem = types.get(name, (None, 0))[1] or TensorProto.FLOAT
        if isinstance(value, TensorRef):
            dtype = _np_dtype(elem)
            if dtype is None or dtype.kind != "f":
                raise MeasureFailed(f"input {i} is not a floating-point tensor")
            feeds[name] = rng.standard_normal(value.shape).astype(dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, value.shape))
        elif isinstance(value, np.ndarray):
            initializers.append(numpy_helper.from_array(value, name))
        elif isinstance(value, Opaque):
            if value.load is not None:
                initializers.append(numpy_helper.from_array(value.load(), name))
                continue
            dtype = _np_dtype(elem)
            if value.shape is None or dtype is None:
                raise MeasureFailed(f"input {i} is a constant of unknown shape or type")
            filler = rng.standard_normal(value.shape) if dtype.kind == "f" else np.ones(value.shape)
            initializers.append(numpy_helper.from_array(filler.astype(dtype), name))
    outputs = [helper.make_empty_tensor_value_info(name) for name in node.output if name]
    graph = helper.make_graph([node], "rfmap_measure", graph_inputs, outputs, initializers)
    one = helper.make_model(graph, opset_imports=list(model.opset_import))
    one.ir_version = model.ir_version
    return one, feeds


def _measured_outputs(
    node: Any,
    ins: Sequence[Value],
    b: GraphBuilder,
    label: str,
    layouts: dict[int, dict[int, int]],
    sess: Any,
    feeds: dict[str, np.ndarray],
    base: list[np.ndarray],
    again: list[np.ndarray],
    rng: Any,
    trials: int,
    max_runs: int,
) -> list[Value]:
    """Perturb every input hyperplane and add a measured node per output."""
    dep = sorted(layouts)
    if any(not _same(a, c) for a, c in zip(base, again, strict=True)):
        raise MeasureFailed("its output is not deterministic")
    first = ins[dep[0]]
    assert isinstance(first, TensorRef)
    out_dims = layouts[dep[0]]
    rank = len(first.shape)
    mapped = [k for k, out in enumerate(base) if np.ndim(out) == rank]
    if not mapped:
        raise MeasureFailed("its outputs have another number of dims than its input")
    runs = trials * sum(feeds[node.input[i]].shape[d] for i in dep for d in layouts[i].values())
    if runs > max_runs:
        raise MeasureFailed(f"measuring it needs {runs} runs, more than {max_runs}")
    # reads[k][i][axis][u]: positions along ``axis`` of dependent input i that unit u of
    # output k reads
    reads: dict[int, dict[int, dict[int, list[set[int]]]]] = {
        k: {
            i: {a: [set() for _ in range(base[k].shape[out_dims[a]])] for a in layouts[i]}
            for i in dep
        }
        for k in mapped
    }
    try:
        for i in dep:
            name = node.input[i]
            for axis, d in layouts[i].items():
                for x in range(feeds[name].shape[d]):
                    for trial in range(trials):
                        changed = _perturbed(sess, feeds, name, d, x, trial, rng)
                        for k in mapped:
                            diff = ~_equal(changed[k], base[k])
                            od = out_dims[axis]
                            other = tuple(a for a in range(diff.ndim) if a != od)
                            for u in np.flatnonzero(diff.any(axis=other)):
                                reads[k][i][axis][int(u)].add(x)
    except Exception as exc:
        raise MeasureFailed(f"onnxruntime failed on a perturbed input: {_one_line(exc)}") from exc
    out_values: list[Value] = [None] * len(node.output)
    for k in mapped:
        shape = tuple(int(n) for n in base[k].shape)
        extents = tuple(shape[out_dims[a]] if a in out_dims else 1 for a in range(b.ndim))
        edges: list[tuple[str, list[Window]]] = []
        for i in dep:
            ref = ins[i]
            assert isinstance(ref, TensorRef)
            source = ref.parts[0].node
            windows: list[Window] = []
            for a in range(b.ndim):
                if a in layouts[i]:
                    table = tuple(tuple(sorted(s)) for s in reads[k][i][a])
                    _check_monotone(table)
                    windows.append(Table(table))
                elif extents[a] == b.extents(source)[a]:
                    windows.append(IDENTITY)
                else:
                    windows.append(BROADCAST)
            edges.append((source, windows))
        name = label if len(mapped) == 1 else f"{label}:{k}"
        node_name = b.add_node(name, node.op_type, extents, edges, shape, measured=True)
        axes: list[int | None] = [None] * len(shape)
        for a, d in out_dims.items():
            axes[d] = a
        layout = plain_layout(shape, axes)
        region = tuple((0, n) for n in shape)
        out_values[k] = TensorRef(shape, (Part(node_name, region, layout),))
    return out_values


def _perturbed(
    sess: Any, feeds: dict[str, np.ndarray], name: str, dim: int, x: int, trial: int, rng: Any
) -> list[np.ndarray]:
    values = feeds[name].copy()
    index = tuple(x if k == dim else slice(None) for k in range(values.ndim))
    if trial == 0:
        values[index] += 10
    elif trial == 1:
        values[index] -= 10
    else:
        values[index] = rng.standard_normal(values[index].shape) * 3
    return list(sess.run(None, {**feeds, name: values}))


def _equal(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a), np.asarray(b)
    same = a == b
    if a.dtype.kind == "f":
        same |= np.isnan(a) & np.isnan(b)
    return np.asarray(same)


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(_equal(a, b).all())


def _check_monotone(table: tuple[tuple[int, ...], ...]) -> None:
    """Windows must move forward with the unit: no window lies wholly before an earlier
    one (a flip, a reordering gather), though neighbours may overlap unevenly (cubic
    taps of weight zero)."""
    first = -(2**62)
    for window in table:
        if not window:
            continue
        if window[-1] < first:
            raise MeasureFailed("it reads positions in another order (a flip or a gather)")
        first = max(first, window[0])


# -- linearisation ----------------------------------------------------------------------

#: Operators replaced by the identity (on their first input).
_IDENTITY_OPS = frozenset(
    _words(
        """
        Relu LeakyRelu PRelu Elu Selu Celu ThresholdedRelu Sigmoid HardSigmoid HardSwish Tanh
        Softplus Softsign Gelu Mish Clip BatchNormalization Dropout Exp Log Sqrt Abs Neg Erf
        Reciprocal Sin Cos Shrink Identity
        """
    )
)
#: Operators with weight inputs (made ones) and bias inputs (left out).
_WEIGHTS = {"Conv": ((1,), (2,)), "ConvTranspose": ((1,), (2,)), "Gemm": ((0, 1), (2,))}
_REDUCE = frozenset(
    _words(
        """
        ReduceMean ReduceSum ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
        ReduceSumSquare ReduceMax
        """
    )
)


class _Linearise:
    """Rewrites a graph node by node (see the module docstring)."""

    def __init__(self, model: Any, input_name: str, types: dict[str, Any]) -> None:
        from onnx import helper

        self.helper = helper
        self.model = model
        self.types = types
        self.opset = next(int(i.version) for i in model.opset_import if i.domain in ("", "ai.onnx"))
        self.inits = {t.name: t for t in model.graph.initializer}
        self.dep = {input_name}
        self.nodes: list[Any] = []
        self.new_inits: list[Any] = []
        self.count = 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"__rfmap_{stem}_{self.count}"

    def shape_of(self, name: str) -> tuple[int, ...] | None:
        if name in self.inits:
            return tuple(int(d) for d in self.inits[name].dims)
        shape = self.types.get(name, (None, 0))[0]
        return None if shape is None else tuple(shape)

    def filled(self, name: str, value: float) -> str:
        """A constant like tensor ``name`` (its shape, float) full of ``value``."""
        from onnx import numpy_helper

        shape = self.shape_of(name)
        elem = self.types.get(name, (None, 0))[1]
        if name in self.inits:
            elem = self.inits[name].data_type
        dtype = _np_dtype(elem) if elem else np.dtype(np.float32)
        if dtype is None or dtype.kind != "f":
            dtype = np.dtype(np.float32)
        array = np.full(shape if shape is not None else (), value, dtype=dtype)
        out = self.fresh("const")
        self.new_inits.append(numpy_helper.from_array(array, out))
        return out

    def rewrite(
        self,
        node: Any,
        op: str,
        inputs: list[str],
        keep: Sequence[str] | None = None,
        **attrs: Any,
    ) -> None:
        """``node`` (its outputs, its attributes named in ``keep``, all if None) as
        operator ``op`` of ``inputs``, with ``attrs`` set."""
        from onnx import NodeProto

        new = NodeProto()
        new.CopyFrom(node)
        new.op_type = op
        del new.input[:]
        new.input.extend(inputs)
        kept = [
            a for a in node.attribute if (keep is None or a.name in keep) and a.name not in attrs
        ]
        del new.attribute[:]
        new.attribute.extend(kept)
        new.attribute.extend(self.helper.make_attribute(k, v) for k, v in attrs.items())
        self.nodes.append(new)

    def emit(self, op: str, inputs: list[str], outputs: list[str], **attrs: Any) -> None:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))

    def reduce_max(self, x: str, axes: list[int], out: str) -> None:
        if self.opset >= 18:
            from onnx import numpy_helper

            name = self.fresh("axes")
            self.new_inits.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), name))
            self.emit("ReduceMax", [x, name], [out], keepdims=1)
        else:
            self.emit("ReduceMax", [x], [out], axes=axes, keepdims=1)

    def mixed(self, node: Any, axes: list[int] | None) -> None:
        """``x + max(x)`` over ``axes``: reaches what a normalisation or softmax reaches."""
        if axes is None:
            self.nodes.append(node)
            return
        x = node.input[0]
        peak = self.fresh("max")
        self.reduce_max(x, axes, peak)
        self.emit("Add", [x, peak], [node.output[0]])

    def rank(self, name: str) -> int | None:
        shape = self.shape_of(name)
        return None if shape is None else len(shape)

    def attr(self, node: Any, name: str, default: Any) -> Any:
        for a in node.attribute:
            if a.name == name:
                return self.helper.get_attribute_value(a)
        return default

    def const_ints(self, name: str) -> list[int] | None:
        from onnx import numpy_helper

        if name in self.inits and not self.inits[name].external_data:
            return [int(v) for v in numpy_helper.to_array(self.inits[name]).reshape(-1)]
        return None

    def node(self, node: Any) -> None:
        op = node.op_type
        depends = [bool(name) and name in self.dep for name in node.input]
        if any(depends):
            self.dep.update(name for name in node.output if name)
        if node.domain not in ("", "ai.onnx") or not any(depends):
            self.nodes.append(node)
            return
        ins = list(node.input)
        if op in _IDENTITY_OPS and depends[0]:
            self.emit("Identity", [ins[0]], [node.output[0]])
        elif op in _WEIGHTS:
            weights, biases = _WEIGHTS[op]
            new = list(ins)
            for i in weights:
                if i < len(ins) and ins[i] and not depends[i]:
                    new[i] = self.filled(ins[i], 1.0)
            for i in biases:
                if i < len(ins) and not depends[i]:
                    new[i] = ""
            while new and not new[-1]:
                new.pop()
            if op == "Gemm":
                keep = ("transA", "transB")
                self.rewrite(node, op, new, keep, alpha=1.0, beta=1.0)
            else:
                self.rewrite(node, op, new)
        elif op in ("MatMul", "Einsum"):
            new = [n if depends[i] else self.filled(n, 1.0) for i, n in enumerate(ins)]
            self.rewrite(node, op, new)
        elif op in ("Add", "Sub", "Sum", "Mean", "Max", "Min", "Concat", "Where"):
            new = [n if depends[i] or not n else self.filled(n, 0.0) for i, n in enumerate(ins)]
            if op == "Where":
                self.emit("Add", new[1:], list(node.output))
            else:
                self.rewrite(node, {"Sub": "Add", "Min": "Max"}.get(op, op), new)
        elif op in ("Mul", "Div", "Pow"):
            if all(depends[:2]):
                self.emit("Add", ins[:2], list(node.output))
            else:
                new = [n if depends[i] else self.filled(n, 1.0) for i, n in enumerate(ins[:2])]
                self.emit("Mul", new, list(node.output))
        elif op in ("AveragePool", "LpPool"):
            geometry = ("auto_pad", "kernel_shape", "pads", "strides", "ceil_mode", "dilations")
            self.rewrite(node, "MaxPool", [ins[0]], geometry)
            del self.nodes[-1].output[1:]
        elif op in ("GlobalAveragePool", "GlobalLpPool"):
            self.emit("GlobalMaxPool", [ins[0]], [node.output[0]])
        elif op in _REDUCE and depends[0]:
            self.reduction(node)
        elif op == "Pad" and depends[0]:
            new = list(ins)
            if len(new) > 2:
                new[2] = ""
            while new and not new[-1]:
                new.pop()
            if any(a.name == "value" for a in node.attribute):
                self.rewrite(node, "Pad", new, value=0.0)
            else:
                self.rewrite(node, "Pad", new)
        elif op in (
            "Softmax",
            "LogSoftmax",
            "Hardmax",
            "LayerNormalization",
            "LpNormalization",
            "InstanceNormalization",
            "GroupNormalization",
            "MeanVarianceNormalization",
        ):
            self.mixed(node, self.mixed_axes(node))
        else:
            self.nodes.append(node)

    def mixed_axes(self, node: Any) -> list[int] | None:
        rank = self.rank(node.input[0])
        if rank is None:
            return None
        op = node.op_type
        if op in ("Softmax", "LogSoftmax", "Hardmax"):
            if self.opset < 13:
                axis = self.attr(node, "axis", 1) % rank
                return list(range(axis, rank))
            return [self.attr(node, "axis", -1) % rank]
        if op == "LayerNormalization":
            return list(range(self.attr(node, "axis", -1) % rank, rank))
        if op == "LpNormalization":
            return [self.attr(node, "axis", -1) % rank]
        if op == "InstanceNormalization":
            return list(range(2, rank))
        if op == "GroupNormalization":
            return list(range(1, rank))
        return [a % rank for a in self.attr(node, "axes", [0, 2, 3])]

    def reduction(self, node: Any) -> None:
        rank = self.rank(node.input[0])
        axes = self.attr(node, "axes", None)
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = self.const_ints(node.input[1])
            if axes is None:
                self.nodes.append(node)
                return
        keep = self.attr(node, "keepdims", 1)
        if not axes:
            if self.attr(node, "noop_with_empty_axes", 0):
                self.emit("Identity", [node.input[0]], [node.output[0]])
                return
            if rank is None:
                self.nodes.append(node)
                return
            axes = list(range(rank))
        if self.opset >= 18:
            from onnx import numpy_helper

            name = self.fresh("axes")
            self.new_inits.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), name))
            self.emit("ReduceMax", [node.input[0], name], [node.output[0]], keepdims=keep)
        else:
            self.emit("ReduceMax", [node.input[0]], [node.output[0]], axes=axes, keepdims=keep)


def linearised(
    model: Any, input_name: str, input_shape: tuple[int, ...], output: str, types: dict[str, Any]
) -> Any:
    """The linearised model (see the module docstring) with ``output`` as its output
    and the input fixed to ``input_shape``."""
    import onnx
    from onnx import helper

    lin = _Linearise(model, input_name, types)
    for node in model.graph.node:
        lin.node(node)
    # keep the nodes ``output`` needs
    producers = {name: k for k, node in enumerate(lin.nodes) for name in node.output}
    needed: set[int] = set()
    stack = [output]
    seen = set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        k = producers.get(name)
        if k is not None and k not in needed:
            needed.add(k)
            stack.extend(n for n in lin.nodes[k].input if n)
            for a in lin.nodes[k].attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.extend(_outer_names(a.g))
    nodes = [n for k, n in enumerate(lin.nodes) if k in needed]
    used = {n for node in nodes for n in node.input} | seen
    inits = []
    for t in [*model.graph.initializer, *lin.new_inits]:
        if t.name in used and t.name != input_name:
            inits.append(_strip_external(t) if t.external_data or t.data_location == 1 else t)
    elem = (
        next((i.type.tensor_type.elem_type for i in model.graph.input if i.name == input_name), 1)
        or onnx.TensorProto.FLOAT
    )
    graph = helper.make_graph(
        nodes,
        "rfmap_linearised",
        [helper.make_tensor_value_info(input_name, elem, input_shape)],
        [helper.make_empty_tensor_value_info(output)],
        inits,
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


def _outer_names(graph: Any) -> list[str]:
    names: list[str] = []
    for node in graph.node:
        names.extend(n for n in node.input if n)
    return names


# -- whole models ---------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredBox:
    """The input box one output unit depends on, measured by perturbation.

    ``box`` is the half-open box ``(start, stop)`` per spatial axis (``(0, 0)`` where
    nothing depends on the input); ``grid`` is the output's spatial grid (empty when the
    output has no spatial dims: all its values count together).
    """

    node: str
    input_size: tuple[int, ...]
    grid: tuple[int, ...]
    unit: tuple[int, ...]
    box: tuple[tuple[int, int], ...]

    @property
    def receptive_field(self) -> tuple[int, ...]:
        """Extent of the box per axis (clipped to the input)."""
        return tuple(stop - start for start, stop in self.box)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "node": self.node,
            "input_size": list(self.input_size),
            "grid": list(self.grid),
            "unit": list(self.unit),
            "box": [list(b) for b in self.box],
            "receptive_field": list(self.receptive_field),
        }


class _Prober:
    """Runs the linearised model on inputs that are one on a block of rows."""

    def __init__(self, model: Any, size: tuple[int, ...], layer: str | None) -> None:
        from .onnx import _graph_input, _inferred_types, _input_layout

        require_onnxruntime()
        graph_input = _graph_input(model)
        self.input_name = graph_input.name
        self.shape, self.spatial = _input_layout(graph_input, size)
        if math.prod(self.shape) > MAX_INPUT_ELEMENTS:
            raise MapTooLargeError(
                f"an input of {math.prod(self.shape):,} elements is too large to measure"
            )
        self.output = self._output_name(model, layer)
        types = _inferred_types(model, self.input_name, self.shape)
        try:
            lin = linearised(model, self.input_name, self.shape, self.output, types)
        except Exception as exc:
            raise ModelError(f"cannot linearise the model to measure it: {_one_line(exc)}") from exc
        self.sess = session(lin, threads=2)
        elem = graph_input.type.tensor_type.elem_type or 1
        self.dtype = _np_dtype(elem) or np.dtype(np.float32)
        zero = self.run(np.zeros(self.shape, dtype=self.dtype))
        self.out_shape = tuple(int(n) for n in zero.shape)
        if np.any(zero != 0):
            raise ModelError(
                "cannot measure this model by perturbation: after linearisation its output "
                "is not zero on a zero input (it holds an operator rfmap cannot linearise)"
            )
        if len(self.out_shape) == len(self.shape):
            self.grid: tuple[int, ...] = tuple(self.out_shape[d] for d in self.spatial)
        else:
            self.grid = ()
        self.input_size = tuple(size[1:])
        self.layer = layer

    @staticmethod
    def _output_name(model: Any, layer: str | None) -> str:
        if layer is None:
            return str(model.graph.output[0].name)
        produced = {name for node in model.graph.node for name in node.output}
        if layer in produced:
            return layer
        for node in model.graph.node:
            if node.name == layer and node.output:
                return str(node.output[0])
        raise InvalidSpecError(f"no node or tensor named {layer!r} in the model")

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return np.asarray(self.sess.run([self.output], {self.input_name: x})[0])
        except Exception as exc:
            raise ModelError(f"onnxruntime failed to run the model: {_one_line(exc)}") from exc

    def reached(self, unit: tuple[int, ...] | None, axis: int, lo: int, hi: int) -> bool:
        """Whether input rows ``[lo, hi)`` along ``axis`` reach ``unit``."""
        x = np.zeros(self.shape, dtype=self.dtype)
        d = self.spatial[axis]
        index = tuple(slice(lo, hi) if k == d else slice(None) for k in range(len(self.shape)))
        x[index] = 1
        out = self.run(x)
        if unit is not None:
            sel = [slice(None)] * out.ndim
            for a, u in enumerate(unit):
                sel[self.spatial[a]] = slice(u, u + 1)
            out = out[tuple(sel)]
        return bool(np.any(out != 0))

    def box(self, unit: tuple[int, ...] | None) -> tuple[tuple[int, int], ...]:
        """The half-open input box ``unit`` (None: the whole output) depends on."""
        out = []
        for axis, n in enumerate(self.input_size):
            if not self.reached(unit, axis, 0, n):
                return tuple((0, 0) for _ in self.input_size)
            lo, hi = 0, n - 1  # the first row: the smallest x with rows [0, x] reaching
            while lo < hi:
                mid = (lo + hi) // 2
                if self.reached(unit, axis, 0, mid + 1):
                    hi = mid
                else:
                    lo = mid + 1
            first = lo
            lo, hi = first, n - 1  # the last row: the largest x with rows [x, n) reaching
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.reached(unit, axis, mid, n):
                    lo = mid
                else:
                    hi = mid - 1
            out.append((first, lo + 1))
        return tuple(out)


def measure_rf(
    model: Any,
    input_size: Sequence[int],
    unit: Sequence[int] | None = None,
    *,
    layer: str | None = None,
) -> MeasuredBox:
    """The input box output ``unit`` of ``model`` (default: the centre unit) depends on,
    measured by perturbation of the linearised model with onnxruntime.

    ``layer`` (an ONNX node or tensor name) measures an intermediate tensor instead.
    """
    prober = _Prober(model, tuple(input_size), layer)
    units = _normalise_unit(unit, prober.grid, layer or "output") if prober.grid else ()
    box = prober.box(units if prober.grid else None)
    return MeasuredBox(layer or "output", prober.input_size, prober.grid, units, box)


def measure_model_rf(
    model: Any,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    reason: str = "",
) -> ReceptiveField:
    """A :class:`~rfmap.receptive.ReceptiveField` measured entirely by perturbation.

    Per axis, the centre unit and its neighbour give the receptive field, the stride and
    the padding (exact when the centre unit's box lies inside the input; ``notes`` says
    when it touches the border), as :func:`rfmap.measure.measure_model_rf` does with the
    gradient.
    """
    prober = _Prober(model, tuple(input_size), layer)
    return measured_receptive_field(
        layer or "output",
        prober.input_size,
        prober.out_shape,
        tuple(prober.grid),
        prober.box,
        how="by perturbation",
        reason=reason,
    )
