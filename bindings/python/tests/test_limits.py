"""Limits as data: `tollgate.Limit` values, `RateLimitConfig(limits=[...])` enforced by the
core together with rpm and tpm, and `ModelStats.limits` as typed `LimitUsage` objects."""

from __future__ import annotations

import asyncio
import copy
import pickle

import pytest
from conftest import FakeClock, max_in_window, run

from tollgate import (
    InsufficientCapacity,
    InvalidConfig,
    Limit,
    LimitUsage,
    MaxWaitExceeded,
    ModelRateLimiter,
    RateLimitConfig,
    RateLimited,
    Usage,
)

DAY = 86_400.0


def test_constructors_and_fields() -> None:
    rpd = Limit.requests("rpd", 10_000, DAY, slots=24)
    assert (rpd.name, rpd.counts, rpd.max, rpd.kind) == ("rpd", "requests", 10_000, "window")
    assert (rpd.window_length, rpd.slots, rpd.rate) == (DAY, 24, None)
    tokens = Limit.tokens("tp10s", 2_000, 10)
    assert (tokens.counts, tokens.slots) == ("tokens", Limit.requests("x", 1, 1).slots)
    assert tokens.slots == 60  # the default, as rpm and tpm
    assert Limit.window("w", "tokens", 5, 2.5) == Limit.tokens("w", 5, 2.5)
    bucket = Limit.bucket("rps", "requests", 5, 2)
    assert (bucket.kind, bucket.max, bucket.rate) == ("bucket", 5, (2, 1.0))
    assert (bucket.window_length, bucket.slots) == (None, None)
    assert Limit.bucket("r", "tokens", 9, 3, per=60).rate == (3, 60.0)


def test_limits_are_hashable_values() -> None:
    a = Limit.requests("rpd", 10, DAY)
    assert a == Limit.requests("rpd", 10, DAY)
    assert a != Limit.requests("rpd", 11, DAY)
    assert a.with_slots(24) != a and a.with_slots(24).slots == 24
    assert len({a, Limit.requests("rpd", 10, DAY), a.with_slots(2)}) == 2
    bucket = Limit.bucket("b", "requests", 1, 1)
    assert bucket.with_slots(7) == bucket  # a bucket has no slots: unchanged
    assert eval(repr(a), {"Limit": Limit}) == a
    assert eval(repr(bucket), {"Limit": Limit}) == bucket


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: Limit.requests("x", 0, 60), "max"),
        (lambda: Limit.tokens("x", 1, 0), "window"),
        (lambda: Limit.requests("x", 1, 60, slots=0), "slots"),
        (lambda: Limit.requests("x", 1, 60, slots=4097), "slots"),
        (lambda: Limit.requests("x", 1, 60).with_slots(0), "slots"),
        (lambda: Limit.bucket("x", "requests", 0, 1), "max"),
        (lambda: Limit.bucket("x", "requests", 1, 0), "rate.count"),
    ],
)
def test_a_limit_that_cannot_work_fails_where_it_is_written(make, field: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        make()
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_bad_windows_and_periods_are_value_errors(bad: float) -> None:
    with pytest.raises(ValueError):
        Limit.requests("x", 1, bad)
    with pytest.raises(ValueError):
        Limit.bucket("x", "tokens", 1, 1, per=bad)


def test_counts_must_be_requests_or_tokens() -> None:
    with pytest.raises(ValueError, match="requests"):
        Limit.window("x", "bytes", 1, 1)  # type: ignore[arg-type]


def test_config_carries_limits_and_round_trips() -> None:
    extra = [Limit.requests("rpd", 3, DAY, slots=24), Limit.bucket("rps", "requests", 2, 1)]
    config = RateLimitConfig(rpm=100, tpm=10_000, max_parallel_requests=4, limits=extra)
    limiter = ModelRateLimiter({"m": config, "d": {"rpm": 7, "limits": extra[:1]}})
    assert limiter.config("m") == config
    assert limiter.config("d").limits == extra[:1]
    assert limiter.config("other").limits == []  # the default has none
    assert RateLimitConfig().limits == []
    assert RateLimitConfig().limits is not RateLimitConfig().limits  # no shared default


def test_a_config_error_names_the_model_and_the_limit() -> None:
    with pytest.raises(InvalidConfig) as info:
        ModelRateLimiter({"m": RateLimitConfig(tpm=0)})
    assert (info.value.field, info.value.limit, info.value.model) == ("tpm", None, "m")
    with pytest.raises(InvalidConfig) as info:
        ModelRateLimiter(default=RateLimitConfig(rpm=0))
    assert (info.value.field, info.value.model) == ("rpm", None)


def test_limits_must_be_limit_values() -> None:
    with pytest.raises(TypeError, match="Limit"):
        ModelRateLimiter({"m": RateLimitConfig(limits=[("rpd", 3)])})  # type: ignore[list-item]


def test_a_further_request_limit_refuses_with_its_retry_after(fake_clock: FakeClock) -> None:
    # 3 requests in any 10 s (in 10 one-second slots), well inside rpm.
    config = RateLimitConfig(rpm=1_000, limits=[Limit.requests("r10", 3, 10, slots=10)])
    limiter = ModelRateLimiter({"m": config})
    for _ in range(3):
        limiter.try_acquire("m", 1).settle(1)
    with pytest.raises(RateLimited) as info:
        limiter.try_acquire("m", 1)
    # The conservative window: room within one slot (1 s) after an exact 10 s log.
    assert 10.0 <= info.value.retry_after <= 11.0 + 1e-9
    assert info.value.ready_at == pytest.approx(fake_clock.now + info.value.retry_after)
    fake_clock.advance(info.value.retry_after)
    limiter.try_acquire("m", 1).settle(1)


def test_a_token_bucket_limit_shapes_the_admissions(fake_clock: FakeClock) -> None:
    # Bursts of 2 requests, then one every 0.5 s.
    config = RateLimitConfig(rpm=1_000, limits=[Limit.bucket("rps", "requests", 2, 2)])
    limiter = ModelRateLimiter({"m": config})

    async def main() -> list[float]:
        times = []
        for _ in range(8):
            async with limiter.acquire("m", 1) as permit:
                times.append(fake_clock.now)
                permit.settle(1)
        return times

    times = run(main())
    start = times[0]
    assert [round(t - start, 6) for t in times] == [0, 0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


def test_a_token_limit_is_an_insufficient_capacity_when_exceeded_alone() -> None:
    config = RateLimitConfig(tpm=100_000, limits=[Limit.tokens("t10", 1_000, 10)])
    limiter = ModelRateLimiter({"m": config})
    with pytest.raises(InsufficientCapacity) as info:
        limiter.try_acquire("m", 1_001)
    assert info.value.capacity == 1_000
    with pytest.raises(InsufficientCapacity):
        limiter.acquire_blocking("m", 5_000)  # would hang forever if it waited


def test_all_limits_are_charged_together_or_not_at_all(fake_clock: FakeClock) -> None:
    config = RateLimitConfig(
        rpm=1_000,
        tpm=1_000,
        limits=[Limit.requests("r10", 2, 10, slots=10), Limit.tokens("t10", 300, 10, slots=10)],
    )
    limiter = ModelRateLimiter({"m": config})
    limiter.try_acquire("m", 200).settle(200)
    with pytest.raises(RateLimited):  # t10 would exceed 300: nothing is charged anywhere
        limiter.try_acquire("m", 200)
    usage = {u.name: u.usage for u in limiter.stats()["m"].limits}
    assert usage == {
        "rpm": Usage(1, 1_000),
        "tpm": Usage(200, 1_000),
        "r10": Usage(1, 2),
        "t10": Usage(200, 300),
    }


def test_stats_list_every_limit_as_typed_objects() -> None:
    config = RateLimitConfig(
        rpm=500,
        tpm=40_000,
        limits=[Limit.requests("rpd", 1_000, DAY), Limit.bucket("burst", "tokens", 900, 100)],
    )
    limiter = ModelRateLimiter({"m": config})

    async def main() -> None:
        async with limiter.acquire("m", 800) as permit:
            permit.settle(600)

    run(main())
    stats = limiter.stats()["m"]
    assert [type(u) for u in stats.limits] == [LimitUsage] * 4
    assert [(u.name, u.counts) for u in stats.limits] == [
        ("rpm", "requests"),
        ("tpm", "tokens"),
        ("rpd", "requests"),
        ("burst", "tokens"),
    ]
    assert stats.limit("rpd") == stats.limits[2]
    assert stats.limit("rpd").usage == Usage(1, 1_000)  # type: ignore[union-attr]
    assert stats.limit("tpm").usage == stats.tokens  # type: ignore[union-attr]
    assert stats.limit("rpm").usage == stats.requests  # type: ignore[union-attr]
    bucket = stats.limit("burst")
    assert bucket is not None and bucket.usage.limit == 900 and 0 < bucket.usage.used <= 600
    assert stats.limit("nope") is None
    assert stats.as_dict() == {"requests": "1/500", "tokens": "600/40000", "active": "0/5"}
    assert "rpd" in repr(stats.limits[2])


def test_a_day_limit_holds_under_waiting_tasks(fake_clock: FakeClock) -> None:
    """Tasks wait through a per-minute and a per-hour limit on the fake clock; every window
    of every limit holds, from the admission log."""
    config = RateLimitConfig(
        rpm=5, tpm=1_000_000, max_parallel_requests=3, limits=[Limit.requests("rph", 12, 3_600)]
    )
    limiter = ModelRateLimiter({"m": config})
    admitted: list[float] = []

    async def one() -> None:
        async with limiter.acquire("m", 10) as permit:
            admitted.append(fake_clock.now)
            await asyncio.sleep(0.1)
            permit.settle(10)

    async def main() -> None:
        await asyncio.gather(*(one() for _ in range(30)))

    run(main())
    assert len(admitted) == 30
    # The fake clock sums float sleeps, so an admission exactly one window after another can
    # read a few ulps early; the limiter reads the clock rounded to the nanosecond.
    assert max_in_window(admitted, 60.0 - 1e-6) <= 5
    assert max_in_window(admitted, 3_600.0 - 1e-6) <= 12
    # 30 requests at 12 per hour need two more hours (plus a few minutes: rpm, and a slot
    # of the conservative windows per wait).
    assert 2 * 3_600 <= admitted[-1] - admitted[0] <= 2 * 3_600 + 600


def test_max_wait_counts_every_limit(fake_clock: FakeClock) -> None:
    config = RateLimitConfig(rpm=1_000, limits=[Limit.requests("r10", 1, 10, slots=10)])
    limiter = ModelRateLimiter({"m": config})
    limiter.try_acquire("m", 1).settle(1)

    async def main() -> None:
        with pytest.raises(MaxWaitExceeded) as info:
            await limiter.acquire("m", 1, max_wait=5.0)
        assert info.value.retry_after >= 10.0

    run(main())
    assert limiter.stats()["m"].limit("r10").usage.used == 1  # type: ignore[union-attr]


def test_limits_pickle_and_copy_exactly() -> None:
    limits = [
        Limit.requests("rpd", 10_000, DAY, slots=24),
        Limit.tokens("odd", 7, 0.1),  # 0.1 s is not a binary fraction: kept to the nanosecond
        Limit.bucket("rps", "tokens", 5, 3, per=0.3),
    ]
    for limit in limits:
        assert pickle.loads(pickle.dumps(limit)) == limit
        assert copy.deepcopy(limit) == limit
    config = RateLimitConfig(limits=limits)
    assert copy.deepcopy(config) == config
    with pytest.raises(ValueError):
        Limit._window_exact("x", "requests", 1, 2**64 - 1, 2_000_000_000, 1)  # type: ignore[attr-defined]
