"""Fixtures of the transaction tests."""

from __future__ import annotations

import pytest

from sipsca.transaction import TransactionLayer

from .network import make_layer


@pytest.fixture
def layer() -> TransactionLayer:
    return make_layer()
