"""Real-clock storms, bounded to about a second each: every waiter wrapped in a random
`asyncio.wait_for` timeout, invariants checked from the admission log."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from conftest import max_in_window, run

import rate_limiter
import tollgate

RATE = 200.0  # per second
DURATION = 1.2  # seconds


async def storm(acquire, tasks: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    admitted: list[float] = []
    stop = time.monotonic() + DURATION

    async def worker() -> None:
        while time.monotonic() < stop:
            try:
                await asyncio.wait_for(acquire(), timeout=rng.uniform(0.0, 0.03))
            except asyncio.TimeoutError:
                continue
            admitted.append(time.monotonic())

    await asyncio.gather(*(worker() for _ in range(tasks)))
    return admitted


@pytest.mark.parametrize(
    "make, burst",
    [
        pytest.param(lambda: tollgate.AsyncRateLimiter(int(RATE), burst=1).acquire, 1, id="tollgate"),
        # The seed's capacity is max(1, rate): a full bucket of 200 at the start.
        pytest.param(lambda: rate_limiter.AsyncRateLimiter(RATE).acquire, 200, id="drop-in"),
    ],
)
def test_timeouts_cost_no_capacity(make, burst: int) -> None:
    admitted = run(storm(make(), tasks=100, seed=11))
    # Never above the bound (burst + rate * d in every window; +1 for the clock's rounding)
    # and at least 70 % of the rate over the run despite constant cancellations. On an idle
    # machine this run admits 102 %; with both of 2 cores busy elsewhere, 88 %; at a load
    # average of 11 on 2 cores (debug build), 79-80 %; a limiter that kept cancelled
    # reservations admits under 2 %.
    for window in (0.1, 0.5, DURATION):
        assert max_in_window(admitted, window) <= burst + RATE * window + 1
    assert len(admitted) - burst >= 0.70 * RATE * DURATION


def test_model_limiter_storm_keeps_parallel_and_rpm_bounds() -> None:
    cfg = tollgate.RateLimitConfig(rpm=150, tpm=1_000_000, max_parallel_requests=3)
    lim = tollgate.ModelRateLimiter({"m": cfg})
    rng = random.Random(5)
    admitted: list[float] = []
    in_flight = peak = 0

    async def worker() -> None:
        nonlocal in_flight, peak
        stop = time.monotonic() + DURATION
        while time.monotonic() < stop:
            try:
                permit = await asyncio.wait_for(
                    lim.acquire("m", 100), timeout=rng.uniform(0.0, 0.02)
                )
            except asyncio.TimeoutError:
                continue
            admitted.append(time.monotonic())
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                await asyncio.wait_for(asyncio.sleep(rng.uniform(0, 0.01)), timeout=0.005)
            except asyncio.TimeoutError:
                pass
            in_flight -= 1
            permit.settle(rng.randint(0, 100))

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(60)))

    run(main())
    stats = lim.stats()["m"]
    assert peak <= 3
    assert stats.active.used == 0
    assert len(admitted) <= 150  # one minute's RPM over a 1.2 s run
    assert len(admitted) >= 100  # ... and the storm did not stall admissions
