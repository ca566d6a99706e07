"""Benchmark the ONNX frontend: analysis time against graph size, and against the
onnxruntime perturbation measurement of the same question.

Synthetic residual networks (``Conv -> Relu -> Conv -> Add`` blocks on a 1x8x64x64
input, with a stride-2 convolution every 8 blocks) are built with ``onnx.helper`` at
several depths.  For each depth the analysis (``rfmap.frontends.onnx.model_rf``: load
checks, shape inference, the rules, the full per-layer table) and the perturbation
measurement of the centre unit (``measure_rf``: linearisation, an onnxruntime session,
bisection over input rows) are timed alternately, ``--repeat`` rounds, medians kept.
Both must agree on the centre unit's box before timing.

Targets: the analysis time per node stays flat as the graph grows (linear cost: the
ratio of the largest depth's time per node to the smallest's is at most 2), and the
analysis is faster than the measurement at every depth.

    python benchmarks/bench_onnx.py [--repeat 5] [--depths 8,16,32,64]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from rfmap.frontends.onnx import measure_rf, model_rf


def residual_net(blocks: int, channels: int = 8, size: int = 64):
    nodes, inits = [], []
    x = "x"
    rng = np.random.default_rng(0)
    for i in range(blocks):
        stride = 2 if i % 8 == 7 else 1
        for j, (src, out, s) in enumerate(((x, f"a{i}", stride), (f"r{i}", f"b{i}", 1))):
            w = f"w{i}_{j}"
            inits.append(
                numpy_helper.from_array(
                    rng.uniform(0.5, 1.5, (channels, channels, 3, 3)).astype(np.float32), w
                )
            )
            nodes.append(helper.make_node("Conv", [src, w], [out], pads=[1] * 4, strides=[s] * 2))
            if j == 0:
                nodes.append(helper.make_node("Relu", [out], [f"r{i}"]))
        if stride == 1:
            nodes.append(helper.make_node("Add", [x, f"b{i}"], [f"y{i}"]))
            x = f"y{i}"
        else:
            x = f"b{i}"
    nodes.append(helper.make_node("Identity", [x], ["y"]))
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--depths", default="8,16,32,64")
    args = parser.parse_args()
    size = (8, 64, 64)
    per_node = []
    ok = True
    for blocks in (int(d) for d in args.depths.split(",")):
        m = residual_net(blocks)
        r = model_rf(m, size)
        centre = tuple(n // 2 for n in r.grid)
        assert measure_rf(m, size, centre).box == r.input_box(centre), "the methods disagree"
        analysis, measure = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            model_rf(m, size)
            analysis.append(time.perf_counter() - t)
            t = time.perf_counter()
            measure_rf(m, size, centre)
            measure.append(time.perf_counter() - t)
        a, b = statistics.median(analysis), statistics.median(measure)
        nodes = len(m.graph.node)
        per_node.append(a / nodes)
        faster = a < b
        ok &= faster
        print(
            f"  {nodes:4d} ONNX nodes: analysis {a * 1e3:8.1f} ms ({a / nodes * 1e6:6.1f} us/node)"
            f"   perturbation {b * 1e3:8.1f} ms   ratio {b / a:6.1f}x  "
            + ("OK" if faster else "SLOWER")
        )
    growth = per_node[-1] / per_node[0]
    flat = growth <= 2
    print(
        f"  time per node, largest / smallest graph: {growth:.2f} (target <= 2)  "
        f"{'OK' if flat else 'MISSED'}"
    )
    print("  analysis faster than perturbation at every depth: " + ("OK" if ok else "MISSED"))


if __name__ == "__main__":
    main()
