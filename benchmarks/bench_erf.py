"""Benchmark ``rfmap.erf`` against RepLKNet's per-image ERF loop, in the same run.

The baseline is the method of RepLKNet's ``erf/visualize_erf.py`` (Ding et al. 2022):
a ResNet trunk that stops after ``layer4``, one image per forward/backward pass,
``relu(output[:, :, h//2, w//2]).sum()``, ``autograd.grad`` to the input, the positive
part summed over the channels, averaged.  rfmap computes the same map (``gradient='relu',
output_relu=True``) batched, on the exact receptive-field crop.  Both read the same
preprocessed images from memory, so only the ERF computation is timed.

Targets (issue #7): >= 3x the loop for resnet50 at 1024 px on the CPU; with torchrun on
P processes >= 0.8 * P x one process.  channels_last and torch.compile are measured too.

    python benchmarks/bench_erf.py [--size 1024] [--images 4] [--torchrun 2] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_model(name: str):
    import torch
    import torchvision

    torch.manual_seed(0)  # the same random weights in every process and run
    return getattr(torchvision.models, name)(weights=None).eval()


def trunk_of(model):
    """RepLKNet's ResNetForERF: the ResNet's forward, stopped after layer4."""
    import torch

    return torch.nn.Sequential(
        model.conv1,
        model.bn1,
        model.relu,
        model.maxpool,
        model.layer1,
        model.layer2,
        model.layer3,
        model.layer4,
    ).eval()


def load_images(n: int, size: int) -> np.ndarray:
    from rfmap.images import sample_images

    images = sample_images((3, size, size), n)
    return np.stack([images.load(i) for i in range(len(images))])


def replknet_loop(trunk, images) -> np.ndarray:
    """visualize_erf.py's main loop and get_input_grad, batch size 1, AverageMeter."""
    import torch

    total, count = None, 0
    for x in images:
        samples = torch.from_numpy(x[None]).clone()
        samples.requires_grad = True
        outputs = trunk(samples)
        out_size = outputs.size()
        central_point = torch.nn.functional.relu(
            outputs[:, :, out_size[2] // 2, out_size[3] // 2]
        ).sum()
        grad = torch.autograd.grad(central_point, samples)[0]
        grad = torch.nn.functional.relu(grad)
        grad_map = grad.sum((0, 1)).cpu().numpy()
        if np.isnan(np.sum(grad_map)):
            continue
        total = grad_map if total is None else total + grad_map
        count += 1
    return total / count


def timed(func):
    start = time.perf_counter()
    value = func()
    return time.perf_counter() - start, value


def worker(args: argparse.Namespace) -> int:
    """One process of a torchrun measurement: time erf() alone, rank 0 reports."""
    import torch
    import torch.distributed as dist

    from rfmap.erf import erf, process_group

    model = build_model(args.model)
    images = load_images(args.images, args.size)
    with process_group("cpu") as (rank, world):
        erf(
            model,
            images[:1],
            args.layer,
            device="cpu",
            gradient="relu",
            output_relu=True,
            distributed=False,
            batch_size=args.batch,
        )  # warm-up, this process alone
        if world > 1:
            dist.barrier()
        seconds, result = timed(
            lambda: erf(
                model,
                images,
                args.layer,
                device="cpu",
                gradient="relu",
                output_relu=True,
                batch_size=args.batch,
            )
        )
        if rank == 0:
            np.save(args.worker_out, result.map)
            print(
                json.dumps(
                    {
                        "seconds": seconds,
                        "count": result.count,
                        "world": world,
                        "threads": torch.get_num_threads(),
                    }
                )
            )
    return 0


def run_torchrun(args: argparse.Namespace, processes: int, out: Path) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads_per_process))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={processes}",
        "--master_port",
        str(29500 + processes),
        __file__,
        "--worker",
        "--worker-out",
        str(out),
        "--size",
        str(args.size),
        "--images",
        str(args.torchrun_images),
        "--model",
        args.model,
        "--layer",
        args.layer,
        "--batch",
        str(args.torchrun_batch),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"torchrun failed:\n{done.stderr[-2000:]}")
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--images", type=int, default=4, help="images for the loop comparison")
    parser.add_argument("--batch", type=int, default=None, help="rfmap batch size (default auto)")
    parser.add_argument(
        "--torchrun",
        type=int,
        default=2,
        metavar="P",
        help="compare torchrun with 1 and P processes (0: skip)",
    )
    parser.add_argument("--torchrun-images", type=int, default=8)
    parser.add_argument("--torchrun-batch", type=int, default=2)
    parser.add_argument("--threads-per-process", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--repeat", type=int, default=2, help="interleaved repeats (best kept)")
    parser.add_argument(
        "--exact-size", type=int, default=512, help="float64 crop-vs-full check size (0: skip)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    from rfmap.erf import erf

    model = build_model(args.model)
    trunk = trunk_of(model)
    images = load_images(args.images, args.size)
    n = len(images)
    print(f"rfmap ERF benchmark: {args.model} {args.layer}, {n} images at {args.size} px, CPU")
    print(f"  torch {torch.__version__}, threads {torch.get_num_threads()}, cores {os.cpu_count()}")

    def rfmap_run(net, crop, layer=args.layer, subset=images, channels_last=None):
        return erf(
            net,
            subset,
            layer,
            device="cpu",
            gradient="relu",
            output_relu=True,
            crop=crop,
            batch_size=args.batch,
            channels_last=channels_last,
        )

    methods = {
        "RepLKNet loop (baseline)": lambda: replknet_loop(trunk, images),
        "rfmap batched, full input": lambda: rfmap_run(model, False).map,
        "rfmap batched + RF crop, NCHW": lambda: rfmap_run(model, True, channels_last=False).map,
        "rfmap batched + RF crop (default: channels-last)": lambda: rfmap_run(model, True).map,
    }
    if args.compile:
        compiled = torch.compile(trunk_of(model))
        t_first, _ = timed(lambda: rfmap_run(compiled, True, layer=None, subset=images[:1]))
        print(f"  torch.compile warm-up (compilation): {t_first:.1f} s")
        methods["rfmap batched + RF crop + torch.compile"] = lambda: (
            rfmap_run(compiled, True, layer=None).map
        )

    # Warm-up (one image each, untimed): allocator, oneDNN primitives.
    replknet_loop(trunk, images[:1])
    rfmap_run(model, True, subset=images[:1])
    rfmap_run(model, True, subset=images[:1], channels_last=False)
    crop = rfmap_run(model, True, subset=images[:1]).crop
    print(f"  receptive-field crop: {crop} of {args.size}x{args.size}")

    # Interleaved repeats, best time of each: the machine is shared, load comes and goes.
    times: dict[str, list[float]] = {name: [] for name in methods}
    maps: dict[str, np.ndarray] = {}
    for _ in range(args.repeat):
        for name, method in methods.items():
            seconds, maps[name] = timed(method)
            times[name].append(seconds)
    loop_map = maps["RepLKNet loop (baseline)"]
    scale = float(np.abs(loop_map).max())
    print("  same map as the loop (float32; different kernel shapes round differently):")
    for name, value in maps.items():
        error = float(np.abs(value - loop_map).max()) / scale
        assert error < 1e-2, f"{name} differs from the loop: {error:.2e}"
        print(f"    {name}: max |difference| / max = {error:.1e}")
    if args.exact_size:
        # The crop is exact: in float64 it reproduces the full input to the last bit or so.
        torch.manual_seed(0)
        double = build_model(args.model).double()
        small = load_images(2, args.exact_size).astype(np.float64)
        full64 = erf(double, small, args.layer, crop=False, gradient="relu", output_relu=True)
        crop64 = erf(double, small, args.layer, gradient="relu", output_relu=True)
        error = float(np.abs(crop64.map - full64.map).max() / np.abs(full64.map).max())
        print(
            f"  float64, 2 images at {args.exact_size} px: crop {crop64.crop} vs full input: "
            f"max |difference| / max = {error:.1e}"
        )
        assert error < 1e-9

    best_loop = min(times["RepLKNet loop (baseline)"])
    print(f"\n  best of {args.repeat} interleaved runs, {n} images each")
    print(f"  {'method':<48} {'seconds':>8} {'images/s':>9} {'vs loop':>8}   all runs (s)")
    for name, runs in times.items():
        best = min(runs)
        every = " ".join(f"{t:.2f}" for t in runs)
        print(f"  {name:<48} {best:8.2f} {n / best:9.3f} {best_loop / best:7.1f}x   {every}")

    if args.torchrun > 1:
        results: dict[int, list[dict[str, float]]] = {1: [], args.torchrun: []}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeat):
                for p in results:
                    results[p].append(run_torchrun(args, p, Path(tmp) / f"p{p}.npy"))
            a, b = np.load(Path(tmp) / "p1.npy"), np.load(Path(tmp) / f"p{args.torchrun}.npy")
            same = float(np.abs(a - b).max() / np.abs(a).max())
        one = min(r["seconds"] for r in results[1])
        many = min(r["seconds"] for r in results[args.torchrun])
        count = results[1][0]["count"]
        print(
            f"\n  torchrun, {count} images, {args.threads_per_process} thread(s) per process, "
            f"RF crop, best of {args.repeat}:"
        )
        for p, best in ((1, one), (args.torchrun, many)):
            every = " ".join(f"{r['seconds']:.2f}" for r in results[p])
            print(f"    P={p}: {best:.2f} s ({count / best:.3f} images/s)   all runs: {every}")
        speedup = one / many
        print(
            f"    speed-up {speedup:.2f}x = {speedup / args.torchrun:.2f} * P "
            f"(target >= 0.8 * P); same map as P=1: max |difference| / max = {same:.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
