"""Benchmark the JAX frontend: the analysis of a Flax ResNet-50 against its gradient.

* analysis: ``rfmap.frontends.jax.jax_rf(model, (3, 224, 224))`` -- ``eval_shape`` of
  the linen module's ``init``, ``make_jaxpr`` on abstract shapes, the rules, and the
  receptive field of every node, from scratch every time;
* gradient: ``measure_jax_rf`` of the global output -- the linearised jaxpr in float64
  (compiled once per call), one forward and one backward pass: the cheapest gradient
  measurement there is.

The two alternate, round after round, so that load on a shared machine hits both
alike; the speed-up is the median of the per-round ratios.  Before timing, both must
agree on the box of a unit of the last stage (``Bottleneck_5``) and on the global
output (the whole input).

    python benchmarks/bench_jax.py [--repeat 5] [--size 224]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable


def timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def resnet50() -> object:
    """A Flax linen ResNet-50 (bottleneck blocks 3, 4, 6, 3; Flax's SAME padding)."""
    import flax.linen as nn

    class Bottleneck(nn.Module):
        channels: int
        stride: int = 1

        @nn.compact
        def __call__(self, x):
            def norm(y):
                return nn.BatchNorm(use_running_average=True)(y)

            y = nn.relu(norm(nn.Conv(self.channels, (1, 1))(x)))
            y = nn.relu(norm(nn.Conv(self.channels, (3, 3), strides=self.stride)(y)))
            y = norm(nn.Conv(self.channels * 4, (1, 1))(y))
            if self.stride != 1 or x.shape[-1] != self.channels * 4:
                x = norm(nn.Conv(self.channels * 4, (1, 1), strides=self.stride)(x))
            return nn.relu(x + y)

    class ResNet50(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(64, (7, 7), strides=2, padding=3)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=True)(x))
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
            for stage, (channels, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)]):
                for block in range(blocks):
                    x = Bottleneck(channels, 2 if block == 0 and stage > 0 else 1)(x)
            return x.mean(axis=(1, 2))

    return ResNet50()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    args = parser.parse_args()

    from rfmap.frontends.jax import jax_rf, measure_jax_rf

    model = resnet50()
    size = (3, args.size, args.size)
    result = jax_rf(model, size)
    stage = jax_rf(model, size, "Bottleneck_5")
    unit = tuple(n // 2 for n in stage.grid)
    measured = measure_jax_rf(model, size, unit, layer="Bottleneck_5")
    if measured.box != stage.input_box(unit):
        print(f"  DISAGREE on Bottleneck_5 unit {unit}: {measured.box} vs {stage.input_box(unit)}")
        return 1
    whole = measure_jax_rf(model, size)
    if whole.box != tuple((0, n) for n in size[1:]) or not result.is_global:
        print(f"  DISAGREE on the global output: measured {whole.box}")
        return 1
    print(
        f"  check: Bottleneck_5 unit {unit} box {measured.box} (RF {stage.receptive_field}, "
        f"stride {stage.stride}, padding {stage.padding}), global output: agree"
    )
    analysis: list[float] = []
    gradient: list[float] = []
    for _ in range(args.repeat):
        analysis.append(timed(lambda: jax_rf(model, size)))
        gradient.append(timed(lambda: measure_jax_rf(model, size)))
    ratios = sorted(g / a for a, g in zip(analysis, gradient, strict=True))
    nodes = len(result.layers)
    print(
        f"  analysis  jax_rf ({nodes} rows)        median {statistics.median(analysis):8.3f} s"
        f"   best {min(analysis):8.3f} s"
    )
    print(
        f"  gradient  measure_jax_rf (float64)  median {statistics.median(gradient):8.3f} s"
        f"   best {min(gradient):8.3f} s"
    )
    print(
        f"  gradient / analysis: {statistics.median(ratios):6.1f}x  (median of per-round "
        f"ratios, range {ratios[0]:.1f}x to {ratios[-1]:.1f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
