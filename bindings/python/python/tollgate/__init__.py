"""tollgate: rate limiting on a Rust core.

- :class:`RateLimiter` / :class:`AsyncRateLimiter`: GCRA token buckets (blocking / asyncio),
  and :func:`limit_rate` for functions;
- :class:`KeyedRateLimiter` / :class:`AsyncKeyedRateLimiter`: one bucket per key (a user,
  an API key, an address), memory bounded by eviction and ``max_keys``;
- :class:`ModelRateLimiter`: RPM, TPM and parallel limits per model for LLM APIs, with
  ``async with limiter.acquire(model, estimated) as permit: ... permit.settle(actual)``,
  and any further :class:`Limit` (per day, per 10 s, token buckets) in a config's ``limits``;
- :mod:`tollgate.errors`: typed exceptions that subclass the expected built-ins.

The seed library's API lives on, unchanged, in the ``rate_limiter`` package.
"""

from ._keyed import AsyncKeyedRateLimiter, Key, KeyedRateLimiter
from ._model import (
    Acquire,
    Limit,
    LimitUsage,
    ModelRateLimiter,
    ModelStats,
    Permit,
    RateLimitConfig,
    Usage,
)
from ._rps import AsyncRateLimiter, RateLimiter, limit_rate
from .errors import (
    InsufficientCapacity,
    InvalidConfig,
    MaxWaitExceeded,
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
    "TollgateError",
    "InsufficientCapacity",
    "RateLimited",
    "MaxWaitExceeded",
    "InvalidConfig",
    "UnknownModel",
]
