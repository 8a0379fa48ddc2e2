"""Provider feedback from Python: input and output tokens apart, shared quotas, hot
reconfiguration, rate-limit headers (every accepted form of headers), 429s and their typed
reports, ``QuotaExhausted``, and the statistics that show learned limits and pauses."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from unittest import mock

import pytest
from conftest import FakeClock, run

from tollgate import (
    FeedbackReport,
    HeaderReport,
    InsufficientCapacity,
    InvalidConfig,
    Limit,
    MaxWaitExceeded,
    ModelRateLimiter,
    QuotaExhausted,
    RateLimitConfig,
    RateLimited,
    TollgateError,
    UnknownModel,
    classify_429,
    parse_headers,
)

MINUTE = 60.0

OPENAI = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "499",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "20000",
    "x-ratelimit-reset-tokens": "20s",
}


def io_limiter() -> ModelRateLimiter:
    limits = [
        Limit.window("itpm", "input_tokens", 10_000, MINUTE),
        Limit.window("otpm", "output_tokens", 2_000, MINUTE),
    ]
    return ModelRateLimiter({"claude": RateLimitConfig(rpm=50, tpm=100_000, limits=limits)})


def used(lim: ModelRateLimiter, model: str) -> dict[str, int]:
    return {u.name: u.usage.used for u in lim.stats()[model].limits}


# --- input and output tokens ---------------------------------------------------------------


def test_counts_names_and_per_day() -> None:
    assert Limit.window("itpm", "input_tokens", 5, 60).counts == "input_tokens"
    assert Limit.tokens("t", 5, 60).counts == "tokens"
    day = Limit.per_day("rpd", "requests", 14_400)
    assert (day.window_length, day.slots, day.max) == (86_400.0, 96, 14_400)
    with pytest.raises(ValueError, match="input_tokens"):
        Limit.window("x", "prompt_tokens", 5, 60)  # type: ignore[arg-type]


def test_input_reserved_at_admission_output_counted_when_settled() -> None:
    lim = io_limiter()
    permit = lim.try_acquire("claude", input_tokens=3_000, output_tokens=4_096)
    # max_tokens is not what it will produce: nothing in OTPM yet; the total in TPM.
    assert used(lim, "claude") == {"rpm": 1, "tpm": 7_096, "itpm": 3_000, "otpm": 0}
    assert permit.estimated_tokens == 7_096
    permit.settle(input_tokens=2_900, output_tokens=1_500)
    assert used(lim, "claude") == {"rpm": 1, "tpm": 4_400, "itpm": 2_900, "otpm": 1_500}


def test_plain_estimate_is_all_input() -> None:
    lim = io_limiter()
    lim.try_acquire("claude", 1_000).settle(800)
    assert used(lim, "claude") == {"rpm": 1, "tpm": 800, "itpm": 800, "otpm": 0}


def test_estimate_arguments_are_checked() -> None:
    lim = io_limiter()
    with pytest.raises(TypeError, match="not both"):
        lim.try_acquire("claude", 10, output_tokens=5)
    with pytest.raises(TypeError, match="needs"):
        lim.try_acquire("claude")
    permit = lim.try_acquire("claude", input_tokens=10)
    with pytest.raises(TypeError, match="not both"):
        permit.settle(5, input_tokens=5)
    with pytest.raises(TypeError, match="needs"):
        permit.settle()
    assert not permit.done  # a refused settle leaves the permit live
    permit.settle(output_tokens=7)  # the missing input is 0
    assert used(lim, "claude")["otpm"] == 7
    with pytest.raises(RuntimeError, match="already"):
        permit.settle(output_tokens=1)


def test_input_above_its_limit_never_fits() -> None:
    lim = io_limiter()
    with pytest.raises(InsufficientCapacity) as info:
        lim.try_acquire("claude", input_tokens=10_001, output_tokens=10)
    assert (info.value.requested, info.value.capacity) == (10_001, 10_000)


def test_full_output_window_refuses_with_retry_after(fake_clock: FakeClock) -> None:
    lim = io_limiter()
    lim.try_acquire("claude", input_tokens=10, output_tokens=10).settle(
        input_tokens=10, output_tokens=2_000
    )
    for call in (
        lambda: lim.try_acquire("claude", input_tokens=10, output_tokens=10),
        lambda: lim.acquire_blocking("claude", input_tokens=10, output_tokens=10, max_wait=5),
    ):
        with pytest.raises(RateLimited) as info:
            call()
        assert 59.0 < info.value.retry_after <= 61.0
    assert isinstance(info.value, MaxWaitExceeded)
    assert lim.stats()["claude"].active.used == 0  # the refused waits hold no slot


def test_output_tokens_max_wait_runs_out_waiting_for_a_slot(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig(max_parallel_requests=1)})
    held = lim.try_acquire("m", 10)
    start = fake_clock.now
    with pytest.raises(MaxWaitExceeded):
        lim.acquire_blocking("m", input_tokens=5, output_tokens=5, max_wait=2)
    assert fake_clock.now - start == pytest.approx(2.0)
    with pytest.raises(MaxWaitExceeded):
        run(lim.acquire("m", input_tokens=5, output_tokens=5, max_wait=3))  # type: ignore[arg-type]
    assert fake_clock.now - start == pytest.approx(5.0)
    # Gave back their places: the slot goes straight to the next request.
    held.release()
    lim.try_acquire("m", input_tokens=5, output_tokens=5).settle(input_tokens=5)
    assert lim.stats()["m"].requests.used == 2


def test_output_tokens_wait_in_order_behind_a_plain_request(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig(rpm=1, tpm=10_000, max_parallel_requests=5)})
    lim.try_acquire("m", 10).settle(10)
    order: list[str] = []

    async def one(name: str, **estimate: int) -> None:
        async with lim.acquire("m", **estimate) as permit:
            order.append(name)
            permit.settle(1)

    async def main() -> None:
        import asyncio

        first = asyncio.ensure_future(one("plain", estimated_tokens=5))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(one("io", input_tokens=5, output_tokens=5))
        await asyncio.gather(first, second)

    run(main())
    assert order == ["plain", "io"]
    assert fake_clock.now >= 1_000.0 + 2 * MINUTE


# --- shared quotas and reconfiguration -------------------------------------------------------


def test_share_puts_names_on_one_quota() -> None:
    lim = ModelRateLimiter()
    lim.share(["gpt-4o", "gpt-4o-mini"], {"rpm": 2})
    lim.try_acquire("gpt-4o", 10).settle(10)
    lim.try_acquire("gpt-4o-mini", 10).settle(10)
    with pytest.raises(RateLimited):
        lim.try_acquire("gpt-4o", 10)
    stats = lim.stats()
    assert str(stats["gpt-4o"].requests) == str(stats["gpt-4o-mini"].requests) == "2/2"
    # One cooldown for the family.
    lim.cool_down("gpt-4o-mini", 30)
    assert lim.stats()["gpt-4o"].cooldown_until is not None
    with pytest.raises(TypeError):
        lim.share("gpt-4o", RateLimitConfig())
    with pytest.raises(InvalidConfig) as info:
        lim.share(["a", "b"], RateLimitConfig(rpm=0))
    assert (info.value.field, info.value.model) == ("rpm", "a")


def test_reconfigure_keeps_counts_and_wakes_waiters(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig(rpm=3)})
    lim.try_acquire("m", 10).settle(10)
    lim.try_acquire("m", 10).settle(10)
    lim.reconfigure("m", RateLimitConfig(rpm=2))
    assert str(lim.stats()["m"].requests) == "2/2"
    with pytest.raises(RateLimited):
        lim.try_acquire("m", 10)
    assert lim.config("m").rpm == 2

    async def main() -> float:
        import asyncio

        waiter = asyncio.ensure_future(lim.acquire("m", 10))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not waiter.done()
        start = fake_clock.now
        lim.reconfigure("m", RateLimitConfig(rpm=5))  # room now: the waiter re-checks
        permit = await waiter
        permit.settle(10)
        return fake_clock.now - start

    waited = run(main())
    assert waited < 1.0
    with pytest.raises(InvalidConfig):
        lim.reconfigure("m", RateLimitConfig(max_parallel_requests=0))


def test_config_round_trips_the_feedback_fields() -> None:
    config = RateLimitConfig(feedback_may_raise=True, default_cooldown=2.5)
    lim = ModelRateLimiter({"m": config})
    assert lim.config("m") == config
    with pytest.raises(ValueError, match="default_cooldown"):
        ModelRateLimiter({"m": RateLimitConfig(default_cooldown=-1)})


# --- headers ---------------------------------------------------------------------------------


class MultiHeaders:
    """httpx-like headers: ``multi_items()`` gives each repeated header apart."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def multi_items(self) -> list[tuple[str, str]]:
        return self.pairs

    def items(self) -> Iterator[tuple[str, str]]:  # merged, as httpx does: must not be used
        raise AssertionError("items() used instead of multi_items()")


@pytest.mark.parametrize(
    "headers",
    [
        OPENAI,
        list(OPENAI.items()),
        tuple(OPENAI.items()),
        iter(list(OPENAI.items())),
        OrderedDict(OPENAI),
        [(k.encode(), v.encode()) for k, v in OPENAI.items()],
        {k.upper(): bytearray(v.encode()) for k, v in OPENAI.items()},
        MultiHeaders(list(OPENAI.items())),
    ],
    ids=["dict", "pairs", "tuple", "iterator", "dict-subclass", "bytes", "upper-bytearray", "multi_items"],
)
def test_observe_learns_and_drains_from_any_header_form(headers: object) -> None:
    lim = ModelRateLimiter({"gpt-4o": RateLimitConfig(rpm=1_000, tpm=40_000)})
    permit = lim.try_acquire("gpt-4o", 1_000)
    report = lim.observe("gpt-4o", headers)  # type: ignore[arg-type]
    assert isinstance(report, FeedbackReport)
    assert report.headers.provider == "openai"
    assert [(x.limit, x.old_max, x.new_max) for x in report.learned] == [
        ("rpm", 1_000, 500),
        ("tpm", 40_000, 30_000),
    ]
    # 29 000 of room here, 20 000 there.
    assert [(d.limit, d.charged) for d in report.drained] == [("tpm", 9_000)]
    assert report.changed and report.error is None and report.cooldown is None
    permit.settle(1_000)
    stats = lim.stats()["gpt-4o"]
    assert str(stats.tokens) == "10000/30000"
    tpm = stats.limit("tpm")
    assert tpm is not None and (tpm.configured, tpm.learned) == (40_000, 30_000)


def test_parse_headers_reports_what_it_ignored() -> None:
    report = parse_headers(
        [
            ("x-ratelimit-limit-tokens", "30000"),
            ("x-ratelimit-remaining-tokens", "lots"),
            ("x-ratelimit-limit-requests", "500"),
            ("X-RateLimit-Limit-Requests", "600"),
            ("x-ratelimit-remaining-requests", "\udcff"),  # a lone surrogate: malformed
            ("x-ratelimit-frobs", "1"),
        ],
        provider="openai",
    )
    assert isinstance(report, HeaderReport)
    tokens = report.get("tokens")
    assert tokens is not None and (tokens.limit, tokens.remaining) == (30_000, None)
    assert tokens.window == 60.0
    assert report.get("requests") is None or report.get("requests").limit is None  # type: ignore[union-attr]
    assert [(i.name, i.reason) for i in report.ignored] == [
        ("x-ratelimit-remaining-tokens", "malformed"),
        ("x-ratelimit-limit-requests", "conflicting"),
        ("x-ratelimit-remaining-requests", "malformed"),
        ("x-ratelimit-frobs", "unrecognized"),
    ]


def test_provider_detection_and_bad_provider() -> None:
    assert parse_headers({"x-ratelimit-limit-tokens": "-1", "x-ms-region": "eu"}).provider == "azure"
    assert parse_headers({"anthropic-ratelimit-requests-limit": "50"}).provider == "anthropic"
    assert parse_headers({"x-ratelimit-limit-req-minute": "5"}).provider == "mistral"
    none = parse_headers({"content-type": "application/json", "retry-after": "3"})
    assert (none.provider, none.observed, none.retry_after) == (None, [], 3.0)
    with pytest.raises(ValueError, match="provider"):
        parse_headers({}, provider="bard")  # type: ignore[arg-type]
    assert parse_headers({}, provider="GROQ").provider == "groq"  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="str or bytes"):
        parse_headers({"retry-after": 3})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="pairs"):
        parse_headers(["retry-after"])  # type: ignore[list-item]


def test_groq_requests_are_per_day_and_unmatched_without_a_day_limit() -> None:
    headers = {"x-ratelimit-limit-requests": "14400", "x-ratelimit-remaining-requests": "10"}
    lim = ModelRateLimiter({"llama": RateLimitConfig()})
    report = lim.observe("llama", headers, provider="groq")
    assert report.unmatched == ["requests"] and not report.changed
    day = ModelRateLimiter(
        {"llama": RateLimitConfig(limits=[Limit.per_day("rpd", "requests", 20_000)])}
    )
    report = day.observe("llama", headers, provider="groq")
    assert [(x.limit, x.new_max) for x in report.learned] == [("rpd", 14_400)]
    assert day.stats()["llama"].limit("rpd").usage.used == 14_390  # type: ignore[union-attr]


def test_anthropic_resets_read_the_patched_wall_clock() -> None:
    now = 1_796_134_000.0  # 2026-12-01T14:06:40Z
    headers = {
        "anthropic-ratelimit-input-tokens-limit": "8000",
        "anthropic-ratelimit-input-tokens-remaining": "3000",
        "anthropic-ratelimit-input-tokens-reset": "2026-12-01T14:06:58Z",
    }
    with mock.patch("time.time", return_value=now):
        report = parse_headers(headers)
        observed = report.get("input_tokens")
        assert observed is not None and observed.reset_after == 18.0
        assert (observed.remaining_tolerance, observed.remaining_at_least) == (500, 2_500)
        lim = io_limiter()
        applied = lim.observe("claude", headers)
    assert [(x.limit, x.new_max) for x in applied.learned] == [("itpm", 8_000)]
    assert [(d.limit, d.charged) for d in applied.drained] == [("itpm", 5_500)]
    # Without a wall clock the instant cannot be used: ignored, said so.
    with mock.patch("time.time", side_effect=OSError("no clock")):
        report = parse_headers(headers)
    assert ("anthropic-ratelimit-input-tokens-reset", "needs_clock") in [
        (i.name, i.reason) for i in report.ignored
    ]


def test_feedback_only_tightens_unless_the_config_opts_in() -> None:
    higher = {"x-ratelimit-limit-tokens": "90000", "x-ratelimit-remaining-tokens": "90000"}
    tight = ModelRateLimiter({"m": RateLimitConfig(tpm=40_000)})
    assert tight.observe("m", higher).learned == []
    assert tight.stats()["m"].tokens.limit == 40_000
    loose = ModelRateLimiter({"m": RateLimitConfig(tpm=40_000, feedback_may_raise=True)})
    assert [x.new_max for x in loose.observe("m", higher).learned] == [90_000]
    assert loose.stats()["m"].tokens.limit == 90_000


def test_observe_without_rate_limit_headers_changes_nothing() -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig()}, strict=True)
    report = lim.observe("m", {"content-type": "application/json"})
    assert not report.changed and report.headers.provider is None
    with pytest.raises(UnknownModel):
        lim.observe("other", {"content-type": "application/json"})
    with pytest.raises(UnknownModel):
        lim.observe("other", OPENAI)


# --- 429s ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "after"),
    [
        ({"retry-after-ms": "250", "retry-after": "3"}, None, 0.25),
        ({"retry-after": "3"}, "", 3.0),
        (
            {},
            b'{"error":{"message":"Rate limit reached for gpt-4o on tokens per min (TPM): '
            b'Limit 30000, Used 29500, Requested 900. Please try again in 634ms."}}',
            0.634,
        ),
        (
            {},
            {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                    "retryDelay": "30s"}]}},
            30.0,
        ),
    ],
    ids=["retry-after-ms", "retry-after", "openai-body", "gemini-json"],
)
def test_retry_later_starts_a_cooldown(
    fake_clock: FakeClock, headers: dict[str, str], body: object, after: float
) -> None:
    assert classify_429(headers, body).retry_after == pytest.approx(after)  # type: ignore[arg-type]
    lim = ModelRateLimiter({"m": RateLimitConfig()})
    report = lim.observe_429("m", headers, body)  # type: ignore[arg-type]
    assert report.throttled is not None and report.throttled.kind == "retry_later"
    assert report.cooldown is not None and report.cooldown.extended
    assert report.cooldown.until == pytest.approx(fake_clock.now + after)
    assert lim.stats()["m"].cooldown_until == report.cooldown.until
    with pytest.raises(RateLimited) as info:
        lim.try_acquire("m", 10)
    assert info.value.retry_after == pytest.approx(after)
    fake_clock.advance(after)
    lim.try_acquire("m", 10).settle(10)


def test_a_429_without_a_delay_uses_the_default_cooldown(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig(default_cooldown=2.0)})
    report = lim.observe_429("m", {}, "slow down")
    assert report.cooldown is not None
    assert report.cooldown.until - fake_clock.now == pytest.approx(2.0)
    again = lim.observe_429("m", {"retry-after": "1"})
    assert again.cooldown is not None and not again.cooldown.extended  # within the first


def test_never_fits_is_insufficient_capacity() -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig()})
    body = (
        '{"error":{"message":"Request too large for gpt-4o on tokens per min (TPM): '
        'Limit 30000, Requested 36055.","code":"rate_limit_exceeded"}}'
    )
    report = lim.observe_429("m", {}, body)
    assert report.throttled is not None
    assert (report.throttled.kind, report.throttled.requested, report.throttled.limit) == (
        "never_fits",
        36_055,
        30_000,
    )
    assert isinstance(report.error, InsufficientCapacity) and isinstance(report.error, ValueError)
    assert (report.error.requested, report.error.capacity) == (36_055, 30_000)
    assert not report.changed
    lim.try_acquire("m", 10).settle(10)  # nothing paused
    with pytest.raises(InsufficientCapacity):
        raise report.error


def test_quota_exhausted_is_its_own_error(fake_clock: FakeClock) -> None:
    assert issubclass(QuotaExhausted, TollgateError) and issubclass(QuotaExhausted, RuntimeError)
    assert not issubclass(QuotaExhausted, RateLimited)  # a retry loop must not catch it
    lim = ModelRateLimiter({"m": RateLimitConfig()})
    body = {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}
    report = lim.observe_429("m", {}, body)
    assert report.quota_exhausted and report.quota_reset_at is None
    assert isinstance(report.error, QuotaExhausted) and report.error.reset_at is None
    stats = lim.stats()["m"]
    assert (stats.quota_exhausted, stats.quota_reset_at) == (True, None)
    for call in (
        lambda: lim.try_acquire("m", 10),
        lambda: lim.acquire_blocking("m", 10),
        lambda: lim.try_acquire("m", input_tokens=10, output_tokens=10),
        lambda: run(lim.acquire("m", 10, max_wait=5)),  # type: ignore[arg-type]
    ):
        with pytest.raises(QuotaExhausted, match="reset is unknown") as info:
            call()
        assert info.value.retry_after is None
    lim.resume("m")
    lim.try_acquire("m", 10).settle(10)


def test_quota_exhausted_with_a_reset(fake_clock: FakeClock) -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig()})
    lim.quota_exhausted("m", reset_after=3_600)
    assert lim.stats()["m"].quota_reset_at == pytest.approx(fake_clock.now + 3_600)
    with pytest.raises(QuotaExhausted) as info:
        lim.try_acquire("m", 10)
    assert info.value.retry_after == pytest.approx(3_600)
    assert info.value.reset_at == pytest.approx(fake_clock.now + 3_600)
    fake_clock.advance(3_600)
    lim.try_acquire("m", 10).settle(10)
    assert not lim.stats()["m"].quota_exhausted


def test_permit_throttled_gives_its_tokens_back_and_its_slot_into_the_cooldown(
    fake_clock: FakeClock,
) -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig(tpm=10_000, max_parallel_requests=1)})
    permit = lim.try_acquire("m", 4_000)
    report = permit.throttled({"retry-after": "2"}, b"rate limited")
    assert permit.done and report.cooldown is not None
    stats = lim.stats()["m"]
    assert (stats.tokens.used, stats.requests.used, stats.active.used) == (0, 1, 0)
    with pytest.raises(RateLimited) as info:
        lim.try_acquire("m", 10)
    assert info.value.ready_at == pytest.approx(report.cooldown.until)
    with pytest.raises(RuntimeError, match="already"):
        permit.throttled({}, None)
    # The other ways to end a permit on a 429.
    fake_clock.advance(2)
    cooldown = lim.try_acquire("m", 10).rate_limited(5)
    assert cooldown.until == pytest.approx(fake_clock.now + 5)
    fake_clock.advance(5)
    lim.try_acquire("m", 10).quota_exhausted(60)
    with pytest.raises(QuotaExhausted):
        lim.try_acquire("m", 10)


def test_strict_limiter_refuses_feedback_for_unknown_models() -> None:
    lim = ModelRateLimiter({"m": RateLimitConfig()}, strict=True)
    for call in (
        lambda: lim.observe_429("x", {"retry-after": "1"}),
        lambda: lim.cool_down("x", 1),
        lambda: lim.quota_exhausted("x"),
        lambda: lim.resume("x"),
    ):
        with pytest.raises(UnknownModel):
            call()


def test_the_wall_clock_is_looked_up_at_call_time() -> None:
    # Patching time.time after import is seen (the parsers get it at every call).
    with mock.patch("time.time", return_value=0.0):
        report = parse_headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert report.retry_after is not None and report.retry_after > 1e9
    assert time.time() > 1e9


def test_learn_limit_and_drain_by_hand() -> None:
    lim = io_limiter()
    learned = lim.learn_limit("claude", "input_tokens", 6_000, window=60)
    assert [(x.limit, x.old_max, x.new_max) for x in learned] == [("itpm", 10_000, 6_000)]
    assert lim.learn_limit("claude", "input_tokens", 6_000, window=3_600) == []  # no such window
    assert [x.new_max for x in lim.learn_limit("claude", "input_tokens", 50_000)] == [10_000]
    lim.try_acquire("claude", 1_000).settle(1_000)
    drained = lim.drain("claude", "tokens", 90_000, 20)
    assert [(d.limit, d.charged) for d in drained] == [("tpm", 9_000)]
    assert lim.stats()["claude"].tokens.used == 10_000
    # A later report with more room left replaces the share, but never gives room back
    # before the earlier report's reset: what is held for the others stays 9 000.
    again = lim.drain("claude", "tokens", 95_000, 20)
    assert [(d.limit, d.charged) for d in again] == [("tpm", 9_000)]
    assert lim.stats()["claude"].tokens.used == 10_000
    with pytest.raises(ValueError, match="counts"):
        lim.drain("claude", "words", 1, 1)  # type: ignore[arg-type]
    strict = ModelRateLimiter({"m": RateLimitConfig()}, strict=True)
    with pytest.raises(UnknownModel):
        strict.learn_limit("x", "tokens", 1)
