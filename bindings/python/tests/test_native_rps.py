"""The native RPS limiters: burst and rate, typed errors, patched clocks, FIFO, threads."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest
from conftest import FakeClock, max_in_window, run

import tollgate
from tollgate import (
    AsyncRateLimiter,
    InsufficientCapacity,
    InvalidConfig,
    MaxWaitExceeded,
    RateLimited,
    RateLimiter,
    TollgateError,
    limit_rate,
)


def test_burst_then_refusal_with_retry_after(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(4)
    for _ in range(4):
        limiter.try_acquire()
    with pytest.raises(RateLimited) as info:
        limiter.try_acquire()
    assert info.value.retry_after == pytest.approx(0.25)
    assert info.value.ready_at == pytest.approx(fake_clock.now + 0.25)
    fake_clock.advance(0.25)
    limiter.try_acquire()


def test_errors_subclass_the_expected_builtins() -> None:
    assert issubclass(InsufficientCapacity, ValueError)
    assert issubclass(InvalidConfig, ValueError)
    assert issubclass(MaxWaitExceeded, RateLimited)
    assert issubclass(MaxWaitExceeded, TimeoutError)
    assert issubclass(tollgate.UnknownModel, KeyError)
    for cls in (InsufficientCapacity, RateLimited, InvalidConfig):
        assert issubclass(cls, TollgateError)


def test_oversized_request_fails_at_once() -> None:
    limiter = RateLimiter(2)
    with pytest.raises(InsufficientCapacity) as info:
        limiter.acquire(3)  # would hang forever if it waited
    assert (info.value.requested, info.value.capacity) == (3, 2)


@pytest.mark.parametrize("count, per", [(0, 1.0), (1, 0.0)])
def test_invalid_config_is_a_value_error(count: int, per: float) -> None:
    with pytest.raises(ValueError):
        RateLimiter(count, per)


def test_negative_or_nan_period_is_rejected() -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            RateLimiter(1, bad)


def test_blocking_acquire_sleeps_through_patched_time_sleep(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(2)  # burst 2, then one every 0.5 s
    start = fake_clock.now
    for _ in range(6):
        limiter.acquire()
    assert fake_clock.now - start == pytest.approx(2.0)
    assert all(0 < s <= 0.02 + 1e-9 for s in fake_clock.sleeps)  # in slices (wake-ups)


def test_async_acquire_sleeps_through_patched_asyncio_sleep(fake_clock: FakeClock) -> None:
    limiter = AsyncRateLimiter(10)

    async def main() -> float:
        start = fake_clock.now
        for _ in range(30):
            await limiter.acquire()
        return fake_clock.now - start

    assert run(main()) == pytest.approx(2.0, abs=1e-6)


def test_max_wait_refuses_up_front_taking_nothing(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(1)
    limiter.acquire()
    with pytest.raises(MaxWaitExceeded) as info:
        limiter.acquire(max_wait=0.5)
    assert info.value.retry_after == pytest.approx(1.0)
    assert fake_clock.sleeps == []
    fake_clock.advance(1.0)
    limiter.try_acquire()  # the refused call took nothing


def test_async_waiters_are_served_in_arrival_order(fake_clock: FakeClock) -> None:
    limiter = AsyncRateLimiter(5)
    order: list[int] = []

    async def one(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(25)))

    run(main())
    assert order == list(range(25))


def test_try_acquire_never_overtakes_a_waiter(fake_clock: FakeClock) -> None:
    limiter = AsyncRateLimiter(1)

    async def main() -> None:
        await limiter.acquire()
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)  # the waiter is in line now (fake sleep: no time passes)
        with pytest.raises(RateLimited):
            limiter.try_acquire()
        await waiter

    run(main())


def test_cancelled_async_waiters_cost_no_capacity() -> None:
    """Real clock: a line of waiters is cancelled; the next caller is not delayed by them."""
    limiter = AsyncRateLimiter(20)  # 50 ms per token

    async def main() -> float:
        for _ in range(20):
            limiter.try_acquire()
        waiters = [asyncio.ensure_future(limiter.acquire()) for _ in range(50)]
        await asyncio.sleep(0.01)
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert limiter.waiters() == 0
        start = time.monotonic()
        await limiter.acquire()
        return time.monotonic() - start

    assert run(main()) < 0.1  # at most one emission interval (+ scheduling slack)


def test_threads_share_one_line_and_release_the_gil() -> None:
    limiter = RateLimiter(50, burst=5)
    times: list[float] = []
    lock = threading.Lock()
    ticks = 0
    stop = threading.Event()

    def worker() -> None:
        for _ in range(10):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    def counter() -> None:  # runs only if the waiting threads let go of the GIL
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    spinner = threading.Thread(target=counter)
    spinner.start()
    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    stop.set()
    spinner.join()
    elapsed = time.monotonic() - start
    assert len(times) == 40
    # 5 at once, then 35 at 50/s: about 0.7 s.
    assert 0.6 <= elapsed < 2.0
    assert max_in_window(times, 0.2) <= 5 + 50 * 0.2 + 1
    assert ticks > 50


def test_threads_with_short_bounded_waits_keep_the_rate() -> None:
    """Real clock: 4 threads, each acquire bounded by a random max_wait below 20 ms. A waiter
    handed its turn must notice at once, not after sleeping out its budget: otherwise it is
    refused past its deadline while holding the line, everyone behind is refused up front, and
    the limiter admits a few per second instead of 100 (as it did when blocking waits slept in
    uninterruptible time.sleep slices)."""
    limiter = RateLimiter(100, burst=2)
    times: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        stop = time.monotonic() + 1.0
        while time.monotonic() < stop:
            try:
                limiter.acquire(max_wait=rng.uniform(0, 0.02))
            except MaxWaitExceeded:
                time.sleep(0.001)
                continue
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert max_in_window(times, 0.2) <= 2 + 100 * 0.2 + 1
    assert len(times) >= 50  # about 100 on an idle machine


def test_limit_rate_picks_sync_or_async() -> None:
    sync_limiter = RateLimiter(100)
    async_limiter = AsyncRateLimiter(100)

    @limit_rate(sync_limiter)
    def f(x: int) -> int:
        return x + 1

    @limit_rate(async_limiter, 2)
    async def g(x: int) -> int:
        return x * 2

    assert f(1) == 2
    assert run(g(4)) == 8
    assert async_limiter.available() == 98
    with pytest.raises(TypeError):
        limit_rate(sync_limiter)(g)
    with pytest.raises(TypeError):
        limit_rate(async_limiter)(f)


def test_acquire_within_is_the_bounded_acquire(fake_clock: FakeClock) -> None:
    blocking = RateLimiter(1)
    blocking.acquire_within(0.0)
    with pytest.raises(MaxWaitExceeded):
        blocking.acquire_within(0.5)
    blocking.acquire_within(1.0)
    asynchronous = AsyncRateLimiter(1)

    async def main() -> None:
        await asynchronous.acquire_within(0.0)
        with pytest.raises(MaxWaitExceeded):
            await asynchronous.acquire_within(0.5)

    run(main())
