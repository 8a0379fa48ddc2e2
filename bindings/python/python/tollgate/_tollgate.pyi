"""Type stubs of the compiled module ``tollgate._tollgate`` (private API: use ``tollgate``)."""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal, final

__all__ = [
    "Waiting",
    "RateLimiterCore",
    "ModelLimiterCore",
    "Permit",
    "Usage",
    "ModelStats",
    "Limit",
    "LimitUsage",
    "HeaderReport",
    "Observed",
    "Ignored",
    "Throttled",
    "Cooldown",
    "Learned",
    "Drained",
    "FeedbackReport",
    "parse_headers",
    "classify_429",
    "KeyedLimiterCore",
    "SeedBucket",
    "SeedTicket",
    "SeedWindows",
    "SeedSlot",
    "monotonic",
]

_Counts = Literal["requests", "tokens", "input_tokens", "output_tokens"]
_Provider = Literal["openai", "azure", "anthropic", "groq", "mistral"]
_Headers = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
_Body = str | bytes | bytearray | Mapping[str, Any] | list[Any] | None

def monotonic() -> float:
    """``time.monotonic()`` as the limiters read it (rounded to the nanosecond)."""

@final
class Waiting:
    """One core wait in progress, driven from Python."""

    def poll(self, wake: Callable[[], object]) -> tuple[bool, Any]: ...
    def wait_blocking(self) -> Any: ...
    def cancel(self) -> None: ...
    @property
    def done(self) -> bool: ...

@final
class RateLimiterCore:
    def __new__(cls, count: int, period: float = 1.0, burst: int | None = None) -> RateLimiterCore: ...
    def try_acquire(self, n: int = 1) -> None: ...
    def acquire(self, n: int = 1, max_wait: float | None = None) -> Waiting: ...
    def available(self) -> int: ...
    def waiters(self) -> int: ...
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> int: ...
    def now(self) -> float: ...

@final
class Usage:
    """``used`` of ``limit``; ``str()`` is ``"used/limit"``."""

    used: int
    limit: int
    def __new__(cls, used: int, limit: int) -> Usage: ...

@final
class Limit:
    """One rate limit of a model: a sliding window or a token bucket of requests or tokens.
    Checked when made (``InvalidConfig`` naming ``max``, ``window``, ``slots``, ``per``...)."""

    @staticmethod
    def requests(name: str, max: int, window: float, *, slots: int = 60) -> Limit: ...
    @staticmethod
    def tokens(name: str, max: int, window: float, *, slots: int = 60) -> Limit: ...
    @staticmethod
    def per_day(name: str, counts: _Counts, max: int) -> Limit: ...
    @staticmethod
    def window(name: str, counts: _Counts, max: int, window: float, *, slots: int = 60) -> Limit: ...
    @staticmethod
    def bucket(name: str, counts: _Counts, burst: int, rate: int, per: float = 1.0) -> Limit: ...
    def with_slots(self, slots: int) -> Limit: ...
    @property
    def name(self) -> str: ...
    @property
    def counts(self) -> _Counts: ...
    @property
    def max(self) -> int: ...
    @property
    def kind(self) -> Literal["window", "bucket"]: ...
    @property
    def window_length(self) -> float | None: ...
    @property
    def slots(self) -> int | None: ...
    @property
    def rate(self) -> tuple[int, float] | None: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class LimitUsage:
    """The usage of one rate limit of a model, named as in its config."""

    name: str
    counts: _Counts
    usage: Usage
    configured: int
    learned: int | None

@final
class ModelStats:
    """One model's usage: requests and tokens in the current minute, requests in flight,
    and every rate limit by name (``rpm``, ``tpm``, then the config's ``limits``)."""

    requests: Usage
    tokens: Usage
    active: Usage
    limits: list[LimitUsage]
    cooldown_until: float | None
    quota_exhausted: bool
    quota_reset_at: float | None
    def limit(self, name: str) -> LimitUsage | None: ...
    def as_dict(self) -> dict[str, str]: ...

@final
class Permit:
    """An admitted model request, holding one parallel slot until settled or released."""

    def settle(
        self,
        actual_tokens: int | None = None,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None: ...
    def throttled(
        self, headers: _Headers, body: _Body = None, *, provider: _Provider | None = None
    ) -> FeedbackReport: ...
    def rate_limited(self, retry_after: float) -> Cooldown: ...
    def quota_exhausted(self, reset_after: float | None = None) -> None: ...
    def release(self) -> None: ...
    @property
    def done(self) -> bool: ...
    @property
    def estimated_tokens(self) -> int: ...
    @property
    def admitted_at(self) -> float: ...
    def __enter__(self) -> Permit: ...
    def __exit__(self, exc_type: object, exc: object, traceback: object) -> bool: ...

_ConfigArgs = tuple[int, int, int, list[Limit], bool, float]

@final
class Observed:
    """One limit as a response reported it."""

    quota: _Counts
    window: float | None
    limit: int | None
    remaining: int | None
    remaining_tolerance: int
    reset_after: float | None
    @property
    def remaining_at_least(self) -> int | None: ...
    @property
    def used(self) -> int | None: ...

@final
class Ignored:
    """A header left out of a report, and why."""

    name: str
    reason: Literal[
        "malformed", "unknown", "conflicting", "contradicts", "needs_clock", "unrecognized", "other"
    ]

@final
class HeaderReport:
    """What one response's headers say about the provider's limits."""

    provider: _Provider | None
    observed: list[Observed]
    retry_after: float | None
    ignored: list[Ignored]
    def get(self, quota: str) -> Observed | None: ...

@final
class Throttled:
    """What a 429 means: retry later, never fits, or quota exhausted."""

    kind: Literal["retry_later", "never_fits", "quota_exhausted"]
    retry_after: float | None
    requested: int | None
    limit: int | None
    reset_after: float | None

@final
class Cooldown:
    """A model's admissions paused after a 429, in ``time.monotonic()`` seconds."""

    start: float
    until: float
    extended: bool

@final
class Learned:
    """A limit whose maximum the provider's feedback changed."""

    limit: str
    old_max: int
    new_max: int

@final
class Drained:
    """A limit charged down to the provider's remaining."""

    limit: str
    charged: int

@final
class FeedbackReport:
    """What one piece of provider feedback changed in a model's limits."""

    headers: HeaderReport
    throttled: Throttled | None
    learned: list[Learned]
    drained: list[Drained]
    unmatched: list[_Counts]
    cooldown: Cooldown | None
    quota_exhausted: bool
    quota_reset_at: float | None
    error: Exception | None
    @property
    def changed(self) -> bool: ...

def parse_headers(headers: _Headers, provider: _Provider | None = None) -> HeaderReport:
    """One response's headers as the provider reports its limits."""

def classify_429(
    headers: _Headers, body: _Body = None, provider: _Provider | None = None
) -> Throttled:
    """What a 429 response means."""

@final
class ModelLimiterCore:
    def __new__(
        cls,
        models: list[tuple[str, _ConfigArgs]],
        default: _ConfigArgs | None,
    ) -> ModelLimiterCore: ...
    def try_acquire(self, model: str, estimated_tokens: int, output_tokens: int = 0) -> Permit: ...
    def acquire(
        self,
        model: str,
        estimated_tokens: int,
        output_tokens: int = 0,
        max_wait: float | None = None,
    ) -> Waiting: ...
    def share(self, models: list[str], config: _ConfigArgs) -> None: ...
    def reconfigure(self, model: str, config: _ConfigArgs) -> None: ...
    def observe(
        self, model: str, headers: _Headers, provider: _Provider | str | None = None
    ) -> FeedbackReport: ...
    def observe_429(
        self,
        model: str,
        headers: _Headers,
        body: _Body = None,
        provider: _Provider | str | None = None,
    ) -> FeedbackReport: ...
    def cool_down(self, model: str, retry_after: float) -> Cooldown: ...
    def quota_exhausted(self, model: str, reset_after: float | None = None) -> None: ...
    def resume(self, model: str) -> None: ...
    def learn_limit(
        self, model: str, counts: _Counts, max: int, window: float | None = None
    ) -> list[Learned]: ...
    def drain(
        self,
        model: str,
        counts: _Counts,
        remaining: int,
        reset_after: float,
        window: float | None = None,
    ) -> list[Drained]: ...
    def stats(self) -> dict[str, ModelStats]: ...
    def config(self, model: str) -> _ConfigArgs: ...
    def is_configured(self, model: str) -> bool: ...
    @property
    def strict(self) -> bool: ...

_Key = str | bytes | int | None | tuple[Any, ...]

@final
class KeyedLimiterCore:
    def __new__(
        cls,
        count: int,
        period: float = 1.0,
        burst: int | None = None,
        shards: int | None = None,
        max_keys: int | None = None,
    ) -> KeyedLimiterCore: ...
    def try_acquire(self, key: _Key, n: int = 1) -> None: ...
    def acquire(self, key: _Key, n: int = 1, max_wait: float | None = None) -> Waiting | None: ...
    def available(self, key: _Key) -> int: ...
    def waiters(self, key: _Key) -> int: ...
    def __len__(self) -> int: ...
    def retain_recent(self) -> None: ...
    def shrink_to_fit(self) -> None: ...
    def table_bytes(self) -> int: ...
    @property
    def rate(self) -> float: ...
    @property
    def burst(self) -> int: ...
    @property
    def shards(self) -> int: ...
    @property
    def max_keys(self) -> int | None: ...
    def now(self) -> float: ...

@final
class SeedTicket: ...

@final
class SeedSlot: ...

@final
class SeedBucket:
    def __new__(cls, numerator: int, denominator: int, now: float) -> SeedBucket: ...
    @property
    def capacity(self) -> float: ...
    def reserve(self, now: float) -> tuple[float, SeedTicket]: ...
    def cancel(self, ticket: SeedTicket) -> bool: ...
    allowance: float
    last_check: float

@final
class SeedWindows:
    def __new__(cls, rpm: int, tpm: int) -> SeedWindows: ...
    def requests(self, now: float) -> int: ...
    def tokens(self, now: float) -> int: ...
    def token_entries(self, now: float) -> int: ...
    def record_request(self, now: float) -> None: ...
    def record_tokens(self, n: int, now: float) -> None: ...
    def rpm_wait(self, now: float) -> float: ...
    def tpm_wait(self, estimated: int, now: float) -> float: ...
    def try_admit(self, estimated: int, now: float) -> tuple[float, SeedSlot | None]: ...
    def settle(self, slot: SeedSlot, actual: int, now: float) -> None: ...
    def clear_requests(self) -> None: ...
    def clear_tokens(self) -> None: ...
