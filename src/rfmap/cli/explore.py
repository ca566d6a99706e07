"""Placeholder: `rfmap explore` is being written."""

from typing import Any


def register(subparsers: Any) -> None:
    """Register nothing yet."""
