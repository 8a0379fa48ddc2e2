"""Python-side cost of one acquire with room (plus settle/release where there is one), for
tollgate, the rate_limiter drop-in, aiolimiter and limits (in-memory), in one run.

    python bench/bench_acquire.py [iterations]

Needs `pip install aiolimiter limits` (skipped with a note if missing). Build the extension
with `--release` first. Prints nanoseconds per operation, best of 5 runs.
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


def best_sync(op: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter_ns()
        for _ in range(N):
            op()
        best = min(best, (time.perf_counter_ns() - start) / N)
    return best


def best_async(make: Callable[[], Awaitable[object]]) -> float:
    async def runs() -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter_ns()
            for _ in range(N):
                await make()
            best = min(best, (time.perf_counter_ns() - start) / N)
        return best

    return asyncio.run(runs())


def rows() -> list[tuple[str, str, float]]:
    out: list[tuple[str, str, float]] = []
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
    print(f"Python {sys.version.split()[0]}, {N} operations per run, best of 5")
    print("| kind | operation | ns/op |")
    print("| --- | --- | ---: |")
    for kind, name, ns in rows():
        print(f"| {kind} | {name} | {ns:,.0f} |")
