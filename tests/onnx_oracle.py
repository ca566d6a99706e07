"""Brute-force perturbation with onnxruntime: the oracle of the ONNX frontend's tests.

For every spatial position of the input, the model is run on inputs that differ only at
that position (all channels), in several ways (from zero, from random values, up and
down, small and large), and every output element that changes depends on that
position.  The union over the trials is the oracle: a subset of the true dependencies
that misses one only if every trial happens to leave it unchanged.  Models built here
have positive weights, so a change from a zero input reaches everything it can.

:func:`check` compares the oracle with the frontend element by element, as
``tests/test_builder.py`` does with its dependency oracle: each element a part of the
output's :class:`~rfmap.builder.TensorRef` covers must depend on exactly the input
positions its node's unit reads (:func:`rfmap.graph.support_mask`), and an element no
part covers on none.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rfmap.frontends.onnx import trace  # noqa: E402
from rfmap.graph import support_mask  # noqa: E402

OPSET = 18


def weight(name: str, shape: Sequence[int], seed: int = 0, low: float = 0.5) -> Any:
    """A positive float initializer."""
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.uniform(low, 1.5, shape).astype(np.float32), name)


def ints(name: str, values: Sequence[int]) -> Any:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def floats(name: str, values: Sequence[float]) -> Any:
    return numpy_helper.from_array(np.array(values, dtype=np.float32), name)


def model(
    nodes: Sequence[Any],
    input_shape: Sequence[int | str],
    initializers: Sequence[Any] = (),
    output: str = "y",
    opset: int = OPSET,
) -> Any:
    """A model with input ``x`` and output ``output``."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        list(initializers),
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _with_output(m: Any, name: str) -> Any:
    out = onnx.ModelProto()
    out.CopyFrom(m)
    del out.graph.output[:]
    out.graph.output.append(helper.make_empty_tensor_value_info(name))
    return out


def run(m: Any, x: np.ndarray, output: str | None = None) -> np.ndarray:
    """The model's output on ``x``."""
    if output is not None:
        m = _with_output(m, output)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {m.graph.input[0].name: x})[0])


def perturbation_supports(
    m: Any, input_shape: Sequence[int], spatial_dims: Sequence[int], output: str
) -> np.ndarray:
    """Per output element, the set of input positions whose change changes it."""
    m = _with_output(m, output)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = m.graph.input[0].name
    rng = np.random.default_rng(1)
    shape = tuple(input_shape)
    bases = [
        (np.zeros(shape, np.float32), 1.0),
        (rng.uniform(1, 2, shape).astype(np.float32), 1.0),
        (rng.uniform(1, 2, shape).astype(np.float32), 100.0),
        (rng.standard_normal(shape).astype(np.float32), -50.0),
    ]
    spatial = [shape[d] for d in spatial_dims]
    positions = list(itertools.product(*map(range, spatial)))
    hit: np.ndarray | None = None
    for base, delta in bases:
        ref = np.asarray(sess.run(None, {name: base})[0])
        if hit is None:
            hit = np.zeros((ref.size, len(positions)), dtype=bool)
        for j, pos in enumerate(positions):
            x = base.copy()
            index = [slice(None)] * len(shape)
            for d, p in zip(spatial_dims, pos, strict=True):
                index[d] = slice(p, p + 1)
            x[tuple(index)] += delta
            out = np.asarray(sess.run(None, {name: x})[0])
            hit[:, j] |= ~((out == ref) | (np.isnan(out) & np.isnan(ref))).ravel()
    assert hit is not None
    deps = np.empty(ref.shape, dtype=object)
    flat = deps.reshape(-1)
    for k in range(ref.size):
        flat[k] = frozenset(positions[j] for j in np.flatnonzero(hit[k]))
    return deps


def unit_of(part: Any, offset: Sequence[int]) -> dict[int, int]:
    """The unit of the part's node at ``offset`` inside the part's block."""
    units: dict[int, int] = {}
    for d, dim in enumerate(part.layout):
        rest = offset[d]
        sizes = [n for _, n, _ in dim]
        for i, (a, n, s) in enumerate(dim):
            inner = int(np.prod(sizes[i + 1 :], dtype=np.int64))
            digit = (rest // inner) % n
            if a >= 0:
                units[a] = units.get(a, 0) + digit * s
    return units


def check(
    m: Any, input_size: Sequence[int], output: str | None = None, method: str = "auto"
) -> Any:
    """Compare the frontend with the oracle on every element of ``output``; return the
    traced model."""
    traced = trace(m, tuple(input_size), method=method)
    name = output or traced.outputs[0]
    ref = traced.tensors[name]
    deps = perturbation_supports(m, traced.input_shape, traced.spatial_dims, name)
    assert tuple(ref.shape) == deps.shape, (ref.shape, deps.shape)
    ndim = len(traced.spatial_dims)
    covered = np.zeros(deps.shape, dtype=bool)
    for part in ref.parts:
        by_unit: dict[tuple[int, ...], frozenset] = {}
        for offset in itertools.product(*(range(hi - lo) for lo, hi in part.region)):
            index = tuple(lo + o for (lo, _), o in zip(part.region, offset, strict=True))
            assert not covered[index], "parts overlap"
            covered[index] = True
            units = unit_of(part, offset)
            unit = tuple(units.get(a, 0) for a in range(ndim))
            by_unit[unit] = by_unit.get(unit, frozenset()) | deps[index]
        for unit, want in by_unit.items():
            origin, mask = support_mask(traced.graph, part.node, unit, clip=True)
            hits = np.argwhere(mask) + np.asarray(origin, dtype=np.int64)
            got = {tuple(int(v) for v in hit) for hit in hits}
            assert got == set(want), (part.node, unit, sorted(got), sorted(want))
    for index in map(tuple, np.argwhere(~covered)):
        assert not deps[index], f"element {index} depends on the input but no part covers it"
    return traced
