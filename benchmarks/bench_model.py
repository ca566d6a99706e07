"""Benchmark the analytic receptive field of a model against its gradient measurement.

Target (issue #4): the analysis of torchvision's ResNet-50 (3x224x224) takes under
0.5 s and is at least 20x faster than the gradient measurement of the same model, both
measured in this run.

* analysis: ``rfmap.trace.model_rf(model, (3, 224, 224))`` -- torch.fx trace, shape
  propagation, and the receptive field of all 176 nodes;
* gradient: ``rfmap.measure.measure_model_rf(model, (3, 224, 224))`` -- the same question
  answered with the gradient (what ``model_rf`` falls back to): a linearised float64
  copy of the model, one forward pass and one backward pass per unit it needs (one for
  ResNet-50's global output).

The two are timed alternately, so that load on a shared machine hits both alike.
Before timing, both methods must agree on the input box of a ``layer2`` unit and the
analysis must give ``layer4`` its hand-derived RF 427, stride 32, padding 213.

    python benchmarks/bench_model.py [--repeat 7] [--others]
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--repeat", type=int, default=7, help="alternating timing rounds")
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

    def analysis() -> object:
        return model_rf(model, size)

    def gradient() -> object:
        return measure_model_rf(model, size)

    analysis()
    gradient()
    t_rf, t_grad = [], []
    for _ in range(args.repeat):
        t_rf.append(timed(analysis))
        t_grad.append(timed(gradient))
    result = model_rf(model, size)

    print(f"rfmap model benchmark: torchvision resnet50, input {'x'.join(map(str, size))}")
    print(
        f"  torch {torch.__version__}, torchvision {torchvision.__version__}, "
        f"threads {torch.get_num_threads()}, {args.repeat} alternating rounds"
    )
    print(
        f"  same answer: layer2 unit (0, 1) reads {measured.box} by both methods; "
        f"layer4 RF {layer4.receptive_field[0]}, stride {layer4.stride[0]}, "
        f"padding {layer4.padding[0]}"
    )
    rows = [
        (f"analysis  model_rf ({len(result.layers)} nodes)", t_rf),
        ("gradient  measure_model_rf (float64)", t_grad),
    ]
    for name, times in rows:
        best, median = min(times), statistics.median(times)
        print(f"  {name:38} best {best * 1e3:8.1f} ms   median {median * 1e3:8.1f} ms")
    best_rf = min(t_rf)
    speedup = statistics.median(t_grad) / statistics.median(t_rf)
    verdict = {True: "OK", False: "MISSED"}
    print(f"  analysis time:        {best_rf:7.3f} s   (target < 0.5 s)  {verdict[best_rf < 0.5]}")
    ok = verdict[speedup >= 20]
    print(f"  gradient / analysis:  {speedup:7.1f}x   (medians; target >= 20x)  {ok}")

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
    return 0 if best_rf < 0.5 and speedup >= 20 else 1


if __name__ == "__main__":
    raise SystemExit(main())
