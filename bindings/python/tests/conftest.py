"""Shared fixtures: a fake clock that drives ``time.monotonic``, ``time.sleep`` and
``asyncio.sleep`` (the way user code patches them), and an admission log checker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from unittest import mock

import pytest

_real_async_sleep = asyncio.sleep


class FakeClock:
    """Time that moves only when something sleeps (or a test calls ``advance``)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float, result: object = None) -> object:
        self.sleeps.append(seconds)
        self.now += seconds
        await _real_async_sleep(0)  # still let other tasks run
        return result


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    clock = FakeClock()
    with (
        mock.patch("time.monotonic", side_effect=clock.monotonic),
        mock.patch("time.sleep", side_effect=clock.sleep),
        mock.patch("asyncio.sleep", side_effect=clock.async_sleep),
    ):
        yield clock


def max_in_window(times: list[float], window: float) -> int:
    """The most admissions inside any half-open interval ``[t, t + window)``."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def run(coro, timeout: float = 60.0):
    """Runs a test coroutine on a fresh loop, bounded in real time (so a hang fails).
    Our own suite needs no pytest-asyncio."""
    if isinstance(time.monotonic, mock.Mock):
        # The loop's clock is the fake one too: bound the test in fake seconds instead.
        timeout = 100_000.0
    return asyncio.run(asyncio.wait_for(coro, timeout))
