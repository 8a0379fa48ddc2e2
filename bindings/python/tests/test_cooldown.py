"""A 429's cooldown from Python: it holds a queue of asyncio tasks (and of threads) and lets
them in after it, in arrival order; tasks cancelled during it leave nothing behind; an
exhausted quota fails the waiters instead of keeping them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from conftest import FakeClock, run

from tollgate import ModelRateLimiter, Permit, QuotaExhausted, RateLimitConfig


def one_slot() -> ModelRateLimiter:
    return ModelRateLimiter({"m": RateLimitConfig(rpm=1_000, tpm=100_000, max_parallel_requests=1)})


async def settle_soon(permit: Permit, tokens: int = 10) -> None:
    await asyncio.sleep(0)
    permit.settle(tokens)


def test_a_429_pauses_the_asyncio_queue_and_lets_it_in_fifo(fake_clock: FakeClock) -> None:
    lim = one_slot()
    admitted: list[tuple[int, float]] = []

    async def task(i: int) -> None:
        async with lim.acquire("m", 100) as permit:
            admitted.append((i, permit.admitted_at))
            await settle_soon(permit)

    async def main() -> float:
        first = await lim.acquire("m", 100)
        tasks = []
        for i in range(8):  # each queues behind the one before it
            tasks.append(asyncio.ensure_future(task(i)))
            await asyncio.sleep(0)
        # The provider says 429, retry after 3 s: the slot goes back *into* the cooldown.
        report = first.throttled({"retry-after": "3"}, b"rate limited")
        assert report.cooldown is not None
        await asyncio.gather(*tasks)
        return report.cooldown.until

    until = run(main())
    assert [i for i, _ in admitted] == list(range(8))
    assert all(at >= until for _, at in admitted), (admitted, until)
    # One cooldown, waited through asyncio.sleep (patched here), not one per waiter.
    assert fake_clock.now - until < 1.0
    stats = lim.stats()["m"]
    assert (stats.active.used, stats.requests.used, stats.tokens.used) == (0, 9, 80)


def test_cancelled_during_a_cooldown_leaks_nothing() -> None:
    # The real clock: a patched asyncio.sleep would end each waiter's sleep (and the
    # cooldown) at once.
    lim = ModelRateLimiter({"m": RateLimitConfig(rpm=1_000, tpm=100_000, max_parallel_requests=2)})
    order: list[int] = []

    async def task(i: int) -> None:
        permit = await lim.acquire("m", 1_000)
        order.append(i)
        permit.settle(1)

    async def main() -> float:
        cooldown = lim.cool_down("m", 0.4)
        tasks = []
        for i in range(10):
            tasks.append(asyncio.ensure_future(task(i)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        # The head of the queue holds the gate and a slot while it waits out the cooldown.
        assert order == [] and lim.stats()["m"].active.used == 1
        # During the cooldown, cancel every other waiter, the head of the queue among them.
        for t in tasks[::2]:
            t.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        return cooldown.until

    until = run(main(), timeout=10)
    assert order == [1, 3, 5, 7, 9]
    assert time.monotonic() >= until
    stats = lim.stats()["m"]
    # Nothing charged for the cancelled, no slot held: the full parallel cap is there.
    assert (stats.requests.used, stats.tokens.used, stats.active.used) == (5, 5, 0)
    held = [lim.try_acquire("m", 10), lim.try_acquire("m", 10)]
    assert lim.stats()["m"].active.used == 2
    for p in held:
        p.release()


def test_cancel_everything_during_a_cooldown_then_it_ends_empty() -> None:
    # The real clock and asyncio.sleep: the wake-up path, not a patched sleep.
    lim = one_slot()

    async def main() -> None:
        lim.cool_down("m", 0.3)
        tasks = [asyncio.ensure_future(lim.acquire("m", 100)) for _ in range(20)]
        await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        start = time.monotonic()
        async with lim.acquire("m", 100) as permit:  # waits out the rest of the cooldown
            assert time.monotonic() - start < 0.5
            permit.settle(1)

    run(main(), timeout=10)
    stats = lim.stats()["m"]
    assert (stats.requests.used, stats.tokens.used, stats.active.used) == (1, 1, 0)


def test_real_clock_cooldown_holds_tasks_until_it_ends() -> None:
    lim = one_slot()
    admitted: list[tuple[int, float]] = []

    async def task(i: int) -> None:
        async with lim.acquire("m", 10) as permit:
            admitted.append((i, time.monotonic()))
            permit.settle(1)

    async def main() -> float:
        permit = await lim.acquire("m", 10)
        tasks = []
        for i in range(5):
            tasks.append(asyncio.ensure_future(task(i)))
            await asyncio.sleep(0)
        until = permit.rate_limited(0.25).until
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return until

    until = run(main(), timeout=10)
    assert [i for i, _ in admitted] == list(range(5))
    assert all(at >= until for _, at in admitted)


def test_threads_wait_out_a_cooldown_in_order() -> None:
    lim = one_slot()
    admitted: list[tuple[int, float]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with lim.acquire_blocking("m", 10, max_wait=5) as permit:
            with lock:
                admitted.append((i, permit.admitted_at))
            permit.settle(1)

    first = lim.try_acquire("m", 10)
    threads = []
    for i in range(4):
        t = threading.Thread(target=worker, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.05)  # let it reach its place in the queue (arrival order is the test's)
    until = first.rate_limited(0.2).until
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    assert [i for i, _ in admitted] == list(range(4))
    assert all(at >= until for _, at in admitted)


def test_an_exhausted_quota_fails_the_waiting_tasks(fake_clock: FakeClock) -> None:
    lim = one_slot()

    async def main() -> list[object]:
        first = await lim.acquire("m", 10)
        tasks = [asyncio.ensure_future(lim.acquire("m", 10)) for _ in range(3)]
        for _ in range(3):
            await asyncio.sleep(0)
        body = {"error": {"code": "insufficient_quota", "message": "quota"}}
        report = first.throttled({}, body)
        assert isinstance(report.error, QuotaExhausted)
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = run(main())
    assert all(isinstance(r, QuotaExhausted) for r in results), results
    assert lim.stats()["m"].active.used == 0


@pytest.mark.parametrize("io", [False, True], ids=["plain", "input-output"])
def test_max_wait_shorter_than_the_cooldown_fails_at_once(fake_clock: FakeClock, io: bool) -> None:
    lim = one_slot()
    lim.cool_down("m", 30)
    start = fake_clock.now
    estimate = {"input_tokens": 10, "output_tokens": 10} if io else {"estimated_tokens": 10}

    async def main() -> None:
        from tollgate import MaxWaitExceeded

        with pytest.raises(MaxWaitExceeded) as info:
            await lim.acquire("m", max_wait=5, **estimate)
        assert info.value.ready_at == pytest.approx(start + 30)
        assert fake_clock.now == start  # at once: the cooldown alone needs longer
        # Within the budget: admitted when the cooldown ends.
        permit = await lim.acquire("m", max_wait=40, **estimate)
        assert permit.admitted_at >= start + 30
        permit.settle(1)

    run(main())
    assert fake_clock.now - start < 31
    assert lim.stats()["m"].active.used == 0


def test_storm_of_timeouts_and_429s_keeps_every_invariant() -> None:
    # Real clock, bounded: 80 tasks under random asyncio.wait_for timeouts, a fifth of the
    # admitted ones answered with a 429 (retry after 40 ms), the rest settled.
    import random

    rng = random.Random(11)
    lim = ModelRateLimiter({"m": RateLimitConfig(rpm=100_000, tpm=10**9, max_parallel_requests=3)})
    admitted: list[tuple[int, float]] = []
    cooldowns: list[tuple[float, float]] = []
    settled = 0

    async def task(i: int, timeout: float, throttle: bool, hold: float) -> None:
        nonlocal settled
        try:
            permit = await asyncio.wait_for(lim.acquire("m", 10), timeout)
        except asyncio.TimeoutError:
            return
        admitted.append((i, permit.admitted_at))
        await asyncio.sleep(hold)
        if throttle:
            report = permit.throttled({"retry-after-ms": "40"}, None)
            assert report.cooldown is not None
            cooldowns.append((report.cooldown.start, report.cooldown.until))
        else:
            permit.settle(7)
            settled += 1

    async def main() -> None:
        tasks = []
        for i in range(80):
            args = (i, rng.uniform(0.01, 0.8), rng.random() < 0.2, rng.uniform(0, 0.01))
            tasks.append(asyncio.ensure_future(task(*args)))
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)

    run(main(), timeout=15)
    assert len(admitted) >= 20 and len(cooldowns) >= 3, (len(admitted), len(cooldowns))
    order = [i for i, _ in admitted]
    assert order == sorted(order), "admitted out of arrival order"
    for start, until in cooldowns:
        inside = [at for _, at in admitted if start < at < until]
        assert not inside, (start, until, inside)
    stats = lim.stats()["m"]
    assert stats.active.used == 0
    assert stats.requests.used == len(admitted)
    assert stats.tokens.used == 7 * settled  # a throttled request gives its tokens back
