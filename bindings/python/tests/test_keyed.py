"""The keyed limiters: keys and their equality, per-key buckets and refusals, blocking and
asyncio waits (FIFO per key, bounded), eviction and the key cap, cancellation storms and
threads."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import defaultdict
from unittest import mock

import pytest
from conftest import FakeClock, max_in_window, run

from tollgate import (
    AsyncKeyedRateLimiter,
    InsufficientCapacity,
    InvalidConfig,
    KeyedRateLimiter,
    MaxWaitExceeded,
    RateLimited,
    RateLimiter,
    limit_rate,
)


# Keys ------------------------------------------------------------------------------------


def test_each_key_has_its_own_bucket_and_refusals_say_when(fake_clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(1, burst=2)
    limiter.try_acquire("alice")
    limiter.try_acquire("alice")
    with pytest.raises(RateLimited) as info:
        limiter.try_acquire("alice")
    assert info.value.retry_after == pytest.approx(1.0)
    assert info.value.ready_at == pytest.approx(fake_clock.now + 1.0)
    limiter.try_acquire("bob")  # unaffected
    assert (limiter.available("alice"), limiter.available("bob"), limiter.available("eve")) == (
        0,
        1,
        2,
    )
    fake_clock.advance(1.0)
    limiter.try_acquire("alice")


def test_keys_keep_python_equality() -> None:
    limiter = KeyedRateLimiter(1, burst=1)
    limiter.try_acquire(1)
    with pytest.raises(RateLimited):
        limiter.try_acquire(True)  # True == 1 in Python: the same key
    limiter.try_acquire("a")
    limiter.try_acquire(b"a")  # "a" != b"a"
    limiter.try_acquire(("a", 1))
    with pytest.raises(RateLimited):
        limiter.try_acquire(("a", True))
    limiter.try_acquire(("a", (1, None)))
    limiter.try_acquire(None)
    big = 2**200
    limiter.try_acquire(big)
    with pytest.raises(RateLimited):
        limiter.try_acquire(2**200)
    limiter.try_acquire(-big)
    limiter.try_acquire(-(2**100))
    limiter.try_acquire(2**64)
    assert len(limiter) == 10


def test_str_with_lone_surrogates_and_int_subclasses_are_keys_too() -> None:
    limiter = KeyedRateLimiter(1, burst=1)
    limiter.try_acquire("a\ud800")  # valid in a Python str, not in UTF-8
    with pytest.raises(RateLimited):
        limiter.try_acquire("a\ud800")
    limiter.try_acquire("a\ud801")  # a different key

    class Loud(int):
        def __str__(self) -> str:
            return "loud"

    limiter.try_acquire(Loud(2**200))
    with pytest.raises(RateLimited):
        limiter.try_acquire(2**200)  # equal in Python: the same key, whatever __str__ says
    limiter.try_acquire(Loud(2**201))  # a different big int, though its str() is the same
    assert len(limiter) == 4


@pytest.mark.parametrize("bad", [1.5, ["a"], {"a": 1}, object(), ("a", [1]), bytearray(b"x")])
def test_other_key_types_are_type_errors(bad: object) -> None:
    limiter = AsyncKeyedRateLimiter(1)
    with pytest.raises(TypeError, match="key"):
        limiter.try_acquire(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        run(limiter.acquire(bad))  # type: ignore[arg-type]
    assert len(limiter) == 0


def test_deeply_nested_keys_are_refused_not_a_crash() -> None:
    key: object = "x"
    for _ in range(40):
        key = (key,)
    with pytest.raises(TypeError, match="nest"):
        KeyedRateLimiter(1).try_acquire(key)  # type: ignore[arg-type]


# Configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0},
        {"count": 1, "per": 0.0},
        {"count": 1, "burst": 0},
        {"count": 1, "max_keys": 0},
    ],
)
def test_invalid_config_is_invalid_config(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidConfig):
        KeyedRateLimiter(**kwargs)  # type: ignore[arg-type]


def test_properties_and_constructors() -> None:
    limiter = AsyncKeyedRateLimiter.per_minute(30, burst=3, max_keys=100)
    assert (limiter.rate, limiter.burst, limiter.max_keys, limiter.shards) == (0.5, 3, 100, 16)
    assert KeyedRateLimiter.per_second(7).burst == 7
    assert KeyedRateLimiter(1, shards=5).shards == 8
    assert "burst=3" in repr(limiter)


def test_oversized_request_fails_at_once() -> None:
    limiter = AsyncKeyedRateLimiter(2)
    with pytest.raises(InsufficientCapacity) as info:
        KeyedRateLimiter(2).acquire("k", 3)  # would hang forever if it waited
    assert (info.value.requested, info.value.capacity) == (3, 2)
    with pytest.raises(InsufficientCapacity):
        run(limiter.acquire("k", 3))
    limiter.try_acquire("k", 2)  # the full burst was still there
    with pytest.raises(InsufficientCapacity):
        run(limiter.acquire("k", 3, max_wait=10.0))


# Waiting ---------------------------------------------------------------------------------


def test_blocking_acquire_sleeps_through_patched_time_sleep(fake_clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(2)  # per key: burst 2, then one every 0.5 s
    start = fake_clock.now
    for _ in range(6):
        limiter.acquire("k")
    assert fake_clock.now - start == pytest.approx(2.0)
    limiter.acquire("other")  # a fresh key does not wait
    assert fake_clock.now - start == pytest.approx(2.0)


def test_async_waiters_are_served_in_order_per_key(fake_clock: FakeClock) -> None:
    limiter = AsyncKeyedRateLimiter(4, burst=1)  # 0.25 s per token per key
    order: dict[str, list[int]] = defaultdict(list)
    at: dict[str, list[float]] = defaultdict(list)

    async def one(key: str, i: int) -> None:
        await limiter.acquire(key)
        order[key].append(i)
        at[key].append(fake_clock.now)

    async def main() -> None:
        await asyncio.gather(*(one(k, i) for i in range(12) for k in ("a", "b")))

    start = fake_clock.now
    run(main())
    assert order["a"] == order["b"] == list(range(12))
    # The fake clock adds up every task's sleep, so the two keys' waits run one after the
    # other in fake time and each key's admissions lag their booked instants. What must hold
    # is the bucket's bound, burst + rate * d in every window, and the rate over the run.
    for key in ("a", "b"):
        for window in (0.5, 1.0, 2.0):
            assert max_in_window(at[key], window - 1e-6) <= 1 + 4 * window
        assert at[key][-1] - start >= 11 * 0.25 - 1e-6


def test_try_acquire_never_overtakes_a_waiter_of_its_key(fake_clock: FakeClock) -> None:
    limiter = AsyncKeyedRateLimiter(1)

    async def main() -> None:
        await limiter.acquire("k")
        waiter = asyncio.ensure_future(limiter.acquire("k"))
        await asyncio.sleep(0)  # the waiter is in line now
        assert limiter.waiters("k") == 1
        with pytest.raises(RateLimited):
            limiter.try_acquire("k")
        limiter.try_acquire("other")
        await waiter
        assert limiter.waiters("k") == 0

    run(main())


def test_max_wait_refuses_up_front_taking_nothing(fake_clock: FakeClock) -> None:
    blocking = KeyedRateLimiter(1)
    blocking.acquire("k")
    with pytest.raises(MaxWaitExceeded) as info:
        blocking.acquire("k", max_wait=0.5)
    assert info.value.retry_after == pytest.approx(1.0)
    assert isinstance(info.value, TimeoutError)
    assert fake_clock.sleeps == []
    blocking.acquire_within("k", 1.0)  # long enough: waits and goes
    asynchronous = AsyncKeyedRateLimiter(1)

    async def main() -> None:
        await asynchronous.acquire_within("k", 0.0)
        with pytest.raises(MaxWaitExceeded):
            await asynchronous.acquire_within("k", 0.5)
        await asynchronous.acquire("k", max_wait=1.0)

    run(main())


# Eviction and the key cap ----------------------------------------------------------------


def test_refilled_keys_are_forgotten_without_changing_a_decision(fake_clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(10, burst=10)
    for i in range(1_000):
        limiter.try_acquire(("user", i), 5)
    assert len(limiter) == 1_000
    grown = limiter.table_bytes()
    fake_clock.advance(0.3)  # not refilled yet: nothing may be forgotten
    limiter.retain_recent()
    assert len(limiter) == 1_000
    assert limiter.available(("user", 3)) == 8
    fake_clock.advance(0.2)  # every bucket full again
    limiter.retain_recent()
    assert len(limiter) == 0
    limiter.shrink_to_fit()
    assert limiter.table_bytes() < grown
    limiter.try_acquire(("user", 3), 10)  # a forgotten key has its whole burst, as before


def test_the_key_cap_refuses_newcomers_and_keeps_limited_clients(fake_clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(1, burst=1, shards=1, max_keys=2)
    limiter.try_acquire("a")
    limiter.try_acquire("b")
    with pytest.raises(RateLimited) as info:
        limiter.try_acquire("c")  # the table is full of keys that have not refilled
    assert 0.0 < info.value.retry_after <= 1.0 + 1e-9
    with pytest.raises(RateLimited):
        limiter.try_acquire("a")  # "a" was not forgotten to make room
    assert len(limiter) == 2
    with pytest.raises(MaxWaitExceeded):
        limiter.acquire("c", max_wait=0.1)
    limiter.acquire("c")  # waits for room (through time.sleep), then goes
    assert fake_clock.now - 1_000.0 == pytest.approx(1.0, abs=0.05)
    assert len(limiter) <= 2


def test_the_key_cap_wait_in_asyncio(fake_clock: FakeClock) -> None:
    limiter = AsyncKeyedRateLimiter(1, burst=1, shards=1, max_keys=1)

    async def main() -> list[str]:
        got: list[str] = []

        async def one(key: str) -> None:
            await limiter.acquire(key)
            got.append(key)

        await asyncio.gather(*(one(k) for k in ("a", "b", "c")))
        return got

    assert run(main()) == ["a", "b", "c"]
    # "b" waits until "a" refills (1 s), "c" until "b" does; the fake clock adds up the two
    # sleepers' waits, hence an upper bound only loosely above.
    assert 2.0 - 1e-6 <= fake_clock.now - 1_000.0 <= 4.0


# Cancellation ----------------------------------------------------------------------------


def test_cancelled_waiters_cost_their_key_nothing() -> None:
    """Real clock: a line of waiters on one key is cancelled; the next caller of that key is
    not delayed by them."""
    limiter = AsyncKeyedRateLimiter(20, burst=1)  # 50 ms per token per key

    async def main() -> float:
        limiter.try_acquire("k")
        waiters = [asyncio.ensure_future(limiter.acquire("k")) for _ in range(50)]
        await asyncio.sleep(0.01)
        assert limiter.waiters("k") == 50
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        assert limiter.waiters("k") == 0
        start = time.monotonic()
        await limiter.acquire("k")
        return time.monotonic() - start

    assert run(main()) < 0.1  # at most one emission interval (+ scheduling slack)


def test_cancellation_storm_over_several_keys_keeps_every_invariant() -> None:
    """Real clock, about a second: 200 tasks over 5 keys, every acquire in a random
    `wait_for` timeout; per key, never above burst + rate * d in any window, and most of the
    rate admitted despite constant cancellations; nothing left behind afterwards."""
    rate, burst, keys, duration = 100, 2, 5, 1.0
    limiter = AsyncKeyedRateLimiter(rate, burst=burst)
    admitted: dict[int, list[float]] = defaultdict(list)
    rng = random.Random(13)

    async def worker() -> None:
        stop = time.monotonic() + duration
        while time.monotonic() < stop:
            key = rng.randrange(keys)
            try:
                await asyncio.wait_for(limiter.acquire(("k", key)), timeout=rng.uniform(0, 0.03))
            except asyncio.TimeoutError:
                continue
            admitted[key].append(time.monotonic())

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(200))), timeout=30)

    run(main())
    for key in range(keys):
        times = admitted[key]
        for window in (0.05, 0.2, 1.0):
            assert max_in_window(times, window) <= burst + rate * window + 1, (key, window)
        # On an idle machine each key admits about its full rate; a limiter that kept the
        # reservations of cancelled waiters admits a few per cent.
        assert len(times) >= 0.5 * rate * duration, (key, len(times))
        assert limiter.waiters(("k", key)) == 0
    time.sleep(burst / rate + 0.02)
    limiter.retain_recent()
    assert len(limiter) == 0


def test_an_interrupted_blocking_wait_gives_its_place_back(fake_clock: FakeClock) -> None:
    limiter = KeyedRateLimiter(1)
    limiter.acquire("k")
    calls = 0

    def interrupt(_seconds: float) -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with mock.patch("time.sleep", side_effect=interrupt), pytest.raises(KeyboardInterrupt):
        limiter.acquire("k")
    assert calls == 1
    assert limiter.waiters("k") == 0
    fake_clock.advance(1.0)
    limiter.try_acquire("k")  # the interrupted wait took nothing


# Threads ---------------------------------------------------------------------------------


def test_threads_share_the_keys_and_release_the_gil() -> None:
    limiter = KeyedRateLimiter(50, burst=5)
    times: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    ticks = 0
    stop = threading.Event()

    def worker(key: str) -> None:
        for _ in range(10):
            limiter.acquire(key)
            with lock:
                times[key].append(time.monotonic())

    def counter() -> None:  # runs only if the waiting threads let go of the GIL
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            time.sleep(0.001)

    spinner = threading.Thread(target=counter)
    spinner.start()
    threads = [threading.Thread(target=worker, args=(k,)) for k in ("a", "b") for _ in range(3)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    stop.set()
    spinner.join()
    elapsed = time.monotonic() - start
    assert not any(t.is_alive() for t in threads)
    assert len(times["a"]) == len(times["b"]) == 30
    # Per key: 5 at once, then 25 at 50/s, about 0.5 s, both keys side by side.
    assert 0.4 <= elapsed < 2.0
    for key in ("a", "b"):
        assert max_in_window(times[key], 0.2) <= 5 + 50 * 0.2 + 1
    assert ticks > 30


def test_threads_with_bounded_waits_keep_the_bound_and_the_rate() -> None:
    """Real clock, about a second: 8 threads over 3 keys, every acquire bounded by a random
    max_wait (most refused up front); per key, never above burst + rate * d, and the refused
    waits took nothing (most of the rate is still admitted)."""
    rate, burst, keys, duration = 100, 2, 3, 1.0
    limiter = KeyedRateLimiter(rate, burst=burst)
    admitted: dict[int, list[float]] = defaultdict(list)
    refused = 0
    lock = threading.Lock()

    def worker(seed: int) -> None:
        nonlocal refused
        rng = random.Random(seed)
        stop = time.monotonic() + duration
        while time.monotonic() < stop:
            key = rng.randrange(keys)
            try:
                limiter.acquire(key, max_wait=rng.uniform(0, 0.02))
            except MaxWaitExceeded:
                with lock:
                    refused += 1
                continue
            with lock:
                admitted[key].append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads)
    assert refused > 0
    for key in range(keys):
        times = admitted[key]
        for window in (0.05, 0.2, 1.0):
            assert max_in_window(times, window) <= burst + rate * window + 1, (key, window)
        assert len(times) >= 0.5 * rate * duration, (key, len(times))
        assert limiter.waiters(key) == 0


def test_many_threads_on_many_keys_with_try_acquire() -> None:
    """Contention on the shards: every token of every key is granted exactly once."""
    limiter = KeyedRateLimiter(1, per=3_600.0, burst=20)  # no refill during the test
    granted = [0] * 8
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(500):
            key = rng.randrange(8)
            try:
                limiter.try_acquire(key)
            except RateLimited:
                continue
            with lock:
                granted[key] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert granted == [20] * 8


# Decorator -------------------------------------------------------------------------------


def test_limit_rate_with_a_key_function() -> None:
    blocking = KeyedRateLimiter(100)
    asynchronous = AsyncKeyedRateLimiter(100)

    @limit_rate(blocking, key=lambda user, text: user)
    def post(user: str, text: str) -> str:
        return f"{user}: {text}"

    @limit_rate(asynchronous, 2, key=lambda user: ("tenant", user))
    async def fetch(user: str) -> str:
        return user.upper()

    assert post("ann", "hi") == "ann: hi"
    assert run(fetch("ben")) == "BEN"
    assert blocking.available("ann") == 99
    assert asynchronous.available(("tenant", "ben")) == 98
    with pytest.raises(TypeError, match="key="):
        limit_rate(blocking)
    with pytest.raises(TypeError, match="key="):
        limit_rate(RateLimiter(1), key=lambda: 1)
    with pytest.raises(TypeError):
        limit_rate(blocking, key=lambda: 1)(fetch)
    with pytest.raises(TypeError):
        limit_rate(asynchronous, key=lambda: 1)(post)
