"""Code written the way the seed's README teaches runs unchanged on the drop-in: every
usage pattern it documents, with a stand-in for the network call."""

from __future__ import annotations

import asyncio

import pytest
from conftest import FakeClock, run

from rate_limiter import (
    AsyncRateLimiter,
    ModelRateLimiter,
    RateLimitContext,
    RateLimiter,
    async_limit_rate,
    limit_rate,
)


async def fake_llm_call(prompt: str) -> dict[str, int]:
    await asyncio.sleep(0)
    return {"total_tokens": len(prompt.split()) * 2}


def test_rps_patterns(fake_clock: FakeClock) -> None:
    limiter = RateLimiter(requests_per_second=10)
    start = fake_clock.now
    for _ in range(15):  # the README's burst example: 10 at once, then 10/s
        limiter.acquire()
    assert fake_clock.now - start == pytest.approx(0.5)

    @limit_rate(requests_per_second=5)
    def send_email(to, subject, body):
        return f"sent to {to}"

    shared = RateLimiter(requests_per_second=10)

    @limit_rate(limiter=shared)
    def function_a():
        return "A"

    @limit_rate(limiter=shared)
    def function_b():
        return "B"

    assert send_email("a@b", "s", "b") == "sent to a@b"
    assert [function_a(), function_b()] == ["A", "B"]
    assert shared.allowance == 8.0


def test_async_patterns(fake_clock: FakeClock) -> None:
    limiter = AsyncRateLimiter(requests_per_second=10)

    async def fetch_data(url):
        await limiter.acquire()
        return f"Data from {url}"

    @async_limit_rate(requests_per_second=10)
    async def fetch_user(user_id):
        return f"User {user_id}"

    class RateLimitedAPIClient:  # the README's "API client" example, minus aiohttp
        def __init__(self, base_url, requests_per_second=10):
            self.base_url = base_url
            self.limiter = AsyncRateLimiter(requests_per_second)

        async def get(self, endpoint):
            await self.limiter.acquire()
            return f"{self.base_url}/{endpoint}"

    async def main() -> None:
        results = await asyncio.gather(*[fetch_data(f"u/{i}") for i in range(30)])
        assert results[29] == "Data from u/29"
        assert await fetch_user(7) == "User 7"
        client = RateLimitedAPIClient("https://api.example.com", requests_per_second=5)
        got = await asyncio.gather(*[client.get(f"users/{i}") for i in range(12)])
        assert got[0] == "https://api.example.com/users/0"

    start = fake_clock.now
    run(main())
    assert fake_clock.now - start >= 2.0  # 30 at 10/s with a burst of 10


def test_model_patterns() -> None:
    limiter = ModelRateLimiter(
        model_configs={
            "gpt-4": {"rpm": 500, "tpm": 40000, "max_parallel_requests": 10},
            "gpt-3.5-turbo": {"rpm": 3500, "tpm": 90000, "max_parallel_requests": 20},
        },
        default_config={"rpm": 10, "tpm": 200000, "max_parallel_requests": 5},
    )

    async def call_llm(model, prompt):
        estimated_tokens = len(prompt.split()) * 3
        async with RateLimitContext(
            limiter,
            model_name=model,
            estimated_tokens=estimated_tokens,
            actual_tokens=estimated_tokens,
        ):
            return await fake_llm_call(prompt)

    async def call_llm_manual(model, prompt):
        estimated_tokens = len(prompt.split()) * 3
        await limiter.acquire(model, estimated_tokens=estimated_tokens)
        actual_tokens = estimated_tokens
        try:
            response = await fake_llm_call(prompt)
            actual_tokens = response["total_tokens"]
            return response
        finally:
            await limiter.release(model, token_count=actual_tokens)

    async def batch(requests):
        return await asyncio.gather(*[call_llm(r["model"], r["prompt"]) for r in requests])

    async def main() -> None:
        await batch(
            [
                {"model": "gpt-4", "prompt": "explain quantum computing"},
                {"model": "gpt-3.5-turbo", "prompt": "write a haiku about python"},
                {"model": "claude-3", "prompt": "summarize this article"},
            ]
        )
        await call_llm_manual("gpt-4", "one two three four")
        async with RateLimitContext(
            limiter, model_name="gpt-4", estimated_tokens=10000, actual_tokens=8500
        ):
            pass

    run(main())
    stats = limiter.get_stats()
    # 9 (settled at its estimate) + 8 (estimate 12, settled to the response's 8) + 8500.
    assert stats["gpt-4"] == {"requests": "3/500", "tokens": "8517/40000", "active": "0/10"}
    assert stats["claude-3"] == {"requests": "1/10", "tokens": "9/200000", "active": "0/5"}
    assert set(stats) == {"gpt-4", "gpt-3.5-turbo", "claude-3"}
