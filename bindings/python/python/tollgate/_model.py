"""The model limiter for LLM APIs: per model, requests per minute, tokens per minute, requests
in flight and any further limit (per day, input and output tokens apart). A request reserves
its estimate at admission and settles the actual count; the provider's headers and 429s tighten
the limits and pause admissions. State, queueing and decisions are the Rust core's; this
module waits and wraps."""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from ._tollgate import (
    Cooldown,
    Drained,
    FeedbackReport,
    Learned,
    Limit,
    LimitUsage,
    ModelLimiterCore,
    ModelStats,
    Permit,
    Usage,
)
from ._waiting import drive

#: What ``observe`` and ``observe_429`` take as a response's headers: a mapping (``dict``,
#: the headers of ``requests``, ``httpx``, ``aiohttp``, ``http.client``) or ``(name, value)``
#: pairs, names and values ``str`` or ``bytes``.
Headers = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]


@dataclass
class RateLimitConfig:
    """One model's limits (defaults 10 / 200 000 / 5, the seed's), and any further rate
    limits as :class:`Limit` values, checked and charged together with ``rpm`` and ``tpm``
    (all or nothing). ``feedback_may_raise`` lets the provider's headers raise a limit above
    its configured maximum (off: feedback only tightens); ``default_cooldown`` is how long a
    429 that does not say when to retry pauses the model, in seconds.

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
    feedback_may_raise: bool = False
    default_cooldown: float = 1.0

    @classmethod
    def of(cls, value: RateLimitConfig | Mapping[str, Any]) -> RateLimitConfig:
        """A config from a ``RateLimitConfig`` or a (partial) mapping of its fields."""
        if isinstance(value, RateLimitConfig):
            return value
        return cls(**dict(value))

    def _core(self) -> tuple[int, int, int, list[Limit], bool, float]:
        limits = list(self.limits)
        for limit in limits:
            if not isinstance(limit, Limit):
                raise TypeError(f"limits must be tollgate.Limit values, not {type(limit).__name__}")
        return (
            self.rpm,
            self.tpm,
            self.max_parallel_requests,
            limits,
            bool(self.feedback_may_raise),
            float(self.default_cooldown),
        )


def _estimate(
    estimated_tokens: int | None, input_tokens: int | None, output_tokens: int | None
) -> tuple[int, int]:
    # The core's two numbers: the input (all of it, for a plain estimate) and the output.
    if input_tokens is None and output_tokens is None:
        if estimated_tokens is None:
            raise TypeError("acquire needs estimated_tokens, or input_tokens and/or output_tokens")
        return estimated_tokens, 0
    if estimated_tokens is not None:
        raise TypeError("acquire takes estimated_tokens or input_tokens/output_tokens, not both")
    return input_tokens or 0, output_tokens or 0


_DEFAULT = RateLimitConfig()


class Acquire:
    """A pending admission: ``async with`` it (the permit is released on exit unless
    settled) or ``await`` it for the permit itself."""

    __slots__ = ("_limiter", "_model", "_estimated", "_output", "_max_wait", "_permit")

    def __init__(
        self,
        limiter: ModelRateLimiter,
        model: str,
        estimated: int,
        max_wait: float | None,
        output: int = 0,
    ) -> None:
        self._limiter = limiter
        self._model = model
        self._estimated = estimated
        self._output = output
        self._max_wait = max_wait
        self._permit: Permit | None = None

    async def _admit(self) -> Permit:
        core = self._limiter._core
        if self._max_wait is None:
            try:
                return core.try_acquire(self._model, self._estimated, self._output)
            except Exception:  # busy, oversized or unknown: the wait below says which
                pass
        waiting = core.acquire(self._model, self._estimated, self._output, self._max_wait)
        permit: Permit = await drive(waiting)
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
        self,
        model: str,
        estimated_tokens: int | None = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        max_wait: float | None = None,
    ) -> Acquire:
        """Waits for a slot, then room in every limit, reserving ``estimated_tokens``; first
        come first served per model (a cooldown after a 429 holds the whole queue in order).
        ``InsufficientCapacity`` at once if the estimate exceeds ``tpm`` (or another token
        limit); ``MaxWaitExceeded`` if ``max_wait`` (seconds) would be exceeded;
        ``QuotaExhausted`` while the provider's quota is used up. A cancelled task leaves
        nothing behind.

        Instead of ``estimated_tokens``, give ``input_tokens`` and ``output_tokens`` apart
        (the prompt, and ``max_tokens``): ``"tokens"`` limits reserve both, ``"input_tokens"``
        limits the input, ``"output_tokens"`` limits nothing until the permit settles what
        was produced (``permit.settle(input_tokens=..., output_tokens=...)``)."""
        if input_tokens is None and output_tokens is None and estimated_tokens is not None:
            return Acquire(self, model, estimated_tokens, max_wait)  # the common case, first
        estimated, output = _estimate(estimated_tokens, input_tokens, output_tokens)
        return Acquire(self, model, estimated, max_wait, output)

    def acquire_within(self, model: str, estimated_tokens: int, max_wait: float) -> Acquire:
        """:meth:`acquire` that waits at most ``max_wait`` seconds (the core's name)."""
        return Acquire(self, model, estimated_tokens, max_wait)

    def acquire_blocking(
        self,
        model: str,
        estimated_tokens: int | None = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        max_wait: float | None = None,
    ) -> Permit:
        """The blocking twin of :meth:`acquire` for threads (``with`` the permit to release
        it on exit). Waits with the GIL released (through ``time.sleep`` while it is
        patched)."""
        if input_tokens is None and output_tokens is None and estimated_tokens is not None:
            estimated, output = estimated_tokens, 0  # the common case, without a call
        else:
            estimated, output = _estimate(estimated_tokens, input_tokens, output_tokens)
        if max_wait is None:
            try:
                return self._core.try_acquire(model, estimated, output)
            except Exception:
                pass
        permit: Permit = self._core.acquire(model, estimated, output, max_wait).wait_blocking()
        return permit

    def try_acquire(
        self,
        model: str,
        estimated_tokens: int | None = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> Permit:
        """Admits now or raises ``RateLimited`` (with ``retry_after``); never waits."""
        if input_tokens is None and output_tokens is None and estimated_tokens is not None:
            return self._core.try_acquire(model, estimated_tokens)  # the common case, first
        estimated, output = _estimate(estimated_tokens, input_tokens, output_tokens)
        return self._core.try_acquire(model, estimated, output)

    def share(
        self, models: Sequence[str], config: RateLimitConfig | Mapping[str, Any]
    ) -> None:
        """Puts several model names on one quota (OpenAI's shared limits across a model
        family): one set of books under ``config``, one queue, one cooldown. Names used
        before start afresh on the shared books; ``stats()`` shows the shared figures under
        every name.

        >>> limiter = ModelRateLimiter()
        >>> limiter.share(["gpt-4o", "gpt-4o-mini"], RateLimitConfig(rpm=2))
        >>> limiter.try_acquire("gpt-4o", 10).settle(10)
        >>> limiter.try_acquire("gpt-4o-mini", 10).settle(10)
        >>> str(limiter.stats()["gpt-4o"].requests)
        '2/2'
        """
        if isinstance(models, (str, bytes)):
            raise TypeError("share takes a sequence of model names, not one string")
        self._core.share(list(models), RateLimitConfig.of(config)._core())

    def reconfigure(self, model: str, config: RateLimitConfig | Mapping[str, Any]) -> None:
        """Hot reconfiguration: ``model`` runs under ``config`` from now on, keeping what its
        limits have counted, its requests in flight and its queue (waiters re-check at once;
        shrinking below what is in use blocks new admissions until usage fits). Limits learned
        from feedback are forgotten. An unknown model is created under ``config``.

        >>> limiter = ModelRateLimiter({"m": RateLimitConfig(rpm=3)})
        >>> limiter.try_acquire("m", 10).settle(10)
        >>> limiter.try_acquire("m", 10).settle(10)
        >>> limiter.reconfigure("m", RateLimitConfig(rpm=2))
        >>> str(limiter.stats()["m"].requests)
        '2/2'
        """
        self._core.reconfigure(model, RateLimitConfig.of(config)._core())

    def observe(self, model: str, headers: Headers, *, provider: str | None = None) -> FeedbackReport:
        """Applies one response's rate-limit headers to ``model``: for each quota the
        provider reports over a known window, the local limits counting the same over that
        window learn its limit (lower only, unless ``feedback_may_raise``) and are drained to
        its remaining until its reset. ``provider`` (``"openai"``, ``"azure"``,
        ``"anthropic"``, ``"groq"``, ``"mistral"``) is detected from the header names when
        not given. Bad headers are ignored and listed in ``report.headers.ignored``.

        >>> limiter = ModelRateLimiter({"gpt-4o": RateLimitConfig(rpm=500, tpm=40_000)})
        >>> report = limiter.observe("gpt-4o", {
        ...     "x-ratelimit-limit-tokens": "30000",
        ...     "x-ratelimit-remaining-tokens": "20000",
        ...     "x-ratelimit-reset-tokens": "20s",
        ... })
        >>> [(l.limit, l.old_max, l.new_max) for l in report.learned]
        [('tpm', 40000, 30000)]
        >>> str(limiter.stats()["gpt-4o"].tokens)
        '10000/30000'
        """
        return self._core.observe(model, headers, provider)

    def observe_429(
        self,
        model: str,
        headers: Headers,
        body: str | bytes | Mapping[str, Any] | None = None,
        *,
        provider: str | None = None,
    ) -> FeedbackReport:
        """Applies a 429 response to ``model``. Retry later (``retry-after-ms``,
        ``retry-after`` or a hint in the body): every admission of the model pauses until the
        cooldown ends, waiters in order. Quota exhausted: admissions fail with
        ``QuotaExhausted`` until the reset. Never fits: ``report.error`` is the
        ``InsufficientCapacity`` to raise. Prefer ``permit.throttled(...)`` when the 429
        answered a permit's request: it also releases the slot into the cooldown."""
        return self._core.observe_429(model, headers, body, provider)

    def cool_down(self, model: str, retry_after: float) -> Cooldown:
        """Pauses every admission of ``model`` (or its shared quota) for ``retry_after``
        seconds, or extends the pause; waiters keep their order."""
        return self._core.cool_down(model, retry_after)

    def quota_exhausted(self, model: str, reset_after: float | None = None) -> None:
        """Makes every admission of ``model`` fail with ``QuotaExhausted`` for
        ``reset_after`` seconds (``None``: until :meth:`resume`), waiters included."""
        self._core.quota_exhausted(model, reset_after)

    def resume(self, model: str) -> None:
        """Ends ``model``'s cooldown and exhausted quota; waiters re-check at once."""
        self._core.resume(model)

    def learn_limit(
        self,
        model: str,
        counts: Literal["requests", "tokens", "input_tokens", "output_tokens"],
        max: int,
        *,
        window: float | None = None,
    ) -> list[Learned]:
        """By hand, what ``observe`` does with a limit header: every limit of ``model`` that
        counts ``counts`` over ``window`` seconds (``None``: any window) takes ``max``, keeping
        what it has counted; never above its configured maximum unless the config has
        ``feedback_may_raise``. Returns the limits that changed.

        >>> limiter = ModelRateLimiter({"m": RateLimitConfig(tpm=40_000)})
        >>> [(l.limit, l.new_max) for l in limiter.learn_limit("m", "tokens", 30_000, window=60)]
        [('tpm', 30000)]
        """
        return self._core.learn_limit(model, counts, max, window)

    def drain(
        self,
        model: str,
        counts: Literal["requests", "tokens", "input_tokens", "output_tokens"],
        remaining: int,
        reset_after: float,
        *,
        window: float | None = None,
    ) -> list[Drained]:
        """By hand, what ``observe`` does with a remaining header: every limit of ``model``
        that counts ``counts`` over ``window`` seconds (``None``: any window) holds what the
        provider counts beyond this limiter's own charges as other clients' share, so its room
        is at most ``remaining`` for about ``reset_after`` seconds. A later call replaces that
        share, but never gives room back before an earlier report's reset. Returns what each
        limit holds for the others.

        >>> limiter = ModelRateLimiter({"m": RateLimitConfig(tpm=10_000)})
        >>> limiter.try_acquire("m", 1_000).settle(1_000)
        >>> [(d.limit, d.charged) for d in limiter.drain("m", "tokens", 4_000, 20)]
        [('tpm', 5000)]
        """
        return self._core.drain(model, counts, remaining, reset_after, window)

    def stats(self) -> dict[str, ModelStats]:
        """Usage of every configured model and every model used so far: ``requests``,
        ``tokens`` and ``active`` as :class:`Usage`; ``limits``, one :class:`LimitUsage`
        per rate limit (``rpm``, ``tpm``, then the config's ``limits``) with its configured
        and learned maximum; ``cooldown_until``, ``quota_exhausted`` and ``quota_reset_at``."""
        return self._core.stats()

    def config(self, model: str) -> RateLimitConfig:
        """The limits ``model`` runs under."""
        rpm, tpm, parallel, limits, may_raise, cooldown = self._core.config(model)
        return RateLimitConfig(rpm, tpm, parallel, limits, may_raise, cooldown)

    def is_configured(self, model: str) -> bool:
        """Whether ``model`` was configured explicitly."""
        return self._core.is_configured(model)

    @property
    def strict(self) -> bool:
        """Whether unconfigured model names are refused."""
        return self._core.strict


__all__ = [
    "Headers",
    "RateLimitConfig",
    "Limit",
    "ModelRateLimiter",
    "Acquire",
    "Permit",
    "ModelStats",
    "Usage",
    "LimitUsage",
]
