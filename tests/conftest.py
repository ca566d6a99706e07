"""Shared test configuration: hypothesis profiles and the torch marker."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

# "ci" (the default) keeps the whole suite near 10 minutes on 2 cores; "thorough" digs deeper.
settings.register_profile(
    "ci", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "thorough", deadline=None, max_examples=1000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _close_pyplot_figures():
    """``.plot()`` draws on pyplot figures (so notebooks show them): close them per test."""
    yield
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close("all")
