"""``rfmap explore``: write (or serve) the interactive explorer page."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InvalidSpecError
from ..html import EXPLORER_LIMITS, PRESETS, ExplorerPage, explorer, explorer_server
from ..specs import parse_int_list
from ._common import CLIError

__all__ = ["register", "run_explore"]

DESCRIPTION = """\
Write the interactive receptive-field explorer: one self-contained HTML file (all
JavaScript and CSS inline, no network request, works from file:// and offline).

In the page you edit the schedule (add or remove layers, kernel size and dilation per
layer), the input size, 1D/2D and the padding, and the exact path-count map redraws at
once.  Counts are exact integers (BigInt past 2^53), equal to 'rfmap map --json'.
Hover a cell for its offset and count; the layer slider (and its play button) grows
the schedule one layer at a time, like the seed notebook's GIF; the side panel shows
the gridding check as 'rfmap check' reports it.  Presets: the notebook's six schedules
and its Fibonacci animation, powers of 2 and 3, Yu & Koltun's context module, WaveNet.
The view lives in the URL fragment (#d=1,2,4&k=3&n=21...), so a link reproduces it.
"""

EPILOG = f"""\
examples:
  rfmap explore                               (explorer.html, the notebook's Fibonacci)
  rfmap explore 1,2,5 --size 33 --open        (write it and open it in the browser)
  rfmap explore 1,1,2,4,8,16,1,1 -k 3,3,3,3,3,3,3,1 --size 75 -o context.html
  rfmap explore --preset wavenet-1            (WaveNet: 1D, causal, kernel 2)
  rfmap explore 1,2,4 --serve --port 8000     (serve on http://127.0.0.1:8000/)
  rfmap explore --list-presets

limits of the page: at most {EXPLORER_LIMITS["max_layers"]} layers, kernel sizes up to \
{EXPLORER_LIMITS["max_kernel"]}, dilations up to {EXPLORER_LIMITS["max_dilation"]}, size up to \
{EXPLORER_LIMITS["max_size_2d"]} in 2D and {EXPLORER_LIMITS["max_size_1d"]} in 1D.
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
        help="comma-separated dilation per layer to open the page on "
        "(default: the notebook's Fibonacci 1,1,2,3,5)",
    )
    p.add_argument(
        "--kernel",
        "-k",
        default="3",
        metavar="K",
        help="kernel size: one for all layers, or comma-separated per layer (default 3)",
    )
    p.add_argument("--ndim", type=int, default=2, choices=(1, 2), help="1D or 2D maps (default 2)")
    p.add_argument(
        "--size",
        "-n",
        type=str,
        default="21",
        metavar="N",
        help="input size N (N x N in 2D; default 21)",
    )
    p.add_argument(
        "--padding",
        default=None,
        choices=("same", "valid", "causal"),
        help="zero padding of every layer: PyTorch's 'same' (default), 'valid' or 'causal'",
    )
    p.add_argument("--causal", action="store_true", help="same as --padding causal (TCNs, WaveNet)")
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
            preset.dilations,
            preset.size,
            preset.kernel,
            preset.ndim,
            padding=preset.padding,
            scale=args.scale,
            depth=args.depth if args.depth is not None else preset.depth,
        )
    if args.causal and args.padding not in (None, "causal"):
        raise CLIError(f"--causal and --padding {args.padding} contradict each other")
    padding = "causal" if args.causal else (args.padding or "same")
    dilations: Any = (
        (1, 1, 2, 3, 5) if args.dilations is None else _ints(args.dilations, "dilations")
    )
    kernels = _ints(args.kernel, "kernel")
    size = _ints(args.size, "size")
    if len(size) != 1:
        raise CLIError(f"--size must be one integer N (the page draws N x N), got {args.size!r}")
    return explorer(
        dilations,
        size[0],
        kernels if len(kernels) > 1 else kernels[0],
        args.ndim,
        padding=padding,
        scale=args.scale,
        depth=args.depth,
    )


def _ints(text: str, name: str) -> list[int]:
    if "x" in text.lower():
        raise InvalidSpecError(
            f"{name} must be comma-separated integers (the explorer has no per-axis AxB "
            f"values), got {text!r}"
        )
    return parse_int_list(text, name)


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
