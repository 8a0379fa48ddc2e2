"""Keyed limiters, blocking and asyncio: one GCRA token bucket per key (a user, an API key, a
client address), with bounded memory. The buckets, the per-key lines of waiters, eviction and
the key cap are the Rust core's; this module waits and wraps."""

from __future__ import annotations

from typing import Any, Union

from ._tollgate import KeyedLimiterCore
from ._waiting import drive

#: What a key may be: values whose equality the limiter keeps exactly.
Key = Union[str, bytes, int, None, tuple[Any, ...]]


class _Keyed:
    """What both keyed limiters share: construction, the non-waiting path, eviction and
    introspection."""

    __slots__ = ("_core",)

    def __init__(
        self,
        count: int,
        per: float = 1.0,
        *,
        burst: int | None = None,
        shards: int | None = None,
        max_keys: int | None = None,
    ) -> None:
        self._core = KeyedLimiterCore(count, per, burst, shards, max_keys)

    @classmethod
    def per_second(
        cls, count: int, *, burst: int | None = None, max_keys: int | None = None
    ) -> Any:
        """``count`` per second per key (burst ``max(1, count)`` unless given)."""
        return cls(count, 1.0, burst=burst, max_keys=max_keys)

    @classmethod
    def per_minute(
        cls, count: int, *, burst: int | None = None, max_keys: int | None = None
    ) -> Any:
        """``count`` per minute per key (burst 1 unless given)."""
        return cls(count, 60.0, burst=burst, max_keys=max_keys)

    def try_acquire(self, key: Key, n: int = 1) -> None:
        """Takes ``n`` tokens of ``key`` now, or raises ``RateLimited`` (with
        ``retry_after``; also for a new key while the key cap is full) or
        ``InsufficientCapacity`` (``n > burst``). Never waits, never overtakes a waiter of
        the same key. ``TypeError`` for a key that is not str, bytes, int, None or a tuple
        of those."""
        self._core.try_acquire(key, n)

    def available(self, key: Key) -> int:
        """Whole tokens of ``key`` free now (``burst`` for a key not held)."""
        return self._core.available(key)

    def waiters(self, key: Key) -> int:
        """Callers waiting on ``key`` now."""
        return self._core.waiters(key)

    def __len__(self) -> int:
        """Keys held now: those whose bucket has not refilled, plus refilled ones eviction
        has not reached yet (call :meth:`retain_recent` first for an exact count)."""
        return len(self._core)

    def retain_recent(self) -> None:
        """Forgets every key whose bucket has refilled and that nobody waits on. A refilled
        bucket decides exactly as a new one, so this changes no decision; eviction also runs
        by itself, a little at a time."""
        self._core.retain_recent()

    def shrink_to_fit(self) -> None:
        """Gives back the key tables' spare memory (after :meth:`retain_recent`)."""
        self._core.shrink_to_fit()

    def table_bytes(self) -> int:
        """Bytes the key tables have allocated (for memory monitoring)."""
        return self._core.table_bytes()

    @property
    def rate(self) -> float:
        """Tokens per second, per key."""
        return self._core.rate

    @property
    def burst(self) -> int:
        """The most tokens one key is granted at once."""
        return self._core.burst

    @property
    def max_keys(self) -> int | None:
        """The key cap, if any: a new key that finds its shard full of keys that have not
        refilled is refused (``try_acquire``) or waits for room (``acquire``), so clients
        being limited are never forgotten to make room."""
        return self._core.max_keys

    @property
    def shards(self) -> int:
        """How many shards the keys are spread over (a power of two)."""
        return self._core.shards

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rate={self.rate:g}/s, burst={self.burst}, keys={len(self)})"


class KeyedRateLimiter(_Keyed):
    """A blocking keyed limiter for threads: each key gets ``burst`` at once, then ``count``
    per ``per`` seconds.

    >>> from tollgate import RateLimited
    >>> limiter = KeyedRateLimiter(1, burst=2)     # per key: 2 at once, then 1 per second
    >>> limiter.acquire("alice")
    >>> limiter.acquire("alice")
    >>> try:
    ...     limiter.try_acquire("alice")
    ... except RateLimited as e:
    ...     0.9 < e.retry_after <= 1.0
    True
    >>> limiter.acquire(("bob", 42))                # every key has its own bucket
    >>> len(limiter)
    2
    """

    __slots__ = ()

    def acquire(self, key: Key, n: int = 1, *, max_wait: float | None = None) -> None:
        """Blocks until ``n`` tokens of ``key`` are granted, first come first served per key.
        Waits with the GIL released (through ``time.sleep`` while it is patched). With
        ``max_wait`` (seconds) raises ``MaxWaitExceeded`` instead of waiting longer."""
        waiting = self._core.acquire(key, n, max_wait)
        if waiting is not None:
            waiting.wait_blocking()

    def acquire_within(self, key: Key, max_wait: float, n: int = 1) -> None:
        """:meth:`acquire` that waits at most ``max_wait`` seconds (the core's name)."""
        self.acquire(key, n, max_wait=max_wait)


class AsyncKeyedRateLimiter(_Keyed):
    """An asyncio keyed limiter. Cancelling a waiting task costs its key no capacity and
    lets the next waiter of that key go in its place.

    >>> import asyncio
    >>> limiter = AsyncKeyedRateLimiter(10)
    >>> async def main():
    ...     for user in ("ann", "ann", "ben"):
    ...         await limiter.acquire(user)
    ...     return limiter.available("ann"), limiter.available("ben")
    >>> asyncio.run(main())
    (8, 9)
    """

    __slots__ = ()

    async def acquire(self, key: Key, n: int = 1, *, max_wait: float | None = None) -> None:
        """Waits until ``n`` tokens of ``key`` are granted, first come first served per key
        (sleeping with ``asyncio.sleep``). With ``max_wait`` raises ``MaxWaitExceeded``
        instead of waiting longer."""
        waiting = self._core.acquire(key, n, max_wait)
        if waiting is not None:
            await drive(waiting)

    async def acquire_within(self, key: Key, max_wait: float, n: int = 1) -> None:
        """:meth:`acquire` that waits at most ``max_wait`` seconds (the core's name)."""
        await self.acquire(key, n, max_wait=max_wait)


__all__ = ["KeyedRateLimiter", "AsyncKeyedRateLimiter", "Key"]
