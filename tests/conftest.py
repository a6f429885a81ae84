"""Shared test settings. Timeouts are multiples of MS so a slow CI can scale them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: One "millisecond" of test time; WATCHER_TEST_TIMEOUT_FACTOR=3 makes every timeout 3× longer.
MS = 0.001 * float(os.environ.get("WATCHER_TEST_TIMEOUT_FACTOR", "1"))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KALSHI_MESSAGES = SHARED / "kalshi-messages"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def kalshi_messages() -> Path:
    if not KALSHI_MESSAGES.is_dir():
        pytest.fail(f"../shared/kalshi-messages not found at {KALSHI_MESSAGES}")
    return KALSHI_MESSAGES
