"""The `rate_limiter.rps_limiter` drop-in: the seed's attributes, arithmetic, messages and
patch points."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from conftest import FakeClock, run

import rate_limiter
from rate_limiter import rps_limiter
from rate_limiter.rps_limiter import AsyncRateLimiter, RateLimiter, async_limit_rate, limit_rate

MESSAGE = "requests_per_second must be a positive number."


def test_package_exports_the_seed_names() -> None:
    assert set(rate_limiter.__all__) == {
        "RateLimiter",
        "AsyncRateLimiter",
        "limit_rate",
        "async_limit_rate",
        "ModelRateLimiter",
        "RateLimitConfig",
        "RateLimitContext",
    }
    assert rate_limiter.RateLimiter is RateLimiter


@pytest.mark.parametrize("cls", [RateLimiter, AsyncRateLimiter])
def test_attributes_after_construction(cls) -> None:
    limiter = cls(requests_per_second=2.5)
    assert limiter.requests_per_second == 2.5
    assert limiter.bucket_capacity == 2.5
    assert limiter.allowance == 2.5
    slow = cls(0.25)
    assert (slow.bucket_capacity, slow.allowance) == (1.0, 1.0)


@pytest.mark.parametrize("cls", [RateLimiter, AsyncRateLimiter])
@pytest.mark.parametrize("bad", [0, -1, -0.5, "10", None, float("nan")])
def test_invalid_rates_raise_the_seed_message(cls, bad) -> None:
    with pytest.raises(ValueError, match=MESSAGE):
        cls(bad)


def test_blocking_arithmetic_matches_the_seed(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(4)
    fake_clock.now = 50.0
    limiter.last_check = 50.0
    for expected in (3.0, 2.0, 1.0, 0.0):
        limiter.acquire()
        assert limiter.allowance == expected
        assert limiter.last_check == 50.0
    assert fake_clock.sleeps == []  # no wait, no sleep call at all
    fake_clock.now = 50.125  # half a token has come back
    with mock.patch("time.sleep") as sleep:
        limiter.acquire()
    sleep.assert_called_once_with(0.125)
    assert limiter.allowance == 0.0
    assert limiter.last_check == 50.25


def test_setting_allowance_and_last_check_moves_the_bucket(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(1)
    fake_clock.now = 10.0
    limiter.last_check = 10.0
    limiter.allowance = 0.0
    with mock.patch("time.sleep") as sleep:
        limiter.acquire()  # empty bucket: a full interval
    sleep.assert_called_once_with(1.0)
    assert limiter.last_check == 11.0
    fake_clock.now = 100.0
    limiter.allowance = 1.0  # full again, as of last_check
    with mock.patch("time.sleep") as sleep:
        limiter.acquire()
    sleep.assert_not_called()


def test_refill_is_capped_at_capacity(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(3)
    fake_clock.now = 0.0
    limiter.last_check = 0.0
    limiter.allowance = 0.0
    fake_clock.now = 1_000.0
    for _ in range(3):
        limiter.acquire()
    assert fake_clock.sleeps == []
    assert limiter.allowance == 0.0


def test_async_limiter_uses_patched_asyncio_sleep(fake_clock: FakeClock) -> None:
    limiter = AsyncRateLimiter(2)
    fake_clock.now = 7.0
    limiter.last_check = 7.0

    async def main() -> None:
        for _ in range(2):
            await limiter.acquire()
        with mock.patch("asyncio.sleep", new_callable=mock.AsyncMock) as sleep:
            await limiter.acquire()
        sleep.assert_awaited_once_with(0.5)

    run(main())
    assert limiter.last_check == 7.5


def test_cancelled_async_waiter_gives_its_token_back(fake_clock: FakeClock) -> None:
    limiter = AsyncRateLimiter(1)
    fake_clock.now = 0.0
    limiter.last_check = 0.0

    async def main() -> None:
        await limiter.acquire()
        blocked = asyncio.Event()

        async def never(seconds: float) -> None:
            blocked.set()
            await asyncio.Event().wait()

        with mock.patch("asyncio.sleep", side_effect=never):
            task = asyncio.ensure_future(limiter.acquire())
            await blocked.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert limiter.allowance == 0.0
        assert limiter.last_check == 0.0  # restored: the cancelled grant never happened
        fake_clock.now = 1.0
        await limiter.acquire()  # due at 1.0 exactly, as if nobody had waited
        assert fake_clock.sleeps == []

    run(main())


def test_decorators_validate_like_the_seed() -> None:
    with pytest.raises(TypeError, match="Provided 'limiter' must be an instance of RateLimiter."):
        limit_rate(limiter=AsyncRateLimiter(1))
    with pytest.raises(
        TypeError, match="Provided 'limiter' must be an instance of AsyncRateLimiter."
    ):
        async_limit_rate(limiter=RateLimiter(1))
    with pytest.raises(ValueError, match=r"Either a 'limiter' \(RateLimiter instance\)"):
        limit_rate()
    with pytest.raises(ValueError, match=r"Either a 'limiter' \(AsyncRateLimiter instance\)"):
        async_limit_rate()
    with pytest.raises(ValueError, match=MESSAGE):
        limit_rate(requests_per_second=0)


def test_decorators_look_up_the_limiter_classes_at_decoration_time() -> None:
    with mock.patch.object(rps_limiter, "RateLimiter") as fake:
        limit_rate(requests_per_second=3)
    fake.assert_called_once_with(3)
    with mock.patch.object(rps_limiter, "AsyncRateLimiter") as fake_async:
        async_limit_rate(requests_per_second=4)
    fake_async.assert_called_once_with(4)


def test_decorated_functions_keep_their_metadata_and_results() -> None:
    shared = RateLimiter(100)

    @limit_rate(limiter=shared)
    def add(a: int, b: int = 1) -> int:
        """Adds."""
        return a + b

    @async_limit_rate(requests_per_second=100)
    async def double(x: int) -> int:
        return 2 * x

    assert add(1, b=2) == 3
    assert add.__name__ == "add" and add.__doc__ == "Adds."
    assert run(double(21)) == 42
    assert shared.allowance < 100


def test_blocking_limiter_is_thread_safe_and_keeps_the_rate() -> None:
    import threading
    import time

    from conftest import max_in_window

    limiter = RateLimiter(200)  # capacity 200, then one every 5 ms
    times: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(75):
            limiter.acquire()
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    elapsed = time.monotonic() - start
    assert len(times) == 300
    assert 0.45 <= elapsed < 2.0  # 100 beyond the burst at 200/s
    assert max_in_window(times, 0.25) <= 200 + 200 * 0.25 + 1
