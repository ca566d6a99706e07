"""Helpers shared by the CLI command modules: one-line errors, schedule options, output."""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, NoReturn

from ..errors import RFMapError
from ..specs import ConvLayer, conv_stack, parse_int_list, parse_schedule

__all__ = [
    "CLIError",
    "OneLineParser",
    "add_schedule_arguments",
    "check_dpi",
    "layers_from_args",
    "parse_unit",
    "print_json",
]


class CLIError(RFMapError):
    """A command-line usage error; ``code`` is the exit status (2)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit code 2.

    Values such as ``-1,-1`` count as negative numbers, not options, so ``--unit -1,-1``
    reaches the range check (and its clear error) instead of "expected one argument".
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's own pattern takes "-1" but not "-1,-1" (before Python 3.13).
        self._negative_number_matcher = re.compile(r"^-\d+(\s*,\s*-?\d+)*$|^-\d*\.\d+$")

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{message} (see '{self.prog} --help')")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status and message:
            raise CLIError(message.strip(), status)
        super().exit(status, message)


def add_schedule_arguments(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    """Add DILATIONS, --kernel, --ndim, --stride, --padding and --causal."""
    if positional:
        parser.add_argument(
            "dilations",
            metavar="DILATIONS",
            help="comma-separated dilation per layer, e.g. 1,2,4; AxB gives one layer "
            "different dilations per axis (2x1)",
        )
    parser.add_argument(
        "--kernel",
        "-k",
        default="3",
        metavar="K",
        help="kernel size: one for all layers, or comma-separated per layer (default 3)",
    )
    parser.add_argument(
        "--ndim",
        type=int,
        default=None,
        choices=(1, 2, 3),
        help="number of spatial axes (default 2, or inferred from AxB values)",
    )
    parser.add_argument(
        "--stride",
        default="1",
        metavar="S",
        help="stride: one for all layers or one per layer (default 1; >1 needs --padding)",
    )
    parser.add_argument(
        "--padding",
        default=None,
        metavar="P",
        help="'same' (PyTorch's, default), 'valid', 'causal', or integer(s), per layer or one",
    )
    parser.add_argument(
        "--causal",
        action="store_true",
        help="causal convolutions (pad on the left only), as in TCNs and WaveNet",
    )


def _schedule_option(text: str, name: str, layers: int) -> Any:
    """One entry applies to every layer (an AxB entry too: per axis); else one per layer."""
    values = parse_schedule(text, name)
    if len(values) == 1:
        return values[0] if isinstance(values[0], int) else values * layers
    return values


def layers_from_args(
    args: argparse.Namespace, dilations: str | None = None
) -> tuple[ConvLayer, ...]:
    """Build the validated layer stack from the schedule options."""
    schedule = parse_schedule(args.dilations if dilations is None else dilations, "dilations")
    padding: Any = "same"
    if args.causal:
        if args.padding not in (None, "causal"):
            raise CLIError(f"--causal and --padding {args.padding} contradict each other")
        padding = "causal"
    elif args.padding is not None:
        text = args.padding.strip().lower()
        if text in ("same", "valid", "causal"):
            padding = text
        else:
            try:
                padding = _schedule_option(text, "padding", len(schedule))
            except RFMapError:
                raise CLIError(
                    "--padding must be same, valid, causal, or non-negative integers "
                    f"(one, or one per layer), got {args.padding!r}"
                ) from None
    return conv_stack(
        schedule,
        _schedule_option(args.kernel, "kernel", len(schedule)),
        ndim=args.ndim,
        stride=_schedule_option(args.stride, "stride", len(schedule)),
        padding=padding,
    )


def parse_unit(text: str | None) -> tuple[int, ...] | None:
    """Parse ``--unit I,J`` into a tuple (or None)."""
    return None if text is None else tuple(parse_int_list(text, "unit"))


def parse_size(text: str | None, name: str = "size") -> tuple[int, ...] | None:
    """Parse ``--size N`` or ``--size H,W`` (``none`` for unbounded)."""
    if text is None or text.strip().lower() in ("none", "inf", "unbounded"):
        return None
    return tuple(parse_int_list(text, name))


def size_for(size: tuple[int, ...] | None, ndim: int) -> int | tuple[int, ...] | None:
    """``--size`` for maps of ``ndim`` axes: one value for every axis, or one per axis."""
    if size is not None and len(size) not in (1, ndim):
        raise CLIError(f"--size has {len(size)} values but the maps are {ndim}D")
    return size[0] if size is not None and len(size) == 1 else size


def check_dpi(args: argparse.Namespace) -> None:
    """Refuse a figure resolution outside 10..1200 dpi (``--dpi``)."""
    if not 10 <= args.dpi <= 1200:
        raise CLIError(f"--dpi must be between 10 and 1200, got {args.dpi}")


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout."""
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
