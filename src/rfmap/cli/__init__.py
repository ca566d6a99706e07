"""The ``rfmap`` command line: a thin adapter over the Python API.

``main(argv)`` parses, calls the compute functions, renders their result objects, and
turns every :class:`~rfmap.errors.RFMapError` into one line on stderr and exit code 2.
Each command group lives in its own module with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import RFMapError
from ._common import CLIError, OneLineParser

__all__ = ["build_parser", "main"]

#: Modules (under rfmap.cli) that register subcommands, in --help order.
COMMAND_MODULES = [
    "maps",
    "gridding",
    "model",
    "erf",
    "explore",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    parser = OneLineParser(
        prog="rfmap",
        description=(
            "Exact receptive-field maps of convolutional networks: path counts of dilated "
            "conv stacks, gridding checks, model receptive fields and effective receptive "
            "fields.  Run 'rfmap COMMAND --help' for each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rfmap {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 ok, 1 a finding such as gridding, 2 error)."""
    parser = build_parser()
    # Exact counts can have more digits than Python prints by default (4300): print them all.
    digit_limit = getattr(sys, "get_int_max_str_digits", lambda: None)()
    if digit_limit is not None:
        sys.set_int_max_str_digits(0)
    try:
        args = parser.parse_args(argv)
        code: int = args.func(args)
        return code
    except CLIError as exc:
        print(f"rfmap: error: {exc}", file=sys.stderr)
        return exc.code
    except RFMapError as exc:
        print(f"rfmap: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("rfmap: error: out of memory; use a smaller size", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rfmap: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        if digit_limit is not None:
            sys.set_int_max_str_digits(digit_limit)
