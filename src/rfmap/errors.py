"""The rfmap error hierarchy.

Every error a user can cause is an :class:`RFMapError` (a :class:`ValueError`), with a
one-line message that names the parameter, the value and what would be accepted.  The
command line turns these into one line on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "InvalidSpecError",
    "MapTooLargeError",
    "ModelError",
    "RFMapError",
    "SearchTooLargeError",
    "UnreadableImageError",
    "UnsupportedLayerError",
]


class RFMapError(ValueError):
    """Base class of every error rfmap raises on bad input."""


class InvalidSpecError(RFMapError):
    """A layer specification (kernel, dilation, stride, padding, size, unit) is invalid."""


class MapTooLargeError(RFMapError):
    """A requested array would not fit in the memory budget; raised before allocating."""


class UnsupportedLayerError(RFMapError):
    """A model contains an operation rfmap cannot analyse."""


class ModelError(RFMapError):
    """A model could not be loaded, built or run."""


class SearchTooLargeError(RFMapError):
    """A search (e.g. schedule design) would exceed its budget; raised instead of running on."""


class UnreadableImageError(RFMapError):
    """An image file could not be read or decoded (``rfmap erf --skip-unreadable`` skips it)."""
