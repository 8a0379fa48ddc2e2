"""Exceptions raised by tollgate: each subclasses the built-in a caller would expect."""

from __future__ import annotations

__all__ = [
    "TollgateError",
    "InsufficientCapacity",
    "RateLimited",
    "MaxWaitExceeded",
    "InvalidConfig",
    "UnknownModel",
    "QuotaExhausted",
]


class TollgateError(Exception):
    """Base class of every tollgate error."""


class InsufficientCapacity(TollgateError, ValueError):
    """The request asks for more than the limit can ever hold (``n > burst``,
    ``estimated_tokens > tpm``): waiting would never help, so it fails at once.

    >>> from tollgate import RateLimiter
    >>> limiter = RateLimiter(2)
    >>> try:
    ...     limiter.try_acquire(3)
    ... except InsufficientCapacity as e:
    ...     (e.requested, e.capacity)
    (3, 2)
    """

    def __init__(self, message: str, requested: int, capacity: int) -> None:
        super().__init__(message)
        #: What was asked for.
        self.requested = requested
        #: The most that can ever be granted at once.
        self.capacity = capacity


class RateLimited(TollgateError):
    """No room now (a ``try_*`` call). ``ready_at`` is the ``time.monotonic()`` instant at
    which the same request would succeed if nothing else arrives (the core's refusal, to the
    nanosecond); ``retry_after`` is the seconds from the refusal until then, what an HTTP
    ``Retry-After`` wants. For a model, ``ready_at`` is when every rate limit has room (a
    lower bound when the obstacle is a parallel slot or a request queued ahead); for a new key
    of a keyed limiter whose key cap is full, when a key could be forgotten.

    >>> from tollgate import RateLimiter
    >>> limiter = RateLimiter(1)
    >>> limiter.try_acquire()
    >>> try:
    ...     limiter.try_acquire()
    ... except RateLimited as e:
    ...     0.0 < e.retry_after <= 1.0
    True
    """

    def __init__(self, message: str, ready_at: float, retry_after: float) -> None:
        super().__init__(message)
        #: ``time.monotonic()`` seconds at which the request would succeed.
        self.ready_at = ready_at
        #: Seconds from the refusal until ``ready_at``.
        self.retry_after = retry_after


class MaxWaitExceeded(RateLimited, TimeoutError):
    """Admission would take longer than the caller's ``max_wait``; nothing was taken."""


class InvalidConfig(TollgateError, ValueError):
    """A rate, burst or limit is zero or out of range. ``field`` names it; for a model's
    config, ``limit`` is the index into its ``limits`` of the entry at fault (``None`` for
    ``rpm``, ``tpm`` and ``max_parallel_requests``) and ``model`` the model (``None`` for the
    default config).

    >>> from tollgate import Limit
    >>> try:
    ...     Limit.requests("rpd", 0, 86_400)
    ... except InvalidConfig as e:
    ...     e.field
    'max'
    """

    def __init__(
        self, message: str, field: str, limit: int | None = None, model: str | None = None
    ) -> None:
        super().__init__(message)
        #: The offending field, e.g. ``"tpm"``, ``"window"``.
        self.field = field
        #: The index into ``RateLimitConfig.limits`` of the limit at fault, if any.
        self.limit = limit
        #: The model whose config was rejected (``None``: the default, or no model).
        self.model = model


class UnknownModel(TollgateError, KeyError):
    """A strict model limiter was asked for a model it was not configured with."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class QuotaExhausted(TollgateError, RuntimeError):
    """The provider said the model's quota is used up (a spend limit, a daily quota): no
    request is admitted until it resets, and waiting in line would not help. Not a
    :class:`RateLimited`, so a retry loop that catches those does not spin on it.
    ``reset_at`` is the ``time.monotonic()`` instant of the reset and ``retry_after`` the
    seconds until then, both ``None`` when the provider did not say.

    >>> from tollgate import ModelRateLimiter
    >>> limiter = ModelRateLimiter()
    >>> limiter.quota_exhausted("gpt-4o", reset_after=3_600)
    >>> try:
    ...     limiter.try_acquire("gpt-4o", 100)
    ... except QuotaExhausted as e:
    ...     round(e.retry_after)
    3600
    """

    def __init__(self, message: str, reset_at: float | None, retry_after: float | None) -> None:
        super().__init__(message)
        #: ``time.monotonic()`` seconds at which the quota resets, if known.
        self.reset_at = reset_at
        #: Seconds from the refusal until ``reset_at``, if known.
        self.retry_after = retry_after
