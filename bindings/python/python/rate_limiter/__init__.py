"""Drop-in for the seed library ``rate_limiter``, on the tollgate core.

The same module paths, names, signatures, defaults, attributes, messages and statistics
strings; the seed's bugs fixed (see the package README). New code should use ``tollgate``.
"""

from .model_rate_limiter import ModelRateLimiter, RateLimitConfig, RateLimitContext
from .rps_limiter import AsyncRateLimiter, RateLimiter, async_limit_rate, limit_rate

__all__ = [
    # Requests-per-second limiters (token bucket)
    "RateLimiter",
    "AsyncRateLimiter",
    "limit_rate",
    "async_limit_rate",
    # Per-model limiters for LLM APIs (RPM / TPM / parallel)
    "ModelRateLimiter",
    "RateLimitConfig",
    "RateLimitContext",
]
