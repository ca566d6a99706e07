"""``rfmap erf``: the effective receptive field of one or more models, on real images."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from ._common import CLIError, check_dpi, parse_unit, print_json

__all__ = ["register"]

DESCRIPTION = """\
Measure the effective receptive field (ERF, Luo et al. 2016) of one output unit: the
gradient |d unit / d input| per input pixel, summed over the output channels of a layer
and the input channels, averaged over many inputs -- what the unit does see, where the
theoretical receptive field says what it could see.  Prints RepLKNet's metrics (the
high-contribution area ratios at 20, 30, 50 and 99 %), a Gaussian fit and the ERF
extent over the theoretical field; draws the paper-style heatmap with --out.

Inputs are batched, computed on the smallest crop that holds the unit's receptive field
when that is exact (same gradient, less work), and split across processes when run
under torchrun --nproc_per_node=P (gloo on CPU, NCCL on GPU)."""

EPILOG = """\
examples:
  rfmap erf torchvision.models:resnet50 --input-size 3,1024,1024 --layer layer4 \\
      --sample-images --out erf.png --save-map erf.npz
  rfmap erf torchvision.models:resnet50 --weights resnet50.pth --input-size 3,1024,1024 \\
      --layer layer4 --images ~/imagenet/val --num-images 50 --replknet --json
  rfmap erf torchvision.models:resnet18 torchvision.models:resnet50 --layer layer4 \\
      --input-size 3,512,512 --sample-images --out compare.png
  torchrun --nproc_per_node=4 -m rfmap erf torchvision.models:resnet50 \\
      --input-size 3,1024,1024 --layer layer4 --images ~/imagenet/val --out erf.png

SPEC is package.module:callable or path/to/file.py:callable (called with no arguments).
--layer takes a module name (layer4, features.7) or a torch.fx node name (layer4_1_relu_2).
RepLKNet's visualize_erf.py sums relu(output) and keeps the positive part of the
gradient: that is --replknet (= --gradient relu --output-relu).  Warnings (dead units,
an input smaller than the receptive field) go to stderr; errors exit with code 2."""


def register(subparsers: Any) -> None:
    """Register ``rfmap erf``."""
    p = subparsers.add_parser(
        "erf",
        help="effective receptive field of models on real images (heatmap, metrics, JSON)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "specs",
        nargs="+",
        metavar="SPEC",
        help="model(s): package.module:callable or file.py:callable; several are drawn side "
        "by side",
    )
    p.add_argument(
        "--input-size",
        required=True,
        metavar="C,H,W",
        help="model input size (C,L for 1D, C,D,H,W for 3D models); images are resized to it",
    )
    p.add_argument(
        "--weights",
        action="append",
        default=None,
        metavar="FILE",
        help="state dict (torch.load weights_only=True); once per SPEC, in order ('none' "
        "skips one); without weights a model is measured as its SPEC builds it (untrained)",
    )
    p.add_argument(
        "--layer",
        action="append",
        default=None,
        metavar="NAME",
        help="module name or fx node whose output unit is measured; once for all SPECs or "
        "once per SPEC (default: the model output)",
    )
    p.add_argument(
        "--unit",
        default=None,
        metavar="I,J",
        help="output unit, one index per spatial axis (default: the centre, n // 2)",
    )
    source = p.add_argument_group("inputs (default: --noise)")
    which = source.add_mutually_exclusive_group()
    which.add_argument(
        "--noise", action="store_true", help="standard-normal noise inputs, as Luo et al."
    )
    which.add_argument(
        "--sample-images",
        action="store_true",
        help="the natural images shipped with scikit-image that load offline",
    )
    which.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="every .jpg/.jpeg/.png under DIR (recursively), e.g. an ImageNet val folder",
    )
    source.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="skip image files that cannot be read (listed on stderr and in the JSON; the "
        "mean is over the images read); by default one unreadable image is an error",
    )
    source.add_argument(
        "--num-images",
        "-n",
        type=int,
        default=None,
        metavar="N",
        help="use N inputs (default: all images; 16 noise inputs); a subset is drawn with --seed",
    )
    source.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the noise, the image subset and random weights (no --weights); default 0",
    )
    source.add_argument(
        "--normalize",
        choices=("imagenet", "unit"),
        default="imagenet",
        help="image scaling: ImageNet mean/std (default) or plain [0, 1]",
    )
    method = p.add_argument_group("method")
    method.add_argument(
        "--gradient",
        choices=("abs", "relu", "signed"),
        default=None,
        help="contribution: |grad| (default, Luo), its positive part (RepLKNet), or signed",
    )
    method.add_argument(
        "--output-relu",
        action="store_true",
        help="sum relu(output) over the channels, as RepLKNet does",
    )
    method.add_argument(
        "--replknet",
        action="store_true",
        help="RepLKNet's visualize_erf.py: --gradient relu --output-relu",
    )
    run = p.add_argument_group("running")
    run.add_argument(
        "--batch-size",
        "-b",
        default="auto",
        metavar="N",
        help="inputs per forward/backward pass (default auto: from the activations' memory)",
    )
    run.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    run.add_argument(
        "--no-crop",
        dest="crop",
        action="store_false",
        help="always compute on the full input (by default an exact receptive-field crop)",
    )
    run.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        default=None,
        help="keep the model's memory format (by default 2D models run channels-last: faster)",
    )
    run.add_argument(
        "--check-crop",
        action="store_true",
        help="also compute the first input in full and check that the crop gives the same map",
    )
    progress = run.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal; needs tqdm)",
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    out = p.add_argument_group("output")
    out.add_argument("--out", "-o", default=None, metavar="FILE", help="heatmap (.png/.svg/.pdf)")
    out.add_argument(
        "--save-map",
        default=None,
        metavar="FILE.npz",
        help="raw mean maps, log-normalised maps and metadata (numpy .npz)",
    )
    out.add_argument("--json", action="store_true", help="print one JSON object with the metrics")
    out.add_argument(
        "--scale",
        choices=("replknet", "log", "linear"),
        default="replknet",
        help="heatmap scale: log10(x+1)/max (default, RepLKNet), log10(x/max) over 4 decades, "
        "or linear",
    )
    out.add_argument("--cmap", default=None, help="matplotlib colormap (default RepLKNet's)")
    out.add_argument("--dpi", type=int, default=150, help="figure resolution (default 150)")
    p.set_defaults(func=run_erf)


def _per_spec(values: list[str] | None, count: int, flag: str) -> list[str | None]:
    if not values:
        return [None] * count
    if len(values) == 1 and flag == "--layer":
        return [values[0]] * count
    if len(values) != count:
        raise CLIError(
            f"{flag} was given {len(values)} times for {count} model(s); give it once per SPEC"
            + (" or once for all" if flag == "--layer" else "")
        )
    return [None if v.strip().lower() == "none" else v for v in values]


def _batch_size(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise CLIError(f"--batch-size must be a positive integer or 'auto', got {text!r}") from None
    if value < 1:
        raise CLIError(f"--batch-size must be a positive integer or 'auto', got {text!r}")
    return value


def _inputs(args: argparse.Namespace, input_size: tuple[int, ...]) -> Any:
    from ..images import folder_images, noise_images, sample_images

    if args.num_images is not None and args.num_images < 1:
        raise CLIError(f"--num-images must be a positive integer, got {args.num_images}")
    if args.images is not None:
        return folder_images(
            args.images,
            input_size,
            args.num_images,
            seed=args.seed,
            normalization=args.normalize,
        )
    if args.sample_images:
        return sample_images(
            input_size, args.num_images, seed=args.seed, normalization=args.normalize
        )
    return noise_images(args.num_images or 16, input_size, seed=args.seed)


def run_erf(args: argparse.Namespace) -> int:
    from .._io import check_output_path
    from ..plot import FIGURE_SUFFIXES

    # Everything that can be checked is checked before loading any model.
    if args.out is not None:
        check_output_path(args.out, FIGURE_SUFFIXES)
    if args.save_map is not None:
        check_output_path(args.save_map, (".npz",))
    if args.seed < 0:
        raise CLIError(f"--seed must be a non-negative integer, got {args.seed}")
    check_dpi(args)
    if args.out is not None and args.cmap is not None:
        from ..plot.erf import erf_colormap

        erf_colormap(args.cmap)
    if args.replknet and (args.gradient not in (None, "relu")):
        raise CLIError(
            f"--replknet means --gradient relu; it contradicts --gradient {args.gradient}"
        )
    gradient = "relu" if args.replknet else (args.gradient or "abs")
    output_relu = bool(args.output_relu or args.replknet)
    count = len(args.specs)
    layers = _per_spec(args.layer, count, "--layer")
    weights = _per_spec(args.weights, count, "--weights")
    unit = parse_unit(args.unit)
    batch_size = _batch_size(args.batch_size)

    from ..erf import ERFWarning, erf, process_group
    from ..gradient import require_torch
    from ..loading import load_model, parse_input_size
    from ..progress import ProgressBar
    from ..progress import available as progress_available

    torch = require_torch()

    input_size = parse_input_size(args.input_size)
    if unit is not None and len(unit) != len(input_size) - 1:
        raise CLIError(
            f"--unit has {len(unit)} indices but the input has {len(input_size) - 1} spatial axes"
        )
    inputs = _inputs(args, input_size)
    results = []
    with process_group(args.device) as (rank, _world):
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        if args.progress and rank == 0 and not progress_available():
            print("rfmap: note: no progress bar: tqdm is not installed", file=sys.stderr)
        for spec, layer, weight in zip(args.specs, layers, weights, strict=True):
            torch.manual_seed(args.seed)  # models without weights are drawn the same way
            model = load_model(spec, weight)
            untrained = weight is None and any(True for _ in model.parameters())
            name = _display_name(spec, weight, untrained)
            if untrained and rank == 0:
                print(
                    f"rfmap: warning: no --weights for {spec}: measuring the untrained model "
                    "it builds (random initial weights); pass --weights FILE for a trained "
                    "model's ERF",
                    file=sys.stderr,
                )
            bar = ProgressBar(
                desc=spec.rpartition(":")[2] + (f" {layer}" if layer else ""),
                unit="img",
                enabled=show and rank == 0,
                file=sys.stderr,
            )
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ERFWarning)
                try:
                    result = erf(
                        model,
                        inputs,
                        layer,
                        unit=unit,
                        gradient=gradient,
                        output_relu=output_relu,
                        batch_size=batch_size,
                        device=args.device,
                        crop=args.crop,
                        check_crop=args.check_crop,
                        channels_last=args.channels_last,
                        name=name,
                        progress=bar,
                        skip_unreadable=args.skip_unreadable,
                    )
                finally:
                    bar.close()
            if rank == 0:
                _report(caught)
            results.append(result)
        if rank != 0:
            return 0
    sources = [{"spec": s, "weights": w} for s, w in zip(args.specs, weights, strict=True)]
    _write_outputs(args, results, sources)
    return 0


def _display_name(spec: str, weights: str | None, untrained: bool) -> str:
    """``resnet50 [stem]`` for ``torchvision.models:resnet50`` with weights ``stem.pth``;
    ``resnet50 (untrained)`` for a model with parameters and no weights file."""
    from pathlib import Path

    name = spec.rpartition(":")[2] or spec
    if weights is not None:
        return f"{name} [{Path(weights).stem}]"
    return f"{name} (untrained)" if untrained else name


def _report(caught: list[warnings.WarningMessage]) -> None:
    from ..erf import ERFWarning

    for item in caught:
        if issubclass(item.category, ERFWarning):
            print(f"rfmap: warning: {item.message}", file=sys.stderr)
        else:  # pragma: no cover - other libraries' warnings pass through
            warnings.showwarning(item.message, item.category, item.filename, item.lineno)


def _write_outputs(
    args: argparse.Namespace, results: list[Any], sources: list[dict[str, str | None]]
) -> None:
    from ..erf import save_erf

    written: list[str] = []
    if args.save_map is not None:
        save_erf(results, args.save_map)
        written.append(args.save_map)
    if args.out is not None:
        _draw(args, results)
        written.append(args.out)
    if args.json:
        items = [r.to_dict() | source for r, source in zip(results, sources, strict=True)]
        print_json(items[0] if len(items) == 1 else {"results": items})
        return
    from ..report import format_erf

    print(format_erf(results))
    for path in written:
        print(f"wrote {path}")


def _draw(args: argparse.Namespace, results: list[Any]) -> None:
    from ..plot import new_figure, save_figure
    from ..plot.erf import plot_erf, plot_erfs

    if len(results) == 1:
        fig = new_figure((4.6, 4.1), args.dpi)
        plot_erf(results[0], fig.add_subplot(), scale=args.scale, cmap=args.cmap)
    else:
        fig = plot_erfs(results, scale=args.scale, cmap=args.cmap, dpi=args.dpi)
    save_figure(fig, args.out)
