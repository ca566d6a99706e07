"""Benchmark schedule design and the gridding criterion against baselines from the same run.

Targets (issue #5): ``rfmap design`` answers L up to 12 "well under a second" (here:
under 0.25 s each, objective rf, top 5); the exact search is compared with brute-force
enumeration where that is feasible (same answer asserted first); the map-free gridding
criterion is compared with building the exact map.

    python benchmarks/bench_design.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
from bench_paths import best_of  # the same timer as the engine's benchmark

from rfmap import axis_counts, conv_stack
from rfmap.design import design
from rfmap.gridding import check, gridding_free

TARGET_SECONDS = 0.25


def brute_force_top(layers: int, k: int, top: int) -> list[tuple[int, ...]]:
    """The rf ranking by enumerating every multiset and building its exact map."""
    keys = []
    limit = k ** (layers - 1)
    for b in itertools.combinations_with_replacement(range(1, limit + 1), layers):
        _, counts = axis_counts(conv_stack(list(b), k, ndim=1, padding=0), 0, None)
        if (counts != 0).all():
            keys.append((-(1 + (k - 1) * sum(b)), -sum(x * x for x in b), b))
    return [key[-1] for key in sorted(keys)[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ok = True
    verdict = {True: "OK", False: "MISSED"}

    print(f"rfmap design benchmark (numpy {np.__version__})")
    print(f"1. design, objective rf, top 5 (target: each under {TARGET_SECONDS} s)")
    cases = [
        ("L=4  K=3", {"layers": 4}),
        ("L=8  K=3", {"layers": 8}),
        ("L=12 K=3", {"layers": 12}),
        ("L=12 K=2", {"layers": 12, "kernel_size": 2}),
        ("L=12 K=5", {"layers": 12, "kernel_size": 5}),
        ("L=12 K=3 max dilation 16", {"layers": 12, "max_dilation": 16}),
        ("L=12 K=3 max dilation 100", {"layers": 12, "max_dilation": 100}),
        ("K=3 target RF 100000", {"target_rf": 100_000}),
    ]
    for name, kwargs in cases:
        result = design(**kwargs)  # type: ignore[arg-type]
        best, median = best_of(lambda kwargs=kwargs: design(**kwargs), args.repeat)
        good = best < TARGET_SECONDS
        ok &= good
        top = ",".join(map(str, result.candidates[0].dilations))
        print(
            f"  {name:28} best {best * 1e3:8.2f} ms  median {median * 1e3:8.2f} ms  "
            f"nodes {result.nodes:4}  best schedule {top[:40]}  {verdict[good]}"
        )

    print("   objective flat (it enumerates far more; no target, reported only):")
    for name, kwargs in [
        ("L=5  K=3", {"layers": 5}),
        ("L=6  K=3", {"layers": 6}),
        ("L=12 K=3 top 1", {"layers": 12, "top": 1}),
        ("L=12 K=3 max dilation 6", {"layers": 12, "max_dilation": 6}),
        ("K=3 target RF 100", {"target_rf": 100}),
    ]:
        result = design(objective="flat", **kwargs)  # type: ignore[arg-type]
        best, _ = best_of(lambda kwargs=kwargs: design(objective="flat", **kwargs), 1)
        top = ",".join(map(str, result.candidates[0].dilations))
        print(f"  {name:28} {best * 1e3:10.2f} ms  nodes {result.nodes:7}  best {top[:40]}")

    print("2. exact search vs brute-force enumeration (exact maps), same top 5 asserted")
    for layers, k in [(3, 4), (4, 3), (5, 2)]:
        expected = brute_force_top(layers, k, 5)
        got = [c.dilations for c in design(layers, k).candidates]
        assert got == expected, (got, expected)
        t_brute, _ = best_of(lambda layers=layers, k=k: brute_force_top(layers, k, 5), 1)
        t_search, _ = best_of(lambda layers=layers, k=k: design(layers, k), args.repeat)
        print(
            f"  L={layers} K={k}: brute force {t_brute * 1e3:9.1f} ms, search "
            f"{t_search * 1e3:7.2f} ms  -> {t_brute / t_search:8.0f}x faster"
        )

    print("3. gridding criterion (no map) vs building the exact map")
    for n in (16, 20, 24):
        schedule = [2**i for i in range(n)]
        layers = conv_stack(schedule, 3, ndim=1, padding=0)

        def by_map(layers=layers) -> bool:
            return bool((axis_counts(layers, 0, None)[1] != 0).all())

        assert by_map() == gridding_free(schedule, ndim=1)
        t_map, _ = best_of(by_map, max(1, args.repeat // 2))
        t_rule, _ = best_of(lambda schedule=schedule: gridding_free(schedule, ndim=1), args.repeat)
        cells = 1 + 2 * (2**n - 1)
        print(
            f"  dilations 1..2**{n - 1} ({cells:,} cells): map {t_map * 1e3:9.2f} ms, criterion "
            f"{t_rule * 1e3:6.3f} ms -> {t_map / t_rule:9.0f}x faster"
        )
    huge = [2**i for i in range(60)]
    t_huge, _ = best_of(lambda: check(huge, ndim=1), args.repeat)
    print(f"  check() of dilations 1..2**59 (a 2**61-cell field, no map): {t_huge * 1e3:.2f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
