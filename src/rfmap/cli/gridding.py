"""``rfmap check``, ``rfmap design``, ``rfmap compare`` and ``rfmap tcn``."""

from __future__ import annotations

import argparse
import textwrap
from typing import Any

from ..design import Objective
from ..report import format_comparison, format_design, format_report, format_tcn
from ._common import (
    CLIError,
    add_schedule_arguments,
    check_dpi,
    layers_from_args,
    parse_size,
    print_json,
    size_for,
)

__all__ = ["register"]

CHECK_EPILOG = """\
Everything is exact and for an unbounded input (no border effects), so only the schedule
matters: the field of a stack is the same in any layer order.  'gridding' means a cell
inside the receptive field that no path reaches.  Offsets count from the field's first
cell along an axis.

exit status:
  0  gridding-free          1  the field has holes (like a linter; --exit-zero turns it off)
  2  bad input (one line on stderr)

examples:
  rfmap check 2,2,2                 holes: why, where, and the smallest fix (1,2,3)
  rfmap check 1,2,5 --json          the full report as JSON (see docs/gridding.md)
  rfmap check 1,2,4,8 --kernel 2 --ndim 1 --causal
  rfmap check 1,2,9 --out field.png draw the field with its holes
"""

DESIGN_EPILOG = """\
The search is over gridding-free schedules of one kernel size and stride 1.  It is exact:
branch and bound with sound bounds proves the optimum (no heuristic), and ties are ranked
deterministically.  Schedules are listed in ascending order; any order of the layers
gives the same receptive field.

objectives:
  rf    largest receptive field (1 + (K-1) * sum of dilations); ties: the wider ERF
        (larger sum of squared dilations), then the lexicographically smaller schedule
  flat  smallest peak-to-mean ratio (largest path count / mean count; 1 = every cell of
        the field reached equally often); ties: larger receptive field, then the
        lexicographically smaller schedule.  This search enumerates more and may refuse
        as too large: narrow it with --max-dilation or --target-rf, or ask --top 1.

With --target-rf R only schedules reaching R count; without --layers the depth is the
smallest that can reach R.

examples:
  rfmap design --layers 4                       1,3,9,27: receptive field 81 = 3**4
  rfmap design --layers 6 --max-dilation 8 --top 3
  rfmap design --target-rf 100 --objective flat
  rfmap design --layers 5 --kernel 2 --json
"""

COMPARE_EPILOG = """\
Each schedule is checked exactly (unbounded input) and drawn as its path-count map on a
SIZE input ('same' padding unless told otherwise), side by side, with a table of the
metrics below.  By default every map shares one colour scale, so cells compare directly.

examples:
  rfmap compare 2,2,2 1,2,3 1,2,5 --size 33
  rfmap compare 2,2,2 1,2,3 1,2,5 --size 33 --out compare.png --no-shared-scale
  rfmap compare 1,2,4 1,2,9 --ndim 1 --size 41 --json
"""

TCN_EPILOG = """\
presets (defaults in brackets):
  keras-tcn  philipperemy/keras-tcn TCN: nb_stacks x one residual block per dilation, two
             causal Conv1D per block, skip connections summed
             [--kernel 3 --dilations 1,2,4,8,16,32 --stacks 1]
  locuslab   locuslab/TCN TemporalConvNet (Bai et al. 2018): level i is a TemporalBlock of
             dilation 2**i with two causal convolutions  [--kernel 7 --levels 8]
  wavenet    WaveNet (van den Oord et al. 2016; ibab/tensorflow-wavenet): initial causal
             conv, then gated layers of dilations 1..512 repeated, residual and skip
             connections  [--kernel 2 --dilations 1,2,...,512 --stacks 3 --initial-kernel K]

The map counts the paths from every past input to the output at the last step in the real
block structure (all weights one; residual, skip and 1x1 connections as weight-1 edges).
The receptive field is read off that map and compared with the formulas the projects
document; each is marked right or wrong.

examples:
  rfmap tcn keras-tcn
  rfmap tcn keras-tcn --kernel 2 --dilations 1,2,4,8 --stacks 2 --out tcn.png
  rfmap tcn wavenet --stacks 1 --initial-kernel 0      the paper's 1024
  rfmap tcn locuslab --levels 4 --json
"""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 88)


def register(subparsers: Any) -> None:
    """Register check, design, compare and tcn."""
    formatter = argparse.RawDescriptionHelpFormatter

    p = subparsers.add_parser(
        "check",
        help="does a dilation schedule grid? where, why, and the smallest fix",
        description=_wrap(
            "Decide exactly whether a dilation schedule's receptive field has holes "
            "(gridding), explain where and why, compare with the HDC rule of Wang et al. "
            "(2018), and suggest the smallest change that fixes it."
        ),
        epilog=CHECK_EPILOG,
        formatter_class=formatter,
    )
    add_schedule_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--no-suggest", dest="suggest", action="store_false", help="skip the search for a fix"
    )
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even when the field has holes")
    p.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="FILE",
        help="also draw the field along each axis, holes marked (.png/.svg/.pdf)",
    )
    p.set_defaults(func=run_check)

    p = subparsers.add_parser(
        "design",
        help="find the best gridding-free dilation schedules (exact search)",
        description=_wrap(
            "Find the best gridding-free dilation schedules: the largest receptive field "
            "for L layers, or the flattest field, optionally reaching a target receptive "
            "field.  The optimum is proven by the search."
        ),
        epilog=DESIGN_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument(
        "--layers",
        "-L",
        type=int,
        default=None,
        metavar="L",
        help="number of layers (optional with --target-rf: the fewest that reach it)",
    )
    p.add_argument(
        "--kernel",
        "-k",
        type=int,
        default=3,
        metavar="K",
        help="kernel size of every layer (default 3)",
    )
    p.add_argument(
        "--max-dilation",
        type=int,
        default=None,
        metavar="D",
        help="largest dilation allowed (default: no limit)",
    )
    p.add_argument(
        "--target-rf",
        type=int,
        default=None,
        metavar="R",
        help="only schedules whose receptive field is at least R",
    )
    p.add_argument(
        "--objective",
        choices=[o.value for o in Objective],
        default="rf",
        help="rf: largest receptive field (default); flat: most even field",
    )
    p.add_argument(
        "--top",
        type=int,
        default=5,
        metavar="N",
        help="how many schedules to list, best first (default 5, at most 10,000)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=run_design)

    p = subparsers.add_parser(
        "compare",
        help="several schedules side by side: maps and a metrics table",
        description=_wrap(
            "Compare dilation schedules side by side: maps and a table of exact metrics."
        ),
        epilog=COMPARE_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument(
        "schedules",
        nargs="+",
        metavar="SCHEDULE",
        help="dilation schedules, e.g. 2,2,2 1,2,3 (AxB for per-axis values)",
    )
    add_schedule_arguments(p, positional=False)
    p.add_argument(
        "--size",
        "-n",
        default="33",
        metavar="N",
        help="input size of the maps: N, or H,W (default 33)",
    )
    p.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="FILE",
        help="write the side-by-side figure (.png/.svg/.pdf)",
    )
    p.add_argument(
        "--shared-scale",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one colour scale for every map (default) or one per map",
    )
    p.add_argument(
        "--scale",
        choices=("auto", "linear", "log"),
        default="auto",
        help="colour scale; auto = log when counts span over 3 decades",
    )
    p.add_argument("--dpi", type=int, default=150, help="figure resolution (default 150)")
    p.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    p.set_defaults(func=run_compare)

    p = subparsers.add_parser(
        "tcn",
        help="receptive field of keras-tcn, locuslab TCN and WaveNet presets",
        description=_wrap(
            "Exact receptive field and path-count map of a temporal convolutional network "
            "preset, with the formulas its project documents checked against it."
        ),
        epilog=TCN_EPILOG,
        formatter_class=formatter,
    )
    p.add_argument(
        "preset",
        choices=("keras-tcn", "locuslab", "wavenet"),
        metavar="PRESET",
        help="keras-tcn, locuslab or wavenet",
    )
    p.add_argument(
        "--kernel",
        "-k",
        type=int,
        default=None,
        metavar="K",
        help="kernel size of the dilated convolutions",
    )
    p.add_argument(
        "--dilations",
        default=None,
        metavar="D,D,...",
        help="dilations of one stack/block (keras-tcn, wavenet)",
    )
    p.add_argument(
        "--stacks",
        type=int,
        default=None,
        metavar="N",
        help="keras-tcn nb_stacks / WaveNet block repetitions",
    )
    p.add_argument(
        "--levels",
        type=int,
        default=None,
        metavar="N",
        help="locuslab: number of TemporalBlocks (dilations 1, 2, ..., 2**(N-1))",
    )
    p.add_argument(
        "--initial-kernel",
        type=int,
        default=None,
        metavar="K0",
        help="wavenet: width of the initial causal conv (0 = none)",
    )
    p.add_argument(
        "--no-skip", dest="skip", action="store_false", help="keras-tcn: use_skip_connections=False"
    )
    p.add_argument(
        "--out", "-o", default=None, metavar="FILE", help="draw the map (.png/.svg/.pdf)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the result (with the exact counts) as one JSON object",
    )
    p.set_defaults(func=run_tcn)


# -- check -------------------------------------------------------------------------------


def _check_out(path: str | None) -> None:
    """Fail at once on an unwritable --out, before any work."""
    if path is not None:
        from .._io import check_output_path
        from ..plot import FIGURE_SUFFIXES

        check_output_path(path, FIGURE_SUFFIXES)


def _save(fig: Any, path: str) -> None:
    from ..plot import save_figure

    save_figure(fig, path)
    print(f"wrote {path}")


def run_check(args: argparse.Namespace) -> int:
    from ..gridding import check_layers

    _check_out(args.out)
    report = check_layers(layers_from_args(args), suggest=args.suggest)
    if args.json:
        print_json(report.to_dict())
    else:
        print(format_report(report))
    if args.out is not None:
        if not report.map_computed:
            raise CLIError("the field is too large to draw; leave out --out")
        _save(report.plot().figure, args.out)
    return 0 if report.gridding_free or args.exit_zero else 1


# -- design ------------------------------------------------------------------------------


def run_design(args: argparse.Namespace) -> int:
    from ..design import design

    result = design(
        args.layers,
        args.kernel,
        max_dilation=args.max_dilation,
        target_rf=args.target_rf,
        objective=args.objective,
        top=args.top,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_design(result))
    return 0


# -- compare -----------------------------------------------------------------------------


def run_compare(args: argparse.Namespace) -> int:
    from ..gridding import Comparison, check_layers
    from ..paths import stack_path_map

    _check_out(args.out)
    check_dpi(args)
    if len(args.schedules) > 12:
        raise CLIError(f"compare at most 12 schedules at once, got {len(args.schedules)}")
    size = parse_size(args.size)
    if size is None:
        raise CLIError("--size must be a number (the maps need a finite input)")
    stacks = [layers_from_args(args, text) for text in args.schedules]
    ndims = {stack[0].ndim for stack in stacks}
    if len(ndims) > 1:
        raise CLIError(f"the schedules have different numbers of axes: {sorted(ndims)}")
    ndim = ndims.pop()
    size_arg = size_for(size, ndim)
    maps = tuple(stack_path_map(stack, size_arg) for stack in stacks)
    reports = tuple(check_layers(stack, suggest=False) for stack in stacks)
    comparison = Comparison(reports, maps, tuple(maps[0].counts.shape))
    if args.json:
        print_json(comparison.to_dict())
    else:
        print(format_comparison(comparison))
    if args.out is not None:
        from ..plot import plot_compare

        fig = plot_compare(
            comparison, shared_scale=args.shared_scale, scale=args.scale, dpi=args.dpi
        )
        _save(fig, args.out)
    return 0


# -- tcn ---------------------------------------------------------------------------------


def run_tcn(args: argparse.Namespace) -> int:
    from ..specs import parse_int_list
    from ..tcn import tcn

    _check_out(args.out)
    dilations = None if args.dilations is None else parse_int_list(args.dilations, "--dilations")
    result = tcn(
        args.preset,
        kernel_size=args.kernel,
        dilations=dilations,
        stacks=args.stacks,
        levels=args.levels,
        skip_connections=args.skip,
        initial_kernel=args.initial_kernel,
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print(format_tcn(result))
    if args.out is not None:
        _save(result.plot().figure, args.out)
    return 0
