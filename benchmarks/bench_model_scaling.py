"""Benchmark: the receptive-field analysis grows linearly with the graph (issue 12).

1. Synthetic graphs built directly as an ``RFGraph`` (numpy only), analysed with
   ``graph_rf`` -- the receptive field and the whole per-layer table:
   * ``chain``: 3x3 convolutions (padding 1) on a 64x64 input;
   * ``residual``: blocks of two convolutions and an addition of the block's input;
   * ``upsample``: a residual DAG where every eighth node is a nearest 2x upsampling
     followed by a stride-2 convolution, windows the path algebra cannot express (the
     rows then need the memoised forward pass of per-unit extremes).
   Sizes 100 to 20,000 nodes.  The baseline is the 100-node graph's time per node,
   measured in the same run: ``ratio`` is the time per node against it (linear growth
   keeps it near 1 -- small graphs fit in the caches, so a few times more is still
   linear; quadratic growth would make it 200 at 20,000 nodes).  The growth exponent is
   the least-squares slope of log(time) against log(nodes) from 1,000 nodes up: 1 is
   linear, 2 quadratic; the target is below 1.3.
2. ``model_rf`` on torch ``Sequential`` chains of Conv2d + ReLU (the capture included),
   same sizes in graph nodes, same ratio.
3. ``model_rf`` on timm models (random weights, default input size, construction not
   counted): hrnet_w18, ghostnetv3_050, sequencer2d_l, nasnetalarge, vgg11, resnet50,
   convnext_tiny.  The baseline is the model's own eager float32 forward pass on a
   real input of that size, measured in the same run (target: analysis < 1 s).
4. timm resnet50 at 224 to 4096 px: the analysis runs on meta tensors, so its time
   should stay flat; the ratio is against the 224 px time of this run.

    python benchmarks/bench_model_scaling.py [--max-nodes 20000] [--repeat 3] [--no-models]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import time
import warnings
from collections.abc import Callable

SIZES = (100, 300, 1000, 3000, 10000, 20000)
TIMM_MODELS = (
    "hrnet_w18",
    "ghostnetv3_050",
    "sequencer2d_l",
    "nasnetalarge",
    "vgg11",
    "resnet50",
    "convnext_tiny",
)
RESNET_SIZES = (224, 512, 1024, 2048, 4096)


def best(func: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs (the garbage collector paused while timing)."""
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()  # as model_rf does: the analysis allocates many small objects
        try:
            start = time.perf_counter()
            func()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(times)


def synthetic(kind: str, n: int) -> object:
    """An ``RFGraph`` of ``n`` nodes (input included) on a 64x64 input."""
    from fractions import Fraction

    from rfmap.graph import Edge, Node, RFGraph
    from rfmap.windows import IDENTITY, Conv, Resample, ResampleMode

    conv = (Conv(3, 1, 1, -1),) * 2
    size = (64, 64)
    nodes = [Node("x", "input", size)]
    i = 1
    while len(nodes) < n:
        prev = nodes[-1].name
        if kind == "chain":
            nodes.append(Node(f"c{i}", "conv", size, (Edge(prev, conv),)))
        elif kind == "upsample" and i % 8 == 0 and len(nodes) + 2 <= n:
            up = Resample(64, 128, ResampleMode.NEAREST, Fraction(1, 2))
            nodes.append(Node(f"u{i}", "upsample", (128, 128), (Edge(prev, (up, up)),)))
            down = (Conv(3, 2, 1, -1),) * 2
            nodes.append(Node(f"d{i}", "conv", size, (Edge(f"u{i}", down),)))
        else:  # residual block: conv, conv, add
            block = nodes[-1].name
            nodes.append(Node(f"a{i}", "conv", size, (Edge(block, conv),)))
            if len(nodes) < n:
                nodes.append(Node(f"b{i}", "conv", size, (Edge(f"a{i}", conv),)))
            if len(nodes) < n:
                edges = (Edge(f"b{i}", (IDENTITY, IDENTITY)), Edge(block, (IDENTITY, IDENTITY)))
                nodes.append(Node(f"s{i}", "add", size, edges))
        i += 1
    return RFGraph(nodes[:n])


def torch_chain(n: int) -> object:
    """A Sequential of Conv2d + ReLU pairs whose graph has ``n`` nodes."""
    import torch

    layers: list[torch.nn.Module] = []
    for _ in range(max(1, n - 1)):  # the ReLU shares its convolution's row
        layers += [torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers).eval()


def exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) against log(nodes), from 1,000 nodes up."""
    big = [(math.log(n), math.log(t)) for n, t in points if n >= 1000] or [
        (math.log(n), math.log(t)) for n, t in points
    ]
    if len(big) < 2:
        return float("nan")
    mx = sum(x for x, _ in big) / len(big)
    my = sum(y for _, y in big) / len(big)
    return sum((x - mx) * (y - my) for x, y in big) / sum((x - mx) ** 2 for x, _ in big)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  " + "  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-nodes", type=int, default=20000, help="largest synthetic graph")
    parser.add_argument("--torch-max-nodes", type=int, default=20000, help="largest torch chain")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best counts)")
    parser.add_argument("--no-models", action="store_true", help="skip the timm models")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from rfmap.receptive import graph_rf

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"rfmap analysis scaling: {os.cpu_count()} CPUs, load average {load:.1f} at the start")
    missed: list[str] = []
    sizes = [n for n in SIZES if n <= args.max_nodes]
    for kind in ("chain", "residual", "upsample"):
        graph_rf(synthetic(kind, 100))  # warm up
    print("\n1. graph_rf on synthetic RFGraphs (the field and the whole per-layer table)")
    for kind in ("chain", "residual", "upsample"):
        rows = []
        points = []
        base = None
        for n in sizes:
            graph = synthetic(kind, n)
            t = best(lambda g=graph: graph_rf(g), args.repeat)
            per = t / n
            base = per if base is None else base
            points.append((n, t))
            rows.append((kind, str(n), f"{t * 1e3:.1f}", f"{per * 1e6:.1f}", f"{per / base:.2f}"))
        table(rows, ("graph", "nodes", "time ms", "us/node", "ratio"))
        slope = exponent(points)
        if slope >= 1.3:
            missed.append(f"{kind} graphs (exponent {slope:.2f})")
        print(f"  growth exponent ({kind}): {slope:.2f}")

    import torch

    from rfmap.trace import model_rf

    print("\n2. model_rf on torch Sequential chains of Conv2d + ReLU (capture included)")
    rows = []
    points = []
    base = None
    model_rf(torch_chain(10), (2, 32, 32))  # warm up
    for n in [n for n in SIZES if n <= args.torch_max_nodes]:
        model = torch_chain(n)
        r = model_rf(model, (2, 32, 32))
        nodes = len(r.layers)
        t = best(lambda m=model: model_rf(m, (2, 32, 32)), max(1, args.repeat - 1))
        per = t / nodes
        base = per if base is None else base
        points.append((nodes, t))
        rows.append((str(nodes), f"{t * 1e3:.1f}", f"{per * 1e6:.1f}", f"{per / base:.2f}"))
        del model
    table(rows, ("nodes", "time ms", "us/node", "ratio"))
    slope = exponent(points)
    if slope >= 1.3:
        missed.append(f"torch chains (exponent {slope:.2f})")
    print(f"  growth exponent: {slope:.2f}")
    fast = True
    if not args.no_models:
        import timm

        print("\n3. model_rf on timm models (default input size; construction not counted)")
        print("   baseline: the model's eager float32 forward on a real input, same run")
        rows = []
        for name in TIMM_MODELS:
            model = timm.create_model(name, pretrained=False).eval()
            size = tuple(model.pretrained_cfg["input_size"])
            r = model_rf(model, size)
            t = best(lambda m=model, s=size: model_rf(m, s), args.repeat)
            x = torch.randn(1, *size)
            with torch.no_grad():
                forward = best(lambda m=model, x=x: m(x), args.repeat)
            fast &= t < 1
            rows.append(
                (
                    name,
                    "x".join(map(str, size)),
                    str(len(r.layers)),
                    "yes" if r.measured_nodes else "no",
                    f"{t * 1e3:.0f}",
                    f"{forward * 1e3:.0f}",
                    f"{t / forward:.2f}",
                    "OK" if t < 1 else "OVER 1 s",
                )
            )
            del model
        table(rows, ("model", "input", "rows", "measured", "rf ms", "fwd ms", "rf/fwd", "< 1 s"))

        print("\n4. model_rf on timm resnet50 against the input size (meta tensors: flat)")
        model = timm.create_model("resnet50", pretrained=False).eval()
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            forward = best(lambda: model(x), args.repeat)
        rows = []
        base = None
        for px in RESNET_SIZES:
            t = best(lambda p=px: model_rf(model, (3, p, p)), args.repeat)
            base = t if base is None else base
            rows.append((str(px), f"{t * 1e3:.0f}", f"{t / base:.2f}", f"{t / forward:.2f}"))
            if t / base >= 2:
                missed.append(f"resnet50 at {px} px ({t / base:.2f}x)")
        table(rows, ("px", "rf ms", "vs 224", "rf/fwd224"))
        print(f"   eager forward at 224 px: {forward * 1e3:.0f} ms")
    verdict = "OK" if not missed else "MISSED for " + ", ".join(missed)
    print(
        f"\nlinear in the graph and flat in the input size: {verdict}; "
        f"every model under 1 s: {'OK' if fast else 'MISSED'}"
    )
    return 0 if not missed and fast else 1


if __name__ == "__main__":
    raise SystemExit(main())
