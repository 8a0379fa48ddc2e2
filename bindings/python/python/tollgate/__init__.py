"""tollgate: rate limiting on a Rust core.

- :class:`RateLimiter` / :class:`AsyncRateLimiter`: GCRA token buckets (blocking / asyncio),
  and :func:`limit_rate` for functions;
- :class:`ModelRateLimiter`: RPM, TPM and parallel limits per model for LLM APIs, with
  ``async with limiter.acquire(model, estimated) as permit: ... permit.settle(actual)``;
- :mod:`tollgate.errors`: typed exceptions that subclass the expected built-ins.

The seed library's API lives on, unchanged, in the ``rate_limiter`` package.
"""

from ._model import Acquire, ModelRateLimiter, ModelStats, Permit, RateLimitConfig, Usage
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
    "ModelRateLimiter",
    "RateLimitConfig",
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
