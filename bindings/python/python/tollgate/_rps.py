"""Token-bucket (GCRA) limiters, blocking and asyncio, and a decorator for either kind of
function. The bucket, the line of waiters and every decision are the Rust core's."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ._keyed import AsyncKeyedRateLimiter, Key, KeyedRateLimiter
from ._tollgate import RateLimiterCore
from ._waiting import drive

F = TypeVar("F", bound=Callable[..., Any])


class _Bucket:
    """What both limiters share: construction, the non-waiting path and introspection."""

    __slots__ = ("_core",)

    def __init__(self, count: int, per: float = 1.0, *, burst: int | None = None) -> None:
        self._core = RateLimiterCore(count, per, burst)

    @classmethod
    def per_second(cls, count: int, *, burst: int | None = None) -> Any:
        """``count`` per second (burst ``max(1, count)`` unless given)."""
        return cls(count, 1.0, burst=burst)

    @classmethod
    def per_minute(cls, count: int, *, burst: int | None = None) -> Any:
        """``count`` per minute (burst 1 unless given)."""
        return cls(count, 60.0, burst=burst)

    def try_acquire(self, n: int = 1) -> None:
        """Takes ``n`` tokens now, or raises ``RateLimited`` (with ``retry_after``) or
        ``InsufficientCapacity`` (``n > burst``). Never waits, never overtakes a waiter."""
        self._core.try_acquire(n)

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self._core.rate

    @property
    def burst(self) -> int:
        """The most tokens granted at once."""
        return self._core.burst

    def available(self) -> int:
        """Whole tokens free now."""
        return self._core.available()

    def waiters(self) -> int:
        """Callers waiting in line now."""
        return self._core.waiters()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate:g}/s, burst={self.burst})"


class RateLimiter(_Bucket):
    """A blocking token-bucket limiter for threads.

    >>> limiter = RateLimiter(10)          # 10 per second, bursts of 10
    >>> for _ in range(3):
    ...     limiter.acquire()
    >>> limiter.available()
    7
    """

    __slots__ = ()

    def acquire(self, n: int = 1, *, max_wait: float | None = None) -> None:
        """Blocks until ``n`` tokens are granted, first come first served, with the GIL
        released (through ``time.sleep`` while it is patched). With ``max_wait`` (seconds)
        raises ``MaxWaitExceeded`` instead of waiting longer."""
        if max_wait is None:
            try:
                self._core.try_acquire(n)
                return
            except Exception:  # busy or oversized: the wait below says which
                pass
        self._core.acquire(n, max_wait).wait_blocking()

    def acquire_within(self, max_wait: float, n: int = 1) -> None:
        """:meth:`acquire` that waits at most ``max_wait`` seconds (the core's name)."""
        self.acquire(n, max_wait=max_wait)


class AsyncRateLimiter(_Bucket):
    """An asyncio token-bucket limiter. Cancelling a waiting task costs no capacity.

    >>> import asyncio
    >>> limiter = AsyncRateLimiter(5)
    >>> async def main():
    ...     for _ in range(5):
    ...         await limiter.acquire()
    ...     return limiter.available()
    >>> asyncio.run(main())
    0
    """

    __slots__ = ()

    async def acquire(self, n: int = 1, *, max_wait: float | None = None) -> None:
        """Waits until ``n`` tokens are granted, first come first served (sleeping with
        ``asyncio.sleep``). With ``max_wait`` raises ``MaxWaitExceeded`` instead."""
        if max_wait is None:
            try:
                self._core.try_acquire(n)
                return
            except Exception:
                pass
        await drive(self._core.acquire(n, max_wait))

    async def acquire_within(self, max_wait: float, n: int = 1) -> None:
        """:meth:`acquire` that waits at most ``max_wait`` seconds (the core's name)."""
        await self.acquire(n, max_wait=max_wait)


def limit_rate(
    limiter: RateLimiter | AsyncRateLimiter | KeyedRateLimiter | AsyncKeyedRateLimiter,
    n: int = 1,
    *,
    key: Callable[..., Key] | None = None,
) -> Callable[[F], F]:
    """Decorator: every call of the function first takes ``n`` tokens from ``limiter``.
    A coroutine function needs an asyncio limiter, a plain one a blocking limiter. A keyed
    limiter needs ``key``: called with the function's arguments, it returns the key.

    >>> shared = RateLimiter(100)
    >>> @limit_rate(shared)
    ... def ping() -> str:
    ...     return "pong"
    >>> ping()
    'pong'
    >>> per_user = KeyedRateLimiter(5)
    >>> @limit_rate(per_user, key=lambda user, text: user)
    ... def post(user: str, text: str) -> str:
    ...     return f"{user}: {text}"
    >>> post("ann", "hi")
    'ann: hi'
    >>> per_user.available("ann")
    4
    """
    keyed = isinstance(limiter, (KeyedRateLimiter, AsyncKeyedRateLimiter))
    if keyed and key is None:
        raise TypeError("a keyed limiter needs key=: a function of the call's arguments")
    if not keyed and key is not None:
        raise TypeError("key= needs a KeyedRateLimiter or AsyncKeyedRateLimiter")

    def decorate(func: F) -> F:
        if inspect.iscoroutinefunction(func):
            if not isinstance(limiter, (AsyncRateLimiter, AsyncKeyedRateLimiter)):
                raise TypeError(
                    "a coroutine function needs an AsyncRateLimiter or AsyncKeyedRateLimiter"
                )
            alimiter = limiter

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if isinstance(alimiter, AsyncKeyedRateLimiter):
                    await alimiter.acquire(key(*args, **kwargs), n)  # type: ignore[misc]
                else:
                    await alimiter.acquire(n)
                return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]
        if not isinstance(limiter, (RateLimiter, KeyedRateLimiter)):
            raise TypeError("a plain function needs a (blocking) RateLimiter or KeyedRateLimiter")
        blimiter = limiter

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if isinstance(blimiter, KeyedRateLimiter):
                blimiter.acquire(key(*args, **kwargs), n)  # type: ignore[misc]
            else:
                blimiter.acquire(n)
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


__all__ = ["RateLimiter", "AsyncRateLimiter", "limit_rate"]
