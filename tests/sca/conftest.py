"""Fixtures shared by the SCA engine tests (modules that need another setup define their
own ``h``)."""

from __future__ import annotations

import pytest

from .factory import A, B, SubDialog
from .harness import Harness


@pytest.fixture
def h() -> Harness:
    """A fresh engine with its fake clock and captured effects."""
    return Harness()


@pytest.fixture
def line(h: Harness) -> dict[str, SubDialog]:
    """Members A and B subscribed to call-info, their first NOTIFYs consumed."""
    return h.call_info_line(A, B)
