"""Times each verification test, so its results line carries its wall time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.verify import record


@pytest.fixture(autouse=True)
def _sweep_clock() -> Iterator[None]:
    record.started = time.monotonic()
    yield
    record.started = None
