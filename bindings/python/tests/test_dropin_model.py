"""The `rate_limiter.model_rate_limiter` drop-in: the seed's surface, and each of the
seed's bugs as a regression test."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from unittest import mock

import pytest
from conftest import FakeClock, run

import tollgate
from rate_limiter import ModelRateLimiter, RateLimitConfig, RateLimitContext
from rate_limiter import model_rate_limiter as mrl


def test_constants_and_config_dataclass() -> None:
    assert mrl.DEFAULT_ESTIMATED_TOKENS == 5000
    assert mrl.TOKEN_HISTORY_MAX_SIZE == 100
    assert mrl.TIME_WINDOW_SECONDS == 60
    assert mrl.RATE_LIMIT_BUFFER_SECONDS == 0.1
    assert dataclasses.is_dataclass(RateLimitConfig)
    assert RateLimitConfig() == RateLimitConfig(10, 200000, 5)
    assert mrl.logger.name == "rate_limiter.model_rate_limiter"


def test_constructor_parses_partial_dicts_and_trackers_start_empty() -> None:
    lim = ModelRateLimiter(
        model_configs={"gpt-4": {"rpm": 500}}, default_config={"tpm": 1234}
    )
    assert lim.model_configs == {"gpt-4": RateLimitConfig(rpm=500)}
    assert lim.default_config == RateLimitConfig(tpm=1234)
    assert lim.trackers == {}
    assert ModelRateLimiter().default_config == RateLimitConfig()
    tracker = lim._get_tracker("x")
    assert lim._get_tracker("x") is tracker
    assert tracker.config == RateLimitConfig(tpm=1234)
    assert set(lim.get_stats()) == {"gpt-4", "x"}


def test_stats_strings() -> None:
    lim = ModelRateLimiter(model_configs={"gpt-4": {"rpm": 500, "tpm": 40000, "max_parallel_requests": 10}})

    async def main() -> None:
        await lim.acquire("gpt-4", 8000)
        assert lim.get_stats()["gpt-4"] == {
            "requests": "1/500",
            "tokens": "8000/40000",
            "active": "1/10",
        }
        await lim.release("gpt-4", 7500)

    run(main())
    assert lim.get_stats() == {
        "gpt-4": {"requests": "1/500", "tokens": "7500/40000", "active": "0/10"}
    }


def test_release_is_a_coroutine_and_a_no_op_without_acquire() -> None:
    lim = ModelRateLimiter()
    coro = lim.release("m", 10)
    assert asyncio.iscoroutine(coro)
    run(coro)
    tracker = lim._get_tracker("m")
    assert tracker.active_requests == 0
    assert tracker.semaphore._value == 5  # not over-released
    assert tracker.get_current_tokens() == 0


def test_context_manager_attributes_and_exceptions() -> None:
    lim = ModelRateLimiter(default_config={"tpm": 10000})
    ctx = RateLimitContext(lim, "m", estimated_tokens=300, actual_tokens=200)
    assert (ctx.rate_limiter, ctx.model_name, ctx.estimated_tokens, ctx.actual_tokens) == (
        lim,
        "m",
        300,
        200,
    )
    defaults = RateLimitContext(lim, "m")
    assert (defaults.estimated_tokens, defaults.actual_tokens) == (5000, 5000)

    async def main() -> None:
        async with ctx as entered:
            assert entered is ctx
            assert lim._get_tracker("m").active_requests == 1
        with pytest.raises(KeyError):
            async with RateLimitContext(lim, "m", 100, 50):
                raise KeyError("boom")

    run(main())
    tracker = lim._get_tracker("m")
    assert tracker.active_requests == 0
    assert tracker.semaphore._value == 5
    assert tracker.get_current_tokens() == 250


def test_tracker_surface() -> None:
    tracker = mrl.ModelRateLimitTracker(RateLimitConfig(rpm=2, tpm=100, max_parallel_requests=1))
    assert tracker.calculate_rpm_wait_time() == 0.0
    tracker.record_request()
    tracker.record_request()
    assert tracker.get_current_requests() == 2
    assert 59.0 < tracker.calculate_rpm_wait_time() <= 61.0
    tracker.record_tokens(60)
    assert tracker.calculate_tpm_wait_time(40) == 0.0
    assert tracker.calculate_tpm_wait_time(41) > 59.0
    assert tracker.get_stats() == {"requests": "2/2", "tokens": "60/100", "active": "0/1"}
    assert len(tracker.token_usage.queue) == 1
    tracker.request_times.queue.clear()
    tracker.token_usage.queue.clear()
    assert (tracker.get_current_requests(), tracker.get_current_tokens()) == (0, 0)
    assert isinstance(tracker.semaphore, asyncio.Semaphore)
    assert isinstance(tracker.lock, asyncio.Lock)
    tracker.active_requests = 3  # writable, as in the seed
    assert tracker.get_stats()["active"] == "3/1"


def test_wait_for_limits_sleeps_until_room(fake_clock: FakeClock) -> None:
    tracker = mrl.ModelRateLimitTracker(RateLimitConfig(rpm=1, tpm=100, max_parallel_requests=1))
    tracker.record_request()
    start = fake_clock.now
    run(tracker.wait_for_limits("m", 10))
    assert 60.0 <= fake_clock.now - start <= 61.0
    assert tracker.get_current_requests() == 0  # waiting counts nothing


def test_time_window_queue_is_deprecated_but_works() -> None:
    with pytest.deprecated_call():
        queue = mrl.TimeWindowQueue(window_seconds=60)
    assert queue.get_oldest_time() is None
    for v in (1, 2, None, 3):
        queue.add(v)
    assert (queue.count(), queue.sum_values()) == (4, 6)
    queue.limit_size(2)
    assert [v for _, v in queue.queue] == [None, 3]
    assert queue.get_oldest_time() == queue.queue[0][0]


# --- the seed's bugs, fixed ---------------------------------------------------------------


def test_seed_bug_oversized_estimate_fails_at_once() -> None:
    lim = ModelRateLimiter(default_config={"tpm": 1000})

    async def main() -> None:
        with pytest.raises(tollgate.InsufficientCapacity):
            await asyncio.wait_for(lim.acquire("m", 1001), timeout=1.0)
        with pytest.raises(ValueError):
            async with RateLimitContext(lim, "m", estimated_tokens=5000):
                pass

    run(main())
    tracker = lim._get_tracker("m")
    assert (tracker.active_requests, tracker.semaphore._value) == (0, 5)


def test_seed_bug_concurrent_calls_cannot_overrun_tpm_together(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter(default_config={"rpm": 100, "tpm": 10000, "max_parallel_requests": 5})
    admitted: list[float] = []

    async def call() -> None:
        async with RateLimitContext(lim, "m", estimated_tokens=4000, actual_tokens=4000):
            admitted.append(fake_clock.now)

    async def main() -> None:
        start = fake_clock.now
        await asyncio.gather(*(call() for _ in range(3)))
        # Two fit at once (8000); the third waits for the window, never 12000 in a minute.
        assert admitted[:2] == [start, start]
        assert admitted[2] - start >= 60.0

    run(main())


def test_seed_bug_token_history_is_not_capped() -> None:
    tracker = mrl.ModelRateLimitTracker(RateLimitConfig(tpm=10_000))
    for _ in range(mrl.TOKEN_HISTORY_MAX_SIZE + 50):
        tracker.record_tokens(10)
    assert tracker.get_current_tokens() == 1500  # the seed forgot the first 50 entries
    assert tracker.calculate_tpm_wait_time(9000) > 0


def test_seed_bug_cancelled_waiter_releases_its_slot() -> None:
    lim = ModelRateLimiter(default_config={"max_parallel_requests": 1, "tpm": 10_000})

    async def main() -> None:
        await lim.acquire("m", 10)
        waiter = asyncio.ensure_future(lim.acquire("m", 10))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await lim.release("m", 10)
        # The slot is free: the next acquire does not hang.
        await asyncio.wait_for(lim.acquire("m", 10), timeout=1.0)
        await lim.release("m", 10)

    run(main())
    tracker = lim._get_tracker("m")
    assert (tracker.active_requests, tracker.semaphore._value) == (0, 1)


def test_seed_bug_waiter_cancelled_during_its_window_wait(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter(default_config={"rpm": 1, "tpm": 10_000, "max_parallel_requests": 2})

    async def main() -> None:
        await lim.acquire("m", 10)
        await lim.release("m", 10)

        async def stuck(seconds: float) -> None:
            await asyncio.Event().wait()

        real_sleep = asyncio.sleep
        with mock.patch("asyncio.sleep", side_effect=stuck):
            waiter = asyncio.ensure_future(lim.acquire("m", 10))
            for _ in range(5):
                await real_sleep(0)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter

    run(main())
    tracker = lim._get_tracker("m")
    assert (tracker.active_requests, tracker.semaphore._value) == (0, 2)
    assert tracker.get_current_requests() == 1  # the cancelled one counted nothing


def test_seed_bug_fifo_per_model(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter(default_config={"rpm": 2, "tpm": 100_000, "max_parallel_requests": 10})
    order: list[int] = []

    async def call(i: int, tokens: int) -> None:
        async with RateLimitContext(lim, "m", tokens, tokens):
            order.append(i)

    async def main() -> None:
        await asyncio.gather(*(call(i, 10 * (i + 1)) for i in range(6)))

    run(main())
    assert order == list(range(6))


def test_slot_wait_is_logged_like_the_seed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    lim = ModelRateLimiter(default_config={"max_parallel_requests": 1, "tpm": 10_000})

    async def main() -> None:
        await lim.acquire("m", 1)
        waiter = asyncio.ensure_future(lim.acquire("m", 1))
        await asyncio.sleep(0.01)
        await lim.release("m", 1)
        await waiter
        await lim.release("m", 1)

    run(main())
    assert any("Max parallel requests reached: 1/1" in r.message for r in caplog.records)
