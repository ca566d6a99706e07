"""Benchmark the analytic receptive field of a model against its gradient measurement.

Target (issue #4): the analysis of torchvision's ResNet-50 (3x224x224) takes under
0.5 s and is at least 20x faster than the gradient measurement of the same model, both
measured in this run.

* analysis: ``rfmap.trace.model_rf(model, (3, 224, 224))`` -- the ATen capture on meta
  tensors and the receptive field of every node of the graph, from scratch every time
  (nothing is cached between calls);
* gradient: ``rfmap.measure.measure_model_rf(model, (3, 224, 224))`` -- the same question
  answered with the gradient (what ``model_rf`` falls back to): a linearised float64
  copy of the model, one forward pass and one backward pass per unit it needs (one for
  ResNet-50's global output: the cheapest gradient measurement there is).

The two are timed alternately, round after round, so that load on a shared machine
hits both alike; in each round the (short) analysis is timed ``--inner`` times and its
fastest run kept, and the speed-up is the median of the per-round ratios (its range is
printed too).  Each round runs twice: with PyTorch's default threads (what a user gets
on this machine: the gradient uses every core, the analysis is single-threaded Python)
and with one thread for both (the same work on the same core: the ratio no longer
depends on the number of cores, nor on how other jobs share them -- a multi-threaded
backward pass slows down badly when another process takes one of its cores).

Before timing, both methods must agree on the input box of a ``layer2`` unit and on the
global output (the whole 224x224 input), and the analysis must give ``layer4`` its
hand-derived RF 427, stride 32, padding 213.

    python benchmarks/bench_model.py [--repeat 9] [--inner 3] [--others]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=9, help="alternating timing rounds")
    parser.add_argument(
        "--inner", type=int, default=3, help="analysis runs per round (the fastest counts)"
    )
    parser.add_argument(
        "--others", action="store_true", help="also time the analysis of other backbones"
    )
    args = parser.parse_args()

    import torch
    import torchvision

    from rfmap.measure import measure_model_rf, measure_rf
    from rfmap.trace import model_rf

    size = (3, 224, 224)
    model = torchvision.models.resnet50(weights=None).eval()

    # Same answer first.
    layer2 = model_rf(model, size, "layer2")
    measured = measure_rf(model, size, (0, 1), layer="layer2")
    assert layer2.input_box((0, 1)) == measured.box, (layer2.input_box((0, 1)), measured.box)
    layer4 = model_rf(model, size, "layer4")
    expected = ((427, 427), (32, 32), (213, 213))
    assert (layer4.receptive_field, layer4.stride, layer4.padding) == expected
    output, whole = model_rf(model, size), measure_model_rf(model, size)
    assert output.receptive_field == whole.receptive_field == (224, 224)
    assert output.input_box() == whole.input_box() == ((0, 224), (0, 224))

    def analysis() -> object:
        return model_rf(model, size)

    def gradient() -> object:
        return measure_model_rf(model, size)

    inner = max(1, args.inner)
    default_threads = torch.get_num_threads()
    settings = {"default": default_threads, "one": 1}
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in settings}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    analysis()
    gradient()
    try:
        for _ in range(args.repeat):
            for key, threads in settings.items():
                torch.set_num_threads(threads)
                times[key][0].append(min(timed(analysis) for _ in range(inner)))
                times[key][1].append(timed(gradient))
    finally:
        torch.set_num_threads(default_threads)

    print(f"rfmap model benchmark: torchvision resnet50, input {'x'.join(map(str, size))}")
    print(
        f"  torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"{os.cpu_count()} CPUs, load average {load:.1f} at the start; {args.repeat} "
        f"alternating rounds (analysis: fastest of {inner} per round)"
    )
    print(
        f"  same answer: layer2 unit (0, 1) reads {measured.box} and the output reads "
        f"{output.input_box()} by both methods; layer4 RF {layer4.receptive_field[0]}, "
        f"stride {layer4.stride[0]}, padding {layer4.padding[0]}"
    )
    verdict = {True: "OK", False: "MISSED"}
    results = {}
    for key, threads in settings.items():
        t_rf, t_grad = times[key]
        ratios = [g / a for a, g in zip(t_rf, t_grad, strict=True)]
        results[key] = (statistics.median(t_rf), statistics.median(ratios))
        label = f"{threads} thread{'s' if threads > 1 else ''}"
        label += " (default)" if key == "default" else ""
        print(f"  torch threads: {label}")
        print(
            f"    analysis  model_rf ({len(output.layers)} nodes)   "
            f"median {results[key][0] * 1e3:8.1f} ms   best {min(t_rf) * 1e3:8.1f} ms"
        )
        print(
            f"    gradient  measure_model_rf (float64) "
            f"median {statistics.median(t_grad) * 1e3:8.1f} ms   best {min(t_grad) * 1e3:8.1f} ms"
        )
        print(
            f"    gradient / analysis: {results[key][1]:6.1f}x  (median of per-round ratios, "
            f"range {min(ratios):.1f}x to {max(ratios):.1f}x; target >= 20x)  "
            f"{verdict[results[key][1] >= 20]}"
        )
    median_rf, speedup = results["default"]
    print(
        f"  analysis time: {median_rf:.3f} s (median, default threads; target < 0.5 s)  "
        f"{verdict[median_rf < 0.5]}"
    )

    if args.others:
        print("  other backbones at 3x224x224 (analysis only, best of 3):")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in (
                "resnet18",
                "vgg16",
                "alexnet",
                "mobilenet_v2",
                "densenet121",
                "efficientnet_b0",
                "convnext_tiny",
            ):
                other = getattr(torchvision.models, name)(weights=None).eval()
                r = model_rf(other, size)
                best = min(timed(lambda m=other: model_rf(m, size)) for _ in range(3))
                print(
                    f"    {name:16} {best * 1e3:8.1f} ms  {len(r.layers):4d} nodes  "
                    f"{'exact' if r.exact else 'measured parts'}"
                )
    return 0 if median_rf < 0.5 and speedup >= 20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
