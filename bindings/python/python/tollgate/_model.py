"""The model limiter for LLM APIs: per model, requests per minute, tokens per minute and
requests in flight. A request reserves its estimate at admission and settles the actual count.
State, queueing and decisions are the Rust core's; this module waits and wraps."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ._tollgate import Limit, LimitUsage, ModelLimiterCore, ModelStats, Permit, Usage
from ._waiting import drive


@dataclass
class RateLimitConfig:
    """One model's limits (defaults 10 / 200 000 / 5, the seed's), and any further rate
    limits as :class:`Limit` values, checked and charged together with ``rpm`` and ``tpm``
    (all or nothing).

    >>> day = RateLimitConfig(
    ...     rpm=500,
    ...     tpm=40_000,
    ...     limits=[
    ...         Limit.requests("rpd", 10_000, 86_400, slots=24),     # per day, hourly slots
    ...         Limit.tokens("tokens per 10 s", 2_000, 10),          # smooths the minute
    ...         Limit.bucket("rps", "requests", 5, 2),              # bursts of 5, then 2/s
    ...     ],
    ... )
    >>> [limit.name for limit in day.limits]
    ['rpd', 'tokens per 10 s', 'rps']
    """

    rpm: int = 10
    tpm: int = 200_000
    max_parallel_requests: int = 5
    limits: Sequence[Limit] = field(default_factory=list)

    @classmethod
    def of(cls, value: RateLimitConfig | Mapping[str, Any]) -> RateLimitConfig:
        """A config from a ``RateLimitConfig`` or a (partial) mapping of its fields."""
        if isinstance(value, RateLimitConfig):
            return value
        return cls(**dict(value))

    def _core(self) -> tuple[int, int, int, list[Limit]]:
        limits = list(self.limits)
        for limit in limits:
            if not isinstance(limit, Limit):
                raise TypeError(f"limits must be tollgate.Limit values, not {type(limit).__name__}")
        return (self.rpm, self.tpm, self.max_parallel_requests, limits)


_DEFAULT = RateLimitConfig()


class Acquire:
    """A pending admission: ``async with`` it (the permit is released on exit unless
    settled) or ``await`` it for the permit itself."""

    __slots__ = ("_limiter", "_model", "_estimated", "_max_wait", "_permit")

    def __init__(
        self, limiter: ModelRateLimiter, model: str, estimated: int, max_wait: float | None
    ) -> None:
        self._limiter = limiter
        self._model = model
        self._estimated = estimated
        self._max_wait = max_wait
        self._permit: Permit | None = None

    async def _admit(self) -> Permit:
        core = self._limiter._core
        if self._max_wait is None:
            try:
                return core.try_acquire(self._model, self._estimated)
            except Exception:  # busy, oversized or unknown: the wait below says which
                pass
        permit: Permit = await drive(core.acquire(self._model, self._estimated, self._max_wait))
        return permit

    def __await__(self) -> Generator[Any, None, Permit]:
        return self._admit().__await__()

    async def __aenter__(self) -> Permit:
        self._permit = await self._admit()
        return self._permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.release()  # a no-op if settled; otherwise the estimate stays charged


class ModelRateLimiter:
    """Per-model RPM, TPM and parallel limits.

    >>> import asyncio
    >>> limiter = ModelRateLimiter(
    ...     {"gpt-4": RateLimitConfig(rpm=500, tpm=40_000, max_parallel_requests=10)},
    ... )
    >>> async def call() -> None:
    ...     async with limiter.acquire("gpt-4", 8_000) as permit:
    ...         permit.settle(7_500)
    >>> asyncio.run(call())
    >>> str(limiter.stats()["gpt-4"].tokens)
    '7500/40000'

    Unknown models get ``default`` (created on first use) unless ``strict=True``, which
    refuses them with ``UnknownModel``.
    """

    __slots__ = ("_core",)

    def __init__(
        self,
        models: Mapping[str, RateLimitConfig | Mapping[str, Any]] | None = None,
        default: RateLimitConfig | Mapping[str, Any] | None = _DEFAULT,
        *,
        strict: bool = False,
    ) -> None:
        pairs = [(name, RateLimitConfig.of(c)._core()) for name, c in (models or {}).items()]
        fallback = None if strict or default is None else RateLimitConfig.of(default)._core()
        self._core = ModelLimiterCore(pairs, fallback)

    def acquire(
        self, model: str, estimated_tokens: int, *, max_wait: float | None = None
    ) -> Acquire:
        """Waits for a slot, then RPM and TPM room, reserving ``estimated_tokens``; first
        come first served per model. ``InsufficientCapacity`` at once if the estimate
        exceeds ``tpm``; ``MaxWaitExceeded`` if ``max_wait`` (seconds) would be exceeded.
        A cancelled task leaves nothing behind."""
        return Acquire(self, model, estimated_tokens, max_wait)

    def acquire_within(self, model: str, estimated_tokens: int, max_wait: float) -> Acquire:
        """:meth:`acquire` that waits at most ``max_wait`` seconds (the core's name)."""
        return Acquire(self, model, estimated_tokens, max_wait)

    def acquire_blocking(
        self, model: str, estimated_tokens: int, *, max_wait: float | None = None
    ) -> Permit:
        """The blocking twin of :meth:`acquire` for threads (``with`` the permit to release
        it on exit). Waits with the GIL released (through ``time.sleep`` while it is
        patched)."""
        if max_wait is None:
            try:
                return self._core.try_acquire(model, estimated_tokens)
            except Exception:
                pass
        permit: Permit = self._core.acquire(model, estimated_tokens, max_wait).wait_blocking()
        return permit

    def try_acquire(self, model: str, estimated_tokens: int) -> Permit:
        """Admits now or raises ``RateLimited`` (with ``retry_after``); never waits."""
        return self._core.try_acquire(model, estimated_tokens)

    def stats(self) -> dict[str, ModelStats]:
        """Usage of every configured model and every model used so far: ``requests``,
        ``tokens`` and ``active`` as :class:`Usage`, and ``limits``, one :class:`LimitUsage`
        per rate limit (``rpm``, ``tpm``, then the config's ``limits``)."""
        return self._core.stats()

    def config(self, model: str) -> RateLimitConfig:
        """The limits ``model`` runs under."""
        rpm, tpm, parallel, limits = self._core.config(model)
        return RateLimitConfig(rpm, tpm, parallel, limits)

    def is_configured(self, model: str) -> bool:
        """Whether ``model`` was configured explicitly."""
        return self._core.is_configured(model)

    @property
    def strict(self) -> bool:
        """Whether unconfigured model names are refused."""
        return self._core.strict


__all__ = [
    "RateLimitConfig",
    "Limit",
    "ModelRateLimiter",
    "Acquire",
    "Permit",
    "ModelStats",
    "Usage",
    "LimitUsage",
]
