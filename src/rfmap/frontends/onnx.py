"""The ONNX frontend: an ``.onnx`` file turned into a layer graph.

:func:`model_rf` reads the model with the ``onnx`` package, fixes its input to the given
size, walks its nodes in order and looks every operator up in the rule registry of
:mod:`rfmap.frontends.onnx_rules` (spatial operators in
:mod:`rfmap.frontends.onnx_spatial`; :func:`register_onnx_rule` adds rules).  Constant
computations (``Shape -> Gather -> Concat`` targets of ``Reshape``, ``Constant`` nodes)
are folded with numpy.  An operator without a rule is measured on its own with
onnxruntime by perturbation (:mod:`rfmap.frontends.onnx_measure`) and flagged, when
onnxruntime is installed; otherwise it is a one-line error naming the operator.

**Input layout.**  ``input_size`` is ``(C, H, W)`` (``(C, L)``, ``(C, D, H, W)``) as for
PyTorch.  The model's input is taken as channels first (``N, C, H, W``) unless its
fixed dims say channels last (``N, H, W, C``, as exported from TensorFlow); a fixed dim
that fits neither is an error; dynamic dims get the given sizes and batch 1.

**Untrusted files.**  Loading parses protobuf (no code runs, nothing is unpickled); the
file size is checked before it is read and the number of nodes after; tensors stored in
external data files are never read (their values are not needed for the receptive
field, and a model may name any path); constants are folded only up to a bounded size.
onnxruntime runs (parts of) the graph only to measure an operator without a rule or for
``--measure``/``method="measure"``.

Needs ``pip install 'rfmap[onnx]'`` (onnx, and onnxruntime for measuring).
"""

from __future__ import annotations

import enum
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..builder import GraphBuilder, TensorRef, Unsupported
from ..errors import InvalidSpecError, ModelError, RFMapError, UnsupportedLayerError
from ..loading import parse_input_size
from ..receptive import ReceptiveField, graph_rf
from .base import Traced
from .onnx_rules import (
    OnnxContext,
    OnnxRule,
    Opaque,
    Value,
    _words,
    register_onnx_rule,
    registered_onnx_ops,
    rule_for,
)
from .onnx_spatial import MAX_EXTENT

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "Method",
    "OnnxContext",
    "OnnxRule",
    "OnnxTraced",
    "load_onnx",
    "measure_rf",
    "model_rf",
    "register_onnx_rule",
    "registered_onnx_ops",
    "trace",
]

#: The largest ``.onnx`` file read (protobuf's own limit is 2 GiB).
MAX_FILE_BYTES = (1 << 31) - 1
#: The most nodes a graph may have.
MAX_NODES = 200_000
#: The largest constant computation folded with numpy (elements in, and out).
MAX_FOLD_ELEMENTS = 1 << 16
#: Initializers up to this size are kept for shape inference (larger ones become inputs).
_INFER_ELEMENTS = 1 << 12

#: Operators never folded: control flow, randomness, string processing.
_NO_FOLD = frozenset(
    _words(
        """
        If Loop Scan SequenceMap RandomNormal RandomUniform RandomNormalLike RandomUniformLike
        Multinomial Bernoulli RegexFullMatch StringSplit StringNormalizer StringConcat
        TfIdfVectorizer
        """
    )
)
#: Operators whose output is no larger than their inputs (or broadcast element-wise).
_SMALL_OUTPUT = frozenset(
    _words(
        """
        Shape Size Gather GatherElements GatherND Slice Squeeze Unsqueeze Reshape Flatten Cast
        CastLike Identity Transpose Concat Split Neg Abs Floor Ceil Round Sign Not Sqrt
        Reciprocal Relu Add Sub Mul Div Mod Pow Max Min Sum Mean Equal Less Greater LessOrEqual
        GreaterOrEqual And Or Xor Where Clip ReduceProd ReduceSum ReduceMax ReduceMin ReduceMean
        ArgMax ArgMin CumSum NonZero Exp Log Sigmoid Tanh Softmax
        """
    )
)


class Method(str, enum.Enum):
    """How :func:`model_rf` gets the receptive field.

    ``auto``: derive it, and measure with onnxruntime only the operators that cannot be
    derived; ``analytic``: derive it or raise
    :class:`~rfmap.errors.UnsupportedLayerError`; ``measure``: measure the whole model
    by perturbation with onnxruntime.
    """

    AUTO = "auto"
    ANALYTIC = "analytic"
    MEASURE = "measure"


def _method(method: Method | str) -> Method:
    try:
        return Method(method)
    except ValueError:
        choices = ", ".join(m.value for m in Method)
        raise InvalidSpecError(f"method must be one of {choices}, got {method!r}") from None


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ModelError(
            "reading ONNX models needs the onnx package: pip install 'rfmap[onnx]'"
        ) from None
    return onnx


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(exc).__name__


# -- loading ----------------------------------------------------------------------------


def load_onnx(model: Any, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """An ``onnx.ModelProto`` from a path (checked and parsed) or a ``ModelProto``.

    The file is read only if it is at most ``max_bytes`` long; it is parsed as protobuf
    (no code runs); external data files are not read.  Raises
    :class:`~rfmap.errors.ModelError` with one line for anything that is not a usable
    ONNX model.
    """
    onnx = _require_onnx()
    if isinstance(model, onnx.ModelProto):
        proto = model
        name = "the model"
    else:
        if not isinstance(model, (str, os.PathLike)):
            raise ModelError(f"an ONNX model must be a path or an onnx.ModelProto, got {model!r}")
        path = Path(model)
        name = repr(str(path))
        if not path.is_file():
            raise ModelError(f"ONNX file not found: {name}")
        try:
            size = path.stat().st_size
            if size == 0:
                raise ModelError(f"ONNX file {name} is empty")
            if size > max_bytes:
                raise ModelError(
                    f"ONNX file {name} has {size:,} bytes, more than the limit of "
                    f"{max_bytes:,} bytes"
                )
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read ONNX file {name}: {_one_line(exc)}") from exc
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(data)
        except Exception as exc:
            raise ModelError(
                f"{name} is not an ONNX model (protobuf parsing failed: {_one_line(exc)})"
            ) from exc
    _check_model(proto, name)
    return proto


def _check_model(proto: Any, name: str) -> None:
    if not proto.HasField("graph") or not proto.graph.node:
        raise ModelError(f"{name} is not an ONNX model with a graph of nodes")
    if not any(imp.domain in ("", "ai.onnx") for imp in proto.opset_import):
        raise ModelError(f"{name} imports no version of the ONNX operator set")
    if len(proto.graph.node) > MAX_NODES:
        raise ModelError(
            f"{name} has {len(proto.graph.node):,} nodes, more than the limit of {MAX_NODES:,}"
        )
    if not proto.graph.output:
        raise ModelError(f"{name} has no graph output")


# -- tensors and attributes -------------------------------------------------------------


def _is_external(tensor: Any) -> bool:
    return bool(tensor.data_location == 1 or tensor.external_data)  # TensorProto.EXTERNAL


def _tensor_value(tensor: Any, what: str) -> np.ndarray | Opaque:
    """A TensorProto as numbers (loaded now if small, later if large), never external."""
    from onnx import numpy_helper

    dims = tuple(int(d) for d in tensor.dims)
    if any(d < 0 for d in dims):
        raise ModelError(f"{what} has negative dims {list(dims)}")
    if _is_external(tensor):
        return Opaque(dims, "stored in external data, which rfmap does not read")
    if tensor.data_type in (0, 8):  # UNDEFINED, STRING
        return Opaque(dims, "not a numeric tensor")

    def load() -> np.ndarray:
        try:
            return np.asarray(numpy_helper.to_array(tensor))
        except Exception as exc:
            raise ModelError(f"{what} is not a valid tensor: {_one_line(exc)}") from exc

    if math.prod(dims) <= MAX_FOLD_ELEMENTS:
        return load()
    return Opaque(dims, load=load)


def _attributes(node: Any, label: str) -> dict[str, Any]:
    """A node's attributes as Python values (tensors as numbers, strings decoded)."""
    from onnx import helper

    out: dict[str, Any] = {}
    for attr in node.attribute:
        try:
            value = helper.get_attribute_value(attr)
        except Exception as exc:
            raise ModelError(f"{label}: attribute {attr.name!r} is invalid") from exc
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode("utf-8", "replace") for v in value]
        elif hasattr(value, "data_type") and hasattr(value, "dims"):
            value = _tensor_value(value, f"{label}: attribute {attr.name!r}")
        out[attr.name] = value
    return out


# -- the input --------------------------------------------------------------------------


def _input_layout(
    value_info: Any, size: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The input shape (batch included) and the dim of every spatial axis."""
    channels, spatial = size[0], size[1:]
    nd = len(spatial)
    name = value_info.name
    tensor_type = value_info.type.tensor_type
    if value_info.type.HasField("tensor_type") and tensor_type.HasField("shape"):
        dims: list[int | None] = [
            int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in tensor_type.shape.dim
        ]
    else:
        dims = [None] * (nd + 2)
    shown = [d if d is not None else "?" for d in dims]
    if len(dims) != nd + 2:
        raise ModelError(
            f"the model input {name!r} has {len(dims)} dims {shown}; --input-size "
            f"{','.join(map(str, size))} needs {nd + 2} (batch, channels and {nd} spatial)"
        )
    batch = dims[0] or 1

    def fits(got: Sequence[int | None], want: Sequence[int]) -> bool:
        return all(g is None or g == w for g, w in zip(got, want, strict=True))

    if fits(dims[1:], size):
        return (batch, *size), tuple(range(2, nd + 2))
    if fits(dims[1:], (*spatial, channels)):
        return (batch, *spatial, channels), tuple(range(1, nd + 1))
    raise ModelError(
        f"input size {','.join(map(str, size))} does not fit the model input {name!r} of "
        f"shape {shown} (channels first or last)"
    )


# -- shape inference --------------------------------------------------------------------


def _inferred_types(model: Any, input_name: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """``{tensor: (static shape or None, element type)}`` from ONNX shape inference on a
    light copy of the model (large initializers become inputs), or {} if it fails."""
    onnx = _require_onnx()
    from onnx import helper

    graph = model.graph
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    g = light.graph
    g.node.extend(graph.node)
    init_names = set()
    for init in graph.initializer:
        init_names.add(init.name)
        if math.prod(init.dims) <= _INFER_ELEMENTS and not _is_external(init):
            g.initializer.append(init)
        else:
            g.input.append(helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    for inp in graph.input:
        if inp.name == input_name:
            elem = inp.type.tensor_type.elem_type or onnx.TensorProto.FLOAT
            g.input.append(helper.make_tensor_value_info(inp.name, elem, shape))
        elif inp.name not in init_names:
            g.input.append(inp)
    for output in graph.output:
        g.output.append(helper.make_empty_tensor_value_info(output.name))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    except Exception:
        return {}
    out: dict[str, Any] = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output):
        tt = vi.type.tensor_type
        dims = (
            tuple(int(d.dim_value) for d in tt.shape.dim)
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim)
            else None
        )
        out[vi.name] = (dims, int(tt.elem_type))
    return out


# -- folding constants ------------------------------------------------------------------


def _fold(
    node: Any, ins: list[Value], attrs: dict[str, Any], opset: int, types: dict[str, Any]
) -> list[Value]:
    """The outputs of a node whose inputs do not depend on the model input."""
    op = node.op_type
    label = f"node {node.name or node.output[0]!r} ({op})"

    def opaque(why: str) -> list[Value]:
        return [Opaque(types.get(name, (None, 0))[0], why) for name in node.output]

    if node.domain not in ("", "ai.onnx"):
        return opaque(f"computed by {label} of domain {node.domain!r}")
    if op == "Constant":
        if len(attrs) != 1:
            raise ModelError(f"{label}: needs exactly one value attribute")
        ((key, value),) = attrs.items()
        if key in ("value_float", "value_int"):
            value = np.array(value, dtype=np.float32 if key == "value_float" else np.int64)
        elif key in ("value_floats", "value_ints"):
            value = np.array(value, dtype=np.float32 if key == "value_floats" else np.int64)
        elif not isinstance(value, (np.ndarray, Opaque)):
            return opaque(f"a {key} constant")
        return [value]
    if op in ("Identity", "Dropout") and ins and ins[0] is not None:
        return [ins[0], *opaque("a dropout mask")[1:]]
    if op in ("Shape", "Size") and ins and ins[0] is not None:
        shape = ins[0].shape if isinstance(ins[0], (np.ndarray, Opaque)) else None
        if shape is not None:
            ctx = OnnxContext(GraphBuilder(1), op, "", label, opset, attrs, ins, 1)
            rule = rule_for(op)
            assert rule is not None
            return list(rule(ctx))
    if op in _NO_FOLD:
        return opaque(f"computed by {label}")
    arrays: list[np.ndarray | None] = []
    for value in ins:
        if value is None or isinstance(value, np.ndarray):
            arrays.append(value)
        elif isinstance(value, Opaque):
            if value.load is None or value.shape is None:
                return opaque(f"computed by {label} from a constant rfmap cannot read")
            if math.prod(value.shape) > MAX_FOLD_ELEMENTS:
                return opaque(f"computed by {label} from a large constant")
            arrays.append(value.load())
        else:  # pragma: no cover - a TensorRef never reaches here
            raise AssertionError(value)
    sizes = [a.size for a in arrays if a is not None]
    if sum(sizes) > MAX_FOLD_ELEMENTS or any(
        a.dtype.kind in "OSU" for a in arrays if a is not None
    ):
        return opaque(f"computed by {label}")
    known = [types.get(name, (None, 0))[0] for name in node.output]
    if all(s is not None for s in known):
        if sum(math.prod(s) for s in known if s is not None) > MAX_FOLD_ELEMENTS:
            return opaque(f"computed by {label}")
    elif op not in _SMALL_OUTPUT:
        return opaque(f"computed by {label}")
    from onnx.reference import ReferenceEvaluator

    feeds = {name: a for name, a in zip(node.input, arrays, strict=False) if name and a is not None}
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            results = ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)
    except Exception:
        return opaque(f"computed by {label}, which rfmap could not evaluate")
    out: list[Value] = []
    for value in results:
        array = np.asarray(value) if value is not None else None
        if array is None or array.dtype.kind == "O" or array.size > MAX_FOLD_ELEMENTS:
            return opaque(f"computed by {label}")
        out.append(array)
    return out


# -- tracing ----------------------------------------------------------------------------


class GiveUp(Exception):
    """An operator can be neither derived nor measured on its own."""


@dataclass
class OnnxTraced(Traced):
    """A traced ONNX model: :class:`~rfmap.frontends.base.Traced` and, for every tensor
    that depends on the input, its :class:`~rfmap.builder.TensorRef` (``tensors``);
    ``outputs`` are the graph output names."""

    tensors: dict[str, TensorRef] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    input_name: str = ""
    input_shape: tuple[int, ...] = ()
    spatial_dims: tuple[int, ...] = ()


def _graph_input(model: Any) -> Any:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise ModelError(
            f"the model has {len(inputs)} inputs ({names}); rfmap analyses models with one input"
        )
    return inputs[0]


def _opsets(model: Any) -> dict[str, int]:
    return {
        ("" if imp.domain == "ai.onnx" else imp.domain): int(imp.version)
        for imp in model.opset_import
    }


def _prepared(model: Any) -> Any:
    """The model with its local functions inlined."""
    if not model.functions:
        return model
    from onnx import inliner

    try:
        return inliner.inline_local_functions(model)
    except Exception as exc:
        raise ModelError(f"cannot inline the model's local functions: {_one_line(exc)}") from exc


def trace(
    model: Any,
    input_size: Sequence[int],
    *,
    method: Method | str = Method.AUTO,
    layer: str | None = None,
) -> OnnxTraced:
    """The layer graph of an ONNX model (a path or a ``ModelProto``).

    ``layer`` (an ONNX node or tensor name) is made a node of the graph even when it is
    a concatenation of several blocks.
    """
    method = _method(method)
    proto = _prepared(load_onnx(model))
    size = parse_input_size(input_size)
    return _Tracer(proto, size, method).run(layer)


class _Tracer:
    def __init__(self, model: Any, size: tuple[int, ...], method: Method) -> None:
        self.model = model
        self.size = size
        self.method = method
        self.opsets = _opsets(model)
        graph_input = _graph_input(model)
        self.input_name = graph_input.name
        self.shape, self.spatial = _input_layout(graph_input, size)
        if max(size[1:]) > MAX_EXTENT:
            raise ModelError(
                f"input size {','.join(map(str, size))} is too large: at most {MAX_EXTENT:,} "
                "positions per axis"
            )
        self.b = GraphBuilder(len(size) - 1)
        self.values: dict[str, Value] = {}
        self.aliases: dict[str, str] = {}
        self.types: dict[str, Any] = {}

    def run(self, layer: str | None) -> OnnxTraced:
        graph = self.model.graph
        for init in graph.initializer:
            self.values[init.name] = _tensor_value(init, f"initializer {init.name!r}")
        for init in graph.sparse_initializer:
            dims = tuple(int(d) for d in init.dims)
            self.values[init.values.name] = Opaque(dims, "a sparse initializer")
        self.types = _inferred_types(self.model, self.input_name, self.shape)
        x = self.b.input(self.input_name, self.shape, self.spatial)
        self.values[self.input_name] = x
        self.aliases[self.input_name] = x.parts[0].node
        node_of: dict[str, list[str]] = {}
        for index, node in enumerate(graph.node):
            label = node.name or (node.output[0] if node.output else f"{node.op_type}_{index}")
            self._node(node, label)
            node_of[node.name] = list(node.output)
        tensors = {k: v for k, v in self.values.items() if isinstance(v, TensorRef)}
        outputs = [o.name for o in graph.output]
        for name in outputs:
            if name not in self.values:
                raise ModelError(f"graph output {name!r} is not computed by any node")
        wanted = [n for n in outputs if isinstance(self.values[n], TensorRef)]
        if not wanted:
            raise ModelError("no output of the model depends on its input")
        output_nodes = [self._named(n, self.values[n]) for n in wanted]  # type: ignore[arg-type]
        if layer is not None:
            self._layer(layer, node_of)
        for onnx_name, outs in node_of.items():
            if onnx_name and onnx_name not in self.aliases:
                for out in outs:
                    if out in self.aliases:
                        self.aliases[onnx_name] = self.aliases[out]
                        break
        graph_ = self.b.graph(
            output_nodes + ([self.aliases[layer]] if layer in self.aliases else [])
        )
        if layer is not None and layer not in self.aliases and layer not in graph_.nodes:
            traced = Traced(graph_, self.aliases)
            traced.resolve(layer)  # raises with suggestions
        return OnnxTraced(
            graph_,
            self.aliases,
            list(self.b.measured),
            list(self.b.notes),
            tensors,
            outputs,
            self.input_name,
            self.shape,
            self.spatial,
        )

    def _named(self, name: str, ref: TensorRef) -> str:
        node = self.b.merged(ref, name)
        self.aliases[name] = node
        return node

    def _layer(self, layer: str, node_of: dict[str, list[str]]) -> None:
        names = [layer] if layer in self.values else node_of.get(layer, [])
        for name in names:
            value = self.values.get(name)
            if isinstance(value, TensorRef):
                self.aliases[layer] = self._named(name, value)
                return
        if names:
            raise InvalidSpecError(f"layer {layer!r} does not depend on the model input")

    def _node(self, node: Any, label: str) -> None:
        op = node.op_type
        domain = "" if node.domain == "ai.onnx" else node.domain
        what = f"node {label!r} ({op})"
        ins: list[Value] = []
        for name in node.input:
            if not name:
                ins.append(None)
            elif name in self.values:
                ins.append(self.values[name])
            else:
                raise ModelError(
                    f"{what} reads tensor {name!r}, which no earlier node, initializer or "
                    "input defines"
                )
        if domain not in self.opsets:
            raise ModelError(f"{what} is of domain {domain!r}, which the model does not import")
        attrs = _attributes(node, what)
        opset = self.opsets[domain]
        try:
            if not any(isinstance(v, TensorRef) for v in ins):
                outs = _fold(node, ins, attrs, opset, self.types)
            else:
                outs = self._derive(node, label, op, domain, opset, attrs, ins)
        except (RFMapError, GiveUp):
            raise
        except Exception as exc:
            raise ModelError(f"{what}: {type(exc).__name__}: {_one_line(exc)}") from exc
        for name, value in zip(node.output, outs, strict=False):
            if isinstance(value, TensorRef) and any(n > MAX_EXTENT for n in value.shape):
                raise ModelError(f"{what} gives a tensor of shape {list(value.shape)}: too large")
            if name:
                self.values[name] = value
                if isinstance(value, TensorRef) and value.single is not None:
                    self.aliases[name] = value.single.node

    def _derive(
        self,
        node: Any,
        label: str,
        op: str,
        domain: str,
        opset: int,
        attrs: dict[str, Any],
        ins: list[Value],
    ) -> list[Value]:
        rule = rule_for(op, domain)
        ctx = OnnxContext(self.b, op, domain, label, opset, attrs, ins, len(node.output))
        try:
            if rule is None:
                raise Unsupported("no rule")
            with np.errstate(all="ignore"):
                return list(rule(ctx))
        except Unsupported as exc:
            reason = str(exc)
        what = f"ONNX operator {op!r}" + (f" of domain {domain!r}" if domain else "")
        if self.method is Method.ANALYTIC:
            raise UnsupportedLayerError(
                f"cannot derive the receptive field of {what} (node {label!r}: {reason}); "
                "use method 'auto' to measure it with onnxruntime"
            )
        from .onnx_measure import MeasureFailed, measure_node, require_onnxruntime

        try:
            require_onnxruntime()
        except ModelError:
            raise UnsupportedLayerError(
                f"cannot derive the receptive field of {what} (node {label!r}: {reason}); "
                "install onnxruntime (pip install 'rfmap[onnx]') to measure it"
            ) from None
        try:
            outs = measure_node(self.model, node, ins, self.b, label, self.types)
        except MeasureFailed as exc:
            raise GiveUp(
                f"{what} (node {label!r}: {reason}) cannot be measured alone: {exc}"
            ) from exc
        why = "has no rule" if reason == "no rule" else f"cannot be derived ({reason})"
        self.b.notes.append(
            f"{what} (node {label!r}) {why}: measured by perturbation with onnxruntime"
        )
        return outs


# -- the public entry points ------------------------------------------------------------


def model_rf(
    model: Any,
    input_size: Sequence[int],
    layer: str | None = None,
    *,
    method: Method | str = Method.AUTO,
) -> ReceptiveField:
    """Receptive field of an ONNX model (or of one ``layer``) per spatial axis.

    Parameters
    ----------
    model
        A path to an ``.onnx`` file or an ``onnx.ModelProto``.
    input_size
        ``(C, H, W)`` for 2D models, ``(C, L)`` for 1D, ``(C, D, H, W)`` for 3D
        (channels first, no batch, whatever the model's layout).
    layer
        An ONNX node name or tensor name; default: the first graph output.
    method
        ``"auto"``, ``"analytic"`` or ``"measure"``; see :class:`Method`.

    >>> from onnx import TensorProto, helper
    >>> conv = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3], pads=[1] * 4)
    >>> pool = helper.make_node("MaxPool", ["y"], ["z"], kernel_shape=[2, 2], strides=[2, 2])
    >>> graph = helper.make_graph(
    ...     [conv, pool], "net",
    ...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    ...     [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
    ...     [helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], [0.0] * 216)])
    >>> r = model_rf(helper.make_model(graph), (3, 32, 32))
    >>> r.receptive_field, r.stride, r.padding, r.grid
    ((4, 4), (2, 2), (1, 1), (16, 16))
    """
    method = _method(method)
    proto = _prepared(load_onnx(model))
    size = parse_input_size(input_size)
    if method is Method.MEASURE:
        from .onnx_measure import measure_model_rf

        return measure_model_rf(proto, size, layer)
    try:
        traced = _Tracer(proto, size, method).run(layer)
    except GiveUp as exc:
        from .onnx_measure import measure_model_rf

        try:
            return measure_model_rf(proto, size, layer, reason=f"measured as a whole: {exc}")
        except ModelError as whole:
            raise UnsupportedLayerError(
                f"cannot derive the receptive field of {exc}; measuring the whole model "
                f"failed too: {whole}"
            ) from None
    return graph_rf(traced.graph, traced.resolve(layer), notes=traced.notes)


def measure_rf(
    model: Any,
    input_size: Sequence[int],
    unit: Sequence[int] | None = None,
    *,
    layer: str | None = None,
) -> Any:
    """The input box one output unit depends on, measured by perturbation with
    onnxruntime (see :func:`rfmap.frontends.onnx_measure.measure_rf`)."""
    from .onnx_measure import measure_rf as measure

    return measure(_prepared(load_onnx(model)), parse_input_size(input_size), unit, layer=layer)
