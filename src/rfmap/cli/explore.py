"""``rfmap explore``: write (or serve) the interactive explorer page."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..html import (
    EXPLORER_LIMITS,
    PRESETS,
    ExplorerPage,
    explorer,
    explorer_server,
    stack_explorer,
)
from ..plot.maps import FIBONACCI
from ..specs import parse_int_list
from ._common import (
    CLIError,
    add_schedule_arguments,
    layers_from_args,
    parse_size,
    parse_unit,
    size_for,
)

__all__ = ["register", "run_explore"]

DESCRIPTION = """\
Write the interactive receptive-field explorer: one self-contained HTML file (all
JavaScript and CSS inline, no network request, works from file:// and offline).

It takes everything 'rfmap map' takes: per-axis values (2x1), kernels and strides per
layer, 'same'/'valid'/'causal' or explicit integer padding, 1D, 2D or 3D (a slice
viewer: pick the axis, move through the volume), a non-square or unbounded input and
the output unit.  In the page you edit all of it (add or remove layers, or type the
schedule) and the exact path-count map redraws at once.  Counts are exact integers
(BigInt past 2^53), equal to 'rfmap map --json'.  Hover a cell for its offset and
count; the layer slider (and its play button) grows the schedule one layer at a time,
like the seed notebook's GIF; the side panel shows the gridding check as 'rfmap check'
reports it.  Presets: the notebook's six schedules and its Fibonacci animation, powers
of 2 and 3, Yu & Koltun's context module, WaveNet, Inception's 1x7/7x1, strided stacks
and a 3D volume.  The view lives in the URL fragment (#d=1,2,4&k=3&n=21...), so a link
reproduces it.
"""

EPILOG = f"""\
examples:
  rfmap explore                               (explorer.html, the notebook's Fibonacci)
  rfmap explore 1,2,5 --size 33 --open        (write it and open it in the browser)
  rfmap explore 1,1,2,4,8,16,1,1 -k 3,3,3,3,3,3,3,1 --size 75 -o context.html
  rfmap explore 1,2x1,4 -k 3x5 --size 33      (per-axis dilation and kernel)
  rfmap explore 1,2 --stride 2,1 --padding 1,2 --size 33 --unit 8,8
  rfmap explore 1,2,4 --ndim 3 --size 33      (a 3D map: the slice viewer)
  rfmap explore --preset wavenet-1            (WaveNet: 1D, causal, kernel 2)
  rfmap explore 1,2,4 --serve --port 8000     (serve on http://127.0.0.1:8000/)
  rfmap explore --list-presets

limits of the page: at most {EXPLORER_LIMITS["max_layers"]} layers, kernel sizes up to \
{EXPLORER_LIMITS["max_kernel"]}, dilations up to {EXPLORER_LIMITS["max_dilation"]}, strides up to \
{EXPLORER_LIMITS["max_stride"]}, paddings up to {EXPLORER_LIMITS["max_padding"]}, size up to \
{EXPLORER_LIMITS["max_size_1d"]} in 1D, {EXPLORER_LIMITS["max_size_2d"]} per axis in 2D and \
{EXPLORER_LIMITS["max_size_3d"]} per axis in 3D.
"""


def register(subparsers: Any) -> None:
    """Register ``rfmap explore``."""
    p = subparsers.add_parser(
        "explore",
        help="write the interactive explorer page (one offline HTML file), or serve it",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "dilations",
        metavar="DILATIONS",
        nargs="?",
        default=None,
        help="comma-separated dilation per layer to open the page on; AxB gives one layer "
        "different dilations per axis (default: the notebook's Fibonacci 1,1,2,3,5)",
    )
    add_schedule_arguments(p, positional=False)
    p.add_argument(
        "--size",
        "-n",
        default="21",
        metavar="N",
        help="input size per axis: N, or H,W (D,H,W) for non-square; 'none' = unbounded "
        "(default 21)",
    )
    p.add_argument(
        "--unit",
        "-u",
        default=None,
        metavar="I,J",
        help="output unit, one index per axis (default: the centre of the output)",
    )
    p.add_argument(
        "--scale",
        choices=("auto", "linear", "log"),
        default="auto",
        help="colour scale; auto = log when counts span over 3 decades (default auto)",
    )
    p.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="L",
        help="open with the layer slider at L (show the first L layers; default all)",
    )
    p.add_argument(
        "--preset",
        choices=[preset.id for preset in PRESETS],
        default=None,
        metavar="NAME",
        help="open on a preset instead of DILATIONS; --list-presets names them",
    )
    p.add_argument(
        "--slice",
        default=None,
        metavar="AXIS,INDEX",
        help="3D maps: open on this slice (default: through the output unit along axis 0)",
    )
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="FILE",
        help="output .html file (default explorer.html; with --serve, only written if given)",
    )
    p.add_argument("--open", action="store_true", help="open the page in the default web browser")
    p.add_argument(
        "--serve",
        action="store_true",
        help="serve the page on http://127.0.0.1:PORT/ until Ctrl-C, instead of only writing it",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8000,
        help="port for --serve (default 8000; 0 picks a free port)",
    )
    p.set_defaults(func=run_explore)


def _page(args: argparse.Namespace) -> ExplorerPage:
    if args.preset is not None:
        if args.dilations is not None:
            raise CLIError("give DILATIONS or --preset, not both")
        preset = next(p for p in PRESETS if p.id == args.preset)
        return explorer(
            list(preset.dilations),
            preset.size,
            _listed(preset.kernel),
            preset.ndim,
            stride=_listed(preset.stride),
            padding=_listed(preset.padding),
            scale=args.scale,
            depth=args.depth if args.depth is not None else preset.depth,
        )
    dilations = ",".join(map(str, FIBONACCI)) if args.dilations is None else args.dilations
    layers = layers_from_args(args, dilations)
    size = parse_size(args.size)
    size_arg = size_for(size, layers[0].ndim)
    slice_ = None if args.slice is None else parse_int_list(args.slice, "slice")
    return stack_explorer(
        layers,
        size_arg,
        parse_unit(args.unit),
        scale=args.scale,
        depth=args.depth,
        slice=slice_,
    )


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _list_presets() -> int:
    width = max(len(p.id) for p in PRESETS)
    for preset in PRESETS:
        print(f"{preset.id.ljust(width)}  {preset.name}")
    return 0


def run_explore(args: argparse.Namespace) -> int:
    """Write the page, open it, or serve it."""
    if args.list_presets:
        return _list_presets()
    from .._io import check_output_path

    out = args.out if args.out is not None or args.serve else "explorer.html"
    if out is not None:
        check_output_path(out, (".html", ".htm"))
    if args.serve and not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be between 0 and 65535, got {args.port}")
    page = _page(args)
    text = page.to_html()
    if out is not None:
        from pathlib import Path

        from .._io import atomic_write_text

        path = atomic_write_text(out, text)
        print(f"wrote {out} ({len(text.encode()) // 1024} KiB): open it in a web browser")
        if args.open and not args.serve:
            _open(Path(path).resolve().as_uri() + page.url_fragment)
    if args.serve:
        server = explorer_server(text, "127.0.0.1", args.port)
        host, port = str(server.server_address[0]), server.server_address[1]
        url = f"http://{host}:{port}/{page.url_fragment}"
        print(f"serving the explorer at {url} (Ctrl-C to stop)", flush=True)
        if args.open:
            _open(url)
        try:
            serve_forever(server)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        finally:
            server.server_close()
    return 0


def serve_forever(server: Any) -> None:
    """Run the server until interrupted (a separate function so tests can stop it)."""
    server.serve_forever()


def _open(url: str) -> None:
    import webbrowser

    if not webbrowser.open(url):
        print(f"could not start a web browser; open {url}", file=sys.stderr)
