"""The seed's requests-per-second limiters, ``RateLimiter`` and ``AsyncRateLimiter``, and
their decorators ``limit_rate`` / ``async_limit_rate``, on the tollgate core's GCRA bucket.

The seed's ``allowance`` / ``last_check`` pair stays readable and writable with its meaning;
the core keeps it as one theoretical arrival time, so every wait is the core's arithmetic.
The clock is ``time.monotonic()`` and the sleeps ``time.sleep`` / ``asyncio.sleep``, all
looked up through their modules at call time, so code that patches them keeps working.
"""

import asyncio
import functools
import math
import time
from fractions import Fraction
from threading import Lock

from tollgate._tollgate import SeedBucket

_RATE_ERROR = "requests_per_second must be a positive number."


class _BaseRateLimiterLogic:
    """State shared by both limiters: the rate, the capacity and the core bucket."""

    def __init__(self, requests_per_second: int | float):
        """``requests_per_second`` tokens per second, bursts of ``max(1.0, rate)``.

        Raises:
            ValueError: if ``requests_per_second`` is not a positive (finite) number.
        """
        if (
            not isinstance(requests_per_second, (int, float))
            or not requests_per_second > 0.0
            or math.isinf(requests_per_second)
        ):
            raise ValueError(_RATE_ERROR)
        self.requests_per_second = float(requests_per_second)
        self.bucket_capacity = max(1.0, self.requests_per_second)
        # The core counts rates as integer fractions; a float rate is approximated to a
        # denominator of at most 10^6 s (exact for every rate written with 6 decimals).
        rate = Fraction(self.requests_per_second).limit_denominator(1_000_000)
        if rate == 0:
            rate = Fraction(1, 1_000_000)
        self._bucket = SeedBucket(rate.numerator, rate.denominator, time.monotonic())

    @property
    def allowance(self) -> float:
        """Tokens in the bucket as of ``last_check`` (settable, as in the seed)."""
        return self._bucket.allowance

    @allowance.setter
    def allowance(self, value: float) -> None:
        self._bucket.allowance = float(value)

    @property
    def last_check(self) -> float:
        """When the bucket was last updated: the grant time of the latest token."""
        return self._bucket.last_check

    @last_check.setter
    def last_check(self, value: float) -> None:
        self._bucket.last_check = float(value)

    def _update_state_and_get_wait_time(self) -> float:
        """Takes one token now and returns the seconds to wait before using it."""
        wait, _ticket = self._bucket.reserve(time.monotonic())
        return wait


class RateLimiter(_BaseRateLimiterLogic):
    """A thread-safe, blocking token-bucket limiter (first come, first served)."""

    def __init__(self, requests_per_second: int | float):
        """See :class:`_BaseRateLimiterLogic`."""
        super().__init__(requests_per_second)
        self.lock = Lock()

    def acquire(self):
        """Takes a token, sleeping (``time.sleep``) until it is due."""
        # The reservation itself is atomic in the core and queues callers in order, so the
        # lock need not be held while sleeping.
        wait, ticket = self._bucket.reserve(time.monotonic())
        if wait > 0:
            try:
                time.sleep(wait)
            except BaseException:
                self._bucket.cancel(ticket)
                raise


class AsyncRateLimiter(_BaseRateLimiterLogic):
    """An asyncio token-bucket limiter. A cancelled waiter gives its token back."""

    def __init__(self, requests_per_second: int | float):
        """See :class:`_BaseRateLimiterLogic`."""
        super().__init__(requests_per_second)
        self.lock = asyncio.Lock()

    async def acquire(self):
        """Takes a token, sleeping (``asyncio.sleep``) until it is due."""
        # Only the holder of the lock (the head of the line) has a reservation, so it is
        # always the newest one and cancelling it gives it back exactly.
        lock = self.lock
        if not lock.locked() and not getattr(lock, "_waiters", None):
            # Nobody holds or awaits the line: take a token without the lock's overhead.
            # Nothing can run between this check and `reserve`, and a free lock with no
            # waiters is taken below without suspending, so the order stays the same.
            wait, ticket = self._bucket.reserve(time.monotonic())
            if wait <= 0:
                return
            await lock.acquire()
            try:
                await asyncio.sleep(wait)
            except BaseException:
                self._bucket.cancel(ticket)
                raise
            finally:
                lock.release()
            return
        async with lock:
            wait, ticket = self._bucket.reserve(time.monotonic())
            if wait > 0:
                try:
                    await asyncio.sleep(wait)
                except BaseException:
                    self._bucket.cancel(ticket)
                    raise


def limit_rate(
    *,
    limiter: RateLimiter | None = None,
    requests_per_second: int | float | None = None,
):
    """Decorator factory: the function takes a token from ``limiter`` (shared) or from a
    new ``RateLimiter(requests_per_second)`` before each call.

    Raises:
        TypeError: if ``limiter`` is not a ``RateLimiter``.
        ValueError: if neither argument is given, or the rate is invalid.
    """
    if limiter is not None:
        if not isinstance(limiter, RateLimiter):
            raise TypeError("Provided 'limiter' must be an instance of RateLimiter.")
    elif requests_per_second is not None:
        limiter = RateLimiter(requests_per_second)
    else:
        raise ValueError(
            "Either a 'limiter' (RateLimiter instance) or 'requests_per_second' "
            "(positive number) must be provided."
        )

    def decorator(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            limiter.acquire()
            return func(*args, **kwargs)

        return wrapper

    return decorator


def async_limit_rate(
    *,
    limiter: AsyncRateLimiter | None = None,
    requests_per_second: int | float | None = None,
):
    """Decorator factory for coroutine functions, as :func:`limit_rate` with an
    ``AsyncRateLimiter``.

    Raises:
        TypeError: if ``limiter`` is not an ``AsyncRateLimiter``.
        ValueError: if neither argument is given, or the rate is invalid.
    """
    if limiter is not None:
        if not isinstance(limiter, AsyncRateLimiter):
            raise TypeError(
                "Provided 'limiter' must be an instance of AsyncRateLimiter."
            )
    elif requests_per_second is not None:
        limiter = AsyncRateLimiter(requests_per_second)
    else:
        raise ValueError(
            "Either a 'limiter' (AsyncRateLimiter instance) or 'requests_per_second' "
            "(positive number) must be provided."
        )

    def decorator(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            await limiter.acquire()
            return await func(*args, **kwargs)

        return wrapper

    return decorator
