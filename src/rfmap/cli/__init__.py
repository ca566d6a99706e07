"""The ``rfmap`` command line: a thin adapter over the Python API.

``main(argv)`` parses, calls the compute functions, renders their result objects, and
turns every :class:`~rfmap.errors.RFMapError` into one line on stderr and exit code 2.
Each command group lives in its own module with a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

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
    stdout = _GuardedStdout(sys.stdout)
    sys.stdout = stdout
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help and --version print, then exit 0
            if not exc.code:
                sys.stdout.flush()
                if stdout.failed is not None:  # argparse swallows a failed write
                    raise stdout.failed from None
            raise
        code: int = args.func(args)
        sys.stdout.flush()  # a full disk or a closed pipe on stdout shows here, not at exit
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
    except BrokenPipeError:  # `rfmap map --json | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    except OSError as exc:  # an output that cannot be written: one line, exit 2
        if stdout.failed is not None:
            _silence_stdout()
            print(
                f"rfmap: error: cannot write to standard output: {exc.strerror or exc}",
                file=sys.stderr,
            )
        else:
            where = f": {exc.filename!r}" if exc.filename else ""
            print(f"rfmap: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    finally:
        sys.stdout = stdout.stream
        if digit_limit is not None:
            sys.set_int_max_str_digits(digit_limit)


class _GuardedStdout:
    """``sys.stdout`` while :func:`main` runs: it notes a write that fails (a full disk,
    a closed pipe), so the error can name standard output rather than a file."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            self.failed = exc
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            self.failed = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (e.g. captured in tests)
        pass
