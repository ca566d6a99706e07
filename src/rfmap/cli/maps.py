"""``rfmap map``, ``rfmap plot``, ``rfmap animate`` and ``rfmap gallery``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..paths import JSON_BYTES_PER_CELL, PathMap, check_allocation, map_shape, stack_path_map
from ..report import format_map
from ..specs import parse_schedule
from ._common import (
    CLIError,
    add_schedule_arguments,
    check_dpi,
    layers_from_args,
    parse_size,
    parse_unit,
    print_json,
    size_for,
)

SCHEDULE_EPILOG = """\
Semantics: a stack of convolutions with all weights 1, no bias and zero padding (PyTorch's
'same' by default), applied to an input of SIZE per axis.  Each cell of the map is the
number of paths from that input position to the output unit, which equals the gradient
d(unit)/d(input) that the seed notebook plotted -- computed exactly, without autograd.

examples:
  rfmap map 1,2,4 --size 21
  rfmap map 1,1,2,3,5 --size 33 --json
  rfmap map 1,2 --ndim 1 --size none          (unbounded: the whole receptive field)
  rfmap map 1,1 --kernel 3 --stride 2,1 --padding 1 --size 16 --unit 3,3
"""


def register(subparsers: Any) -> None:
    """Register map, plot, animate and gallery."""
    formatter = argparse.RawDescriptionHelpFormatter

    p = subparsers.add_parser(
        "map",
        help="print the exact path-count map of a schedule (text or --json)",
        description="Print the exact path-count map of a dilation schedule.",
        epilog=SCHEDULE_EPILOG,
        formatter_class=formatter,
    )
    _add_map_arguments(p)
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (counts as exact ints)"
    )
    p.set_defaults(func=run_map)

    p = subparsers.add_parser(
        "plot",
        help="draw the map of a schedule to an image file",
        description="Draw the exact path-count map of a schedule (PNG, SVG, PDF or JPG).",
        epilog=SCHEDULE_EPILOG,
        formatter_class=formatter,
    )
    _add_map_arguments(p)
    p.add_argument(
        "--out", "-o", required=True, metavar="FILE", help="output image (.png/.svg/.pdf)"
    )
    _add_style_arguments(p)
    p.set_defaults(func=run_plot)

    p = subparsers.add_parser(
        "animate",
        help="animate a schedule layer by layer to a GIF",
        description="Animate a schedule growing one layer per frame (the seed notebook's GIF).",
        epilog=SCHEDULE_EPILOG,
        formatter_class=formatter,
    )
    _add_map_arguments(p)
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output .gif")
    p.add_argument(
        "--seconds", type=float, default=1.0, metavar="S", help="seconds per frame (default 1)"
    )
    _add_style_arguments(p)
    p.set_defaults(func=run_animate)

    p = subparsers.add_parser(
        "gallery",
        help="write the seed notebook's six figures and its Fibonacci GIF",
        description=(
            "Write the seed notebook's figures: dilations (1,1,1), (2,2,2), (2,2,2,2), (1,2,4), "
            "(1,1,2), (1,1,2,3,5) at 21x21 (3x3 in, 150 dpi, Blues) as PNG, and the animation "
            "of the Fibonacci schedule (1,1,2,3,5), one layer per second, as fibonacci.gif."
        ),
    )
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--size", type=int, default=21, metavar="N", help="input size (default 21)")
    p.set_defaults(func=run_gallery)


def _add_map_arguments(p: argparse.ArgumentParser) -> None:
    add_schedule_arguments(p)
    p.add_argument(
        "--size",
        "-n",
        default="21",
        metavar="N",
        help="input size per axis: N, or H,W for non-square; 'none' = unbounded (default 21)",
    )
    p.add_argument(
        "--unit",
        "-u",
        default=None,
        metavar="I,J",
        help="output unit, one index per axis (default: the centre of the output)",
    )


def _add_style_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scale",
        choices=("auto", "linear", "log"),
        default="auto",
        help="colour scale; auto = log when counts span over 3 decades (default auto)",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--annotate",
        dest="annotate",
        action="store_true",
        default=None,
        help="write the counts into the cells (default: only for maps up to 15 cells wide)",
    )
    group.add_argument("--no-annotate", dest="annotate", action="store_false")
    p.add_argument("--cmap", default="Blues", help="matplotlib colormap (default Blues)")
    p.add_argument("--title", default=None, help="figure title (default: 'Dilation rates: (...)')")
    p.add_argument("--figsize", default=None, metavar="W,H", help="figure size in inches")
    p.add_argument("--dpi", type=int, default=150, help="resolution (default 150)")


def _compute(args: argparse.Namespace, check: Any = None) -> PathMap:
    """The map the options describe; ``check(shape)`` may refuse it before it is built."""
    layers = layers_from_args(args)
    size = parse_size(args.size)
    unit = parse_unit(args.unit)
    size_arg = size_for(size, layers[0].ndim)
    if check is not None:
        check(map_shape(layers, size_arg))
    return stack_path_map(layers, size_arg, unit)


def _check_json(shape: tuple[int, ...]) -> None:
    size = "x".join(map(str, shape))
    check_allocation(math.prod(shape), JSON_BYTES_PER_CELL, None, f"the JSON of a {size} map")


def run_map(args: argparse.Namespace) -> int:
    pmap = _compute(args, _check_json if args.json else None)
    if args.json:
        print_json(pmap.to_dict())
    else:
        print(format_map(pmap))
    return 0


def _style(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "scale": args.scale,
        "annotate": args.annotate,
        "cmap": args.cmap,
        **({"title": args.title} if args.title is not None else {}),
    }


def _figsize(args: argparse.Namespace) -> tuple[float, float] | None:
    if args.figsize is None:
        return None
    parts = args.figsize.split(",")
    try:
        width, height = (float(p) for p in parts)
    except ValueError:
        raise CLIError(f"--figsize must be W,H in inches, got {args.figsize!r}") from None
    if not (0 < width <= 50 and 0 < height <= 50):
        raise CLIError(f"--figsize must be between 0 and 50 inches, got {args.figsize!r}")
    return width, height


def run_plot(args: argparse.Namespace) -> int:
    from .._io import check_output_path
    from ..plot import FIGURE_SUFFIXES, default_figsize, new_figure, plot_map, save_figure
    from ..plot.maps import check_drawable

    check_output_path(args.out, FIGURE_SUFFIXES)
    check_dpi(args)
    figsize = _figsize(args)
    pmap = _compute(args, check_drawable)
    fig = new_figure(figsize or default_figsize(pmap), args.dpi)
    plot_map(pmap, fig.add_subplot(), **_style(args))
    save_figure(fig, args.out)
    print(f"wrote {args.out}")
    return 0


def run_animate(args: argparse.Namespace) -> int:
    from .._io import check_output_path
    from ..plot import animate_schedule
    from ..plot.maps import check_drawable

    check_output_path(args.out, (".gif",))
    check_dpi(args)
    if not 0.02 <= args.seconds <= 60:
        raise CLIError(f"--seconds must be between 0.02 and 60, got {args.seconds}")
    frames = len(parse_schedule(args.dilations))
    # validates the whole schedule (and the memory the frames need) before drawing any frame
    pmap = _compute(args, lambda shape: check_drawable(shape, frames))
    animate_schedule(
        pmap.layers,
        pmap.size,
        args.out,
        unit=pmap.unit,
        seconds_per_frame=args.seconds,
        figsize=_figsize(args),
        dpi=args.dpi,
        **_style(args),
    )
    print(f"wrote {args.out} ({len(pmap.layers)} frames)")
    return 0


def run_gallery(args: argparse.Namespace) -> int:
    from ..plot import gallery

    if args.size < 1:
        raise CLIError(f"--size must be a positive integer, got {args.size}")
    for path in gallery(args.out, size=args.size):
        print(f"wrote {path}")
    return 0


__all__ = ["register"]
