"""tollgate: rate limiting on a Rust core.

- :class:`RateLimiter` / :class:`AsyncRateLimiter`: GCRA token buckets (blocking / asyncio),
  and :func:`limit_rate` for functions;
- :class:`KeyedRateLimiter` / :class:`AsyncKeyedRateLimiter`: one bucket per key (a user,
  an API key, an address), memory bounded by eviction and ``max_keys``;
- :class:`ModelRateLimiter`: RPM, TPM and parallel limits per model for LLM APIs, with
  ``async with limiter.acquire(model, estimated) as permit: ... permit.settle(actual)``,
  and any further :class:`Limit` (per day, per 10 s, input and output tokens apart, token
  buckets) in a config's ``limits``; shared quotas, hot ``reconfigure``, and feedback from
  the provider: ``observe(model, headers)`` learns and drains, ``observe_429`` /
  ``permit.throttled`` pause the model's queue for the provider's retry-after;
- :func:`parse_headers` / :func:`classify_429`: the provider parsers on their own;
- :mod:`tollgate.errors`: typed exceptions that subclass the expected built-ins.

The seed library's API lives on, unchanged, in the ``rate_limiter`` package.
"""

from ._keyed import AsyncKeyedRateLimiter, Key, KeyedRateLimiter
from ._model import (
    Acquire,
    Headers,
    Limit,
    LimitUsage,
    ModelRateLimiter,
    ModelStats,
    Permit,
    RateLimitConfig,
    Usage,
)
from ._rps import AsyncRateLimiter, RateLimiter, limit_rate
from ._tollgate import (
    Cooldown,
    Drained,
    FeedbackReport,
    HeaderReport,
    Ignored,
    Learned,
    Observed,
    Throttled,
    classify_429,
    parse_headers,
)
from .errors import (
    InsufficientCapacity,
    InvalidConfig,
    MaxWaitExceeded,
    QuotaExhausted,
    RateLimited,
    TollgateError,
    UnknownModel,
)

__version__ = "0.1.0"

__all__ = [
    "RateLimiter",
    "AsyncRateLimiter",
    "limit_rate",
    "KeyedRateLimiter",
    "AsyncKeyedRateLimiter",
    "Key",
    "ModelRateLimiter",
    "RateLimitConfig",
    "Limit",
    "LimitUsage",
    "Acquire",
    "Permit",
    "ModelStats",
    "Usage",
    "Headers",
    "parse_headers",
    "classify_429",
    "HeaderReport",
    "Observed",
    "Ignored",
    "Throttled",
    "FeedbackReport",
    "Learned",
    "Drained",
    "Cooldown",
    "TollgateError",
    "InsufficientCapacity",
    "RateLimited",
    "MaxWaitExceeded",
    "InvalidConfig",
    "UnknownModel",
    "QuotaExhausted",
]
