"""Python-side cost of one acquire with room (plus settle/release where there is one), for
tollgate, the rate_limiter drop-in, aiolimiter and limits (in-memory), in one run.

    python bench/bench_acquire.py [iterations [rounds]]

Needs `pip install aiolimiter limits` (skipped with a note if missing). Build the extension
with `--release` first. Prints nanoseconds per operation: the best of 5 rounds, where each
round times every operation once in turn (so that a busy moment of a shared machine costs
every row alike, instead of the rows measured during it).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable

import rate_limiter
import tollgate
from tollgate._tollgate import RateLimiterCore

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
HUGE = 1_000_000_000  # per second: every acquire finds room


ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
LOOP = asyncio.new_event_loop()


def time_sync(op: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    for _ in range(N):
        op()
    return (time.perf_counter_ns() - start) / N


def time_async(make: Callable[[], Awaitable[object]]) -> float:
    async def once() -> float:
        start = time.perf_counter_ns()
        for _ in range(N):
            await make()
        return (time.perf_counter_ns() - start) / N

    return LOOP.run_until_complete(once())


# best_sync / best_async only register a measurement; main() runs them in rotating rounds.
def best_sync(op: Callable[[], object]) -> Callable[[], float]:
    return lambda: time_sync(op)


def best_async(make: Callable[[], Awaitable[object]]) -> Callable[[], float]:
    return lambda: time_async(make)


def rows() -> list[tuple[str, str, Callable[[], float]]]:
    out: list[tuple[str, str, Callable[[], float]]] = []
    add = lambda kind, name, ns: out.append((kind, name, ns))  # noqa: E731

    # The crossing itself: a trivial Rust method, and the clock read through Python.
    core = RateLimiterCore(HUGE)
    add("crossing", "Rust method call (RateLimiterCore.waiters)", best_sync(core.waiters))
    add("crossing", "time.monotonic() (Python)", best_sync(time.monotonic))
    add("crossing", "clock read through Rust (_tollgate.monotonic)", best_sync(tollgate._tollgate.monotonic))

    # RPS, blocking.
    tg = tollgate.RateLimiter(HUGE)
    add("sync", "tollgate.RateLimiter.acquire", best_sync(tg.acquire))
    add("sync", "tollgate.RateLimiter.try_acquire", best_sync(tg.try_acquire))
    rl = rate_limiter.RateLimiter(HUGE)
    add("sync", "rate_limiter.RateLimiter.acquire (drop-in)", best_sync(rl.acquire))
    try:
        from limits import parse, storage, strategies

        item = parse(f"{HUGE}/second")
        fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
        add("sync", "limits FixedWindow.hit (memory)", best_sync(lambda: fixed.hit(item)))
        moving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        add("sync", "limits MovingWindow.hit (memory)", best_sync(lambda: moving.hit(item)))
    except ImportError:
        print("limits not installed: skipped", file=sys.stderr)

    # RPS, asyncio.
    atg = tollgate.AsyncRateLimiter(HUGE)
    add("async", "tollgate.AsyncRateLimiter.acquire", best_async(atg.acquire))
    arl = rate_limiter.AsyncRateLimiter(HUGE)
    add("async", "rate_limiter.AsyncRateLimiter.acquire (drop-in)", best_async(arl.acquire))
    try:
        from aiolimiter import AsyncLimiter

        al = AsyncLimiter(HUGE, 1)
        add("async", "aiolimiter.AsyncLimiter.acquire", best_async(al.acquire))
    except ImportError:
        print("aiolimiter not installed: skipped", file=sys.stderr)
    try:
        from limits import parse
        from limits.aio import storage as astorage
        from limits.aio import strategies as astrategies

        item = parse(f"{HUGE}/second")
        afixed = astrategies.FixedWindowRateLimiter(astorage.MemoryStorage())
        add("async", "limits.aio FixedWindow.hit (memory)", best_async(lambda: afixed.hit(item)))
    except ImportError:
        pass

    # Keyed, one key (a str) and many keys (a fresh key object each call, from a pool).
    ktg = tollgate.KeyedRateLimiter(HUGE)
    add("keyed", "tollgate.KeyedRateLimiter.acquire (one str key)", best_sync(lambda: ktg.acquire("user-1")))
    add("keyed", "tollgate.KeyedRateLimiter.try_acquire (one str key)", best_sync(lambda: ktg.try_acquire("user-1")))
    users = [f"user-{i}" for i in range(1_000)]
    it = iter(range(1 << 62))
    add(
        "keyed",
        "tollgate.KeyedRateLimiter.acquire (1000 str keys)",
        best_sync(lambda: ktg.acquire(users[next(it) % 1_000])),
    )
    add(
        "keyed",
        "tollgate.KeyedRateLimiter.acquire (one (str, int) tuple key)",
        best_sync(lambda: ktg.acquire(("tenant", 7))),
    )
    aktg = tollgate.AsyncKeyedRateLimiter(HUGE)
    add("keyed", "tollgate.AsyncKeyedRateLimiter.acquire (one str key)", best_async(lambda: aktg.acquire("user-1")))
    try:
        from limits import parse, storage, strategies

        item = parse(f"{HUGE}/second")
        kfixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
        add("keyed", "limits FixedWindow.hit(item, key) (memory)", best_sync(lambda: kfixed.hit(item, "user-1")))
        kmoving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
        add("keyed", "limits MovingWindow.hit(item, key) (memory)", best_sync(lambda: kmoving.hit(item, "user-1")))
    except ImportError:
        pass
    try:
        from limits.aio import storage as astorage
        from limits.aio import strategies as astrategies

        akfixed = astrategies.FixedWindowRateLimiter(astorage.MemoryStorage())
        add("keyed", "limits.aio FixedWindow.hit(item, key) (memory)", best_async(lambda: akfixed.hit(item, "user-1")))
    except ImportError:
        pass

    # Model limiter: acquire + settle with room.
    cfg = tollgate.RateLimitConfig(rpm=2_000_000_000, tpm=10**15, max_parallel_requests=1000)
    ml = tollgate.ModelRateLimiter({"m": cfg})

    def blocking_model() -> None:
        ml.acquire_blocking("m", 10).settle(10)

    async def async_model() -> None:
        async with ml.acquire("m", 10) as permit:
            permit.settle(10)

    add("model", "tollgate acquire_blocking + settle", best_sync(blocking_model))
    add("model", "tollgate async with acquire + settle", best_async(async_model))
    # The same with three further limits (a day window, a 10 s token window, a bucket).
    extra = tollgate.RateLimitConfig(
        rpm=2_000_000_000,
        tpm=10**15,
        max_parallel_requests=1000,
        limits=[
            tollgate.Limit.requests("rpd", 10**15, 86_400, slots=24),
            tollgate.Limit.tokens("t10", 10**15, 10),
            tollgate.Limit.bucket("rps", "requests", 10**9, 10**9),
        ],
    )
    ml3 = tollgate.ModelRateLimiter({"m": extra})
    add(
        "model",
        "tollgate acquire_blocking + settle, 3 further limits",
        best_sync(lambda: ml3.acquire_blocking("m", 10).settle(10)),
    )
    # Input and output tokens apart (Anthropic's ITPM / OTPM), through the binding's bound.
    io = tollgate.RateLimitConfig(
        rpm=2_000_000_000,
        tpm=10**15,
        max_parallel_requests=1000,
        limits=[
            tollgate.Limit.window("itpm", "input_tokens", 10**15, 60),
            tollgate.Limit.window("otpm", "output_tokens", 10**15, 60),
        ],
    )
    mlio = tollgate.ModelRateLimiter({"m": io})
    add(
        "model",
        "tollgate acquire_blocking(input, output) + settle(input, output), itpm + otpm",
        best_sync(
            lambda: mlio.acquire_blocking("m", input_tokens=10, output_tokens=10).settle(
                input_tokens=10, output_tokens=10
            )
        ),
    )
    add(
        "model",
        "tollgate acquire_blocking(10) + settle(10), itpm + otpm",
        best_sync(lambda: mlio.acquire_blocking("m", 10).settle(10)),
    )
    # Feedback: one response's headers parsed and applied (6 OpenAI headers, 8 Anthropic).
    openai = {
        "x-ratelimit-limit-requests": "2000000000",
        "x-ratelimit-remaining-requests": "1999999999",
        "x-ratelimit-reset-requests": "1ms",
        "x-ratelimit-limit-tokens": "1000000000000000",
        "x-ratelimit-remaining-tokens": "999999999999000",
        "x-ratelimit-reset-tokens": "1ms",
    }
    add("feedback", "tollgate observe, 6 OpenAI headers (dict)", best_sync(lambda: ml.observe("m", openai)))
    openai_pairs = [(k.encode(), v.encode()) for k, v in openai.items()]
    add(
        "feedback",
        "tollgate observe, 6 OpenAI headers (bytes pairs)",
        best_sync(lambda: ml.observe("m", openai_pairs, provider="openai")),
    )
    anthropic = {
        "anthropic-ratelimit-requests-limit": "2000000000",
        "anthropic-ratelimit-requests-remaining": "1999999999",
        "anthropic-ratelimit-requests-reset": "2030-01-01T00:00:00Z",
        "anthropic-ratelimit-input-tokens-limit": "1000000000000000",
        "anthropic-ratelimit-input-tokens-remaining": "999999999999000",
        "anthropic-ratelimit-input-tokens-reset": "2030-01-01T00:00:00Z",
        "anthropic-ratelimit-output-tokens-limit": "1000000000000000",
        "anthropic-ratelimit-output-tokens-remaining": "999999999999000",
    }
    add("feedback", "tollgate observe, 8 Anthropic headers (dict)", best_sync(lambda: mlio.observe("m", anthropic)))
    add(
        "feedback",
        "tollgate parse_headers, 6 OpenAI headers (dict)",
        best_sync(lambda: tollgate.parse_headers(openai)),
    )
    seed = rate_limiter.ModelRateLimiter(
        {"m": {"rpm": 2_000_000_000, "tpm": 10**15, "max_parallel_requests": 1000}}
    )

    async def seed_model() -> None:
        async with rate_limiter.RateLimitContext(seed, "m", 10, 10):
            pass

    async def seed_pair() -> None:
        await seed.acquire("m", 10)
        await seed.release("m", 10)

    add("model", "rate_limiter RateLimitContext (drop-in)", best_async(seed_model))
    add("model", "rate_limiter acquire + release (drop-in)", best_async(seed_pair))
    return out


if __name__ == "__main__":
    table = rows()
    best = [float("inf")] * len(table)
    for _ in range(ROUNDS):
        for i, (_kind, _name, measure) in enumerate(table):
            best[i] = min(best[i], measure())
    print(f"Python {sys.version.split()[0]}, {N} operations per round, best of {ROUNDS} rounds")
    print("| kind | operation | ns/op |")
    print("| --- | --- | ---: |")
    for (kind, name, _), ns in zip(table, best):
        print(f"| {kind} | {name} | {ns:,.0f} |")
