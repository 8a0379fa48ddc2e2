"""The seed's per-model limiter for LLM APIs (RPM, TPM, parallel requests), on the tollgate
core's sliding windows.

Same names and shapes as the seed (``ModelRateLimiter``, ``RateLimitConfig``,
``RateLimitContext``, ``ModelRateLimitTracker``, the module constants), with its bugs fixed:

- an estimate above ``tpm`` fails at once (``tollgate.InsufficientCapacity``, a ValueError);
- tokens are reserved at admission and settled by ``release`` (concurrent calls cannot
  overrun TPM together);
- no 100-entry history cap: the windows count every token, in constant memory;
- a task cancelled while waiting gives its parallel slot back;
- waiters are admitted first come, first served; a wait may exceed 60 s by less than one
  slot (one second) of the conservative window.

Time is ``time.monotonic()``, sleeps are ``asyncio.sleep``, both looked up at call time.
"""

import asyncio
import logging
import time
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from tollgate._tollgate import SeedWindows
from tollgate.errors import InsufficientCapacity

# Module-level constants (the seed's names and values).
RATE_LIMIT_BUFFER_SECONDS = 0.1  # kept for importers; the core's waits need no buffer
TOKEN_HISTORY_MAX_SIZE = 100  # kept for importers; the token history is no longer capped
DEFAULT_ESTIMATED_TOKENS = 5000  # a reasonable default for LLM APIs
TIME_WINDOW_SECONDS = 60  # the rate-limit window (one minute)

logger = logging.getLogger(__name__)


@dataclass
class RateLimitConfig:
    """Limits of one model: requests and tokens per minute, requests in flight."""

    rpm: int = 10
    tpm: int = 200000
    max_parallel_requests: int = 5


class TimeWindowQueue:
    """A time-stamped queue of ``(datetime, value)`` entries over a sliding window.

    Deprecated: the limiter no longer uses it (the tollgate core counts in fixed memory);
    it is kept for code that imports it.
    """

    def __init__(self, window_seconds: int = TIME_WINDOW_SECONDS):
        """An empty queue whose entries expire after ``window_seconds``."""
        warnings.warn(
            "TimeWindowQueue is deprecated and unused by the limiter",
            DeprecationWarning,
            stacklevel=2,
        )
        self.queue: deque = deque()
        self.window_seconds = window_seconds

    def add(self, value=None) -> None:
        """Appends ``value`` stamped with the current time."""
        self.queue.append((datetime.now(), value))

    def clean(self) -> None:
        """Drops the entries that are older than the window."""
        oldest_kept = datetime.now() - timedelta(seconds=self.window_seconds)
        entries = self.queue
        while entries and entries[0][0] < oldest_kept:
            entries.popleft()

    def count(self) -> int:
        """How many entries are inside the window."""
        self.clean()
        return len(self.queue)

    def sum_values(self) -> int:
        """The sum of the (non-None) values inside the window."""
        self.clean()
        return sum(v for _, v in self.queue if v is not None)

    def get_oldest_time(self) -> datetime | None:
        """The time stamp of the oldest entry, or None when empty."""
        if not self.queue:
            return None
        return self.queue[0][0]

    def limit_size(self, max_size: int) -> None:
        """Drops the oldest entries until at most ``max_size`` are left."""
        while len(self.queue) > max_size:
            self.queue.popleft()


class _WindowEntries:
    """The ``.queue`` of a tracker's window view: its length and ``clear()``."""

    def __init__(self, count, clear):
        self._count = count
        self._clear = clear

    def __len__(self) -> int:
        return self._count()

    def __bool__(self) -> bool:
        return self._count() > 0

    def clear(self) -> None:
        """Forgets everything counted in the window."""
        self._clear()


class _WindowView:
    """A seed-shaped view (``queue``, ``count()``, ``sum_values()``) of one core window."""

    def __init__(self, count, total, clear):
        self.window_seconds = TIME_WINDOW_SECONDS
        self.queue = _WindowEntries(count, clear)
        self._total = total

    def count(self) -> int:
        """Entries in the window."""
        return len(self.queue)

    def sum_values(self) -> int:
        """The total counted in the window."""
        return self._total()


class ModelRateLimitTracker:
    """One model's state: its RPM/TPM windows (in the core), its parallel slots and line."""

    def __init__(self, config: RateLimitConfig):
        """Fresh state under ``config``."""
        self.config = config
        windows = SeedWindows(config.rpm, config.tpm)
        self._windows = windows
        self.request_times = _WindowView(
            lambda: windows.requests(time.monotonic()),
            lambda: windows.requests(time.monotonic()),
            windows.clear_requests,
        )
        self.token_usage = _WindowView(
            lambda: windows.token_entries(time.monotonic()),
            lambda: windows.tokens(time.monotonic()),
            windows.clear_tokens,
        )
        self.active_requests = 0
        self.semaphore = asyncio.Semaphore(config.max_parallel_requests)
        self.lock = asyncio.Lock()
        # Window slots of admitted bare `acquire`s, oldest first, for `release` to settle.
        self._admitted: deque = deque()

    def get_current_requests(self) -> int:
        """Requests counted in the current window."""
        return self._windows.requests(time.monotonic())

    def get_current_tokens(self) -> int:
        """Tokens counted in the current window: reserved estimates and settled counts."""
        return self._windows.tokens(time.monotonic())

    def calculate_rpm_wait_time(self) -> float:
        """Seconds until one more request fits the RPM window (0.0 if it fits now)."""
        return self._windows.rpm_wait(time.monotonic())

    def calculate_tpm_wait_time(self, estimated_tokens: int) -> float:
        """Seconds until ``estimated_tokens`` more fit the TPM window (0.0 if they fit).

        Raises:
            tollgate.InsufficientCapacity: if the estimate exceeds ``tpm`` (never fits).
        """
        return self._windows.tpm_wait(estimated_tokens, time.monotonic())

    def record_request(self) -> None:
        """Counts one request now, whether it fits or not."""
        self._windows.record_request(time.monotonic())

    def record_tokens(self, token_count: int) -> None:
        """Counts ``token_count`` tokens now, whether they fit or not."""
        self._windows.record_tokens(token_count, time.monotonic())

    def get_stats(self) -> dict[str, str]:
        """``{"requests": "used/rpm", "tokens": "used/tpm", "active": "n/max"}``."""
        return {
            "requests": f"{self.get_current_requests()}/{self.config.rpm}",
            "tokens": f"{self.get_current_tokens()}/{self.config.tpm}",
            "active": f"{self.active_requests}/{self.config.max_parallel_requests}",
        }

    def _log_wait(self, model_name: str, estimated_tokens: int, now: float) -> None:
        rpm_wait = self._windows.rpm_wait(now)
        if rpm_wait > 0:
            logger.info(
                f"⏳ [{model_name}] RPM limit reached: {self.get_current_requests()}/"
                f"{self.config.rpm} requests. Waiting {rpm_wait:.1f}s..."
            )
        tpm_wait = self._windows.tpm_wait(estimated_tokens, now)
        if tpm_wait > 0:
            logger.info(
                f"⏳ [{model_name}] TPM limit reached: {self.get_current_tokens()}/"
                f"{self.config.tpm} tokens. Waiting {tpm_wait:.1f}s..."
            )

    async def wait_for_limits(self, model_name: str, estimated_tokens: int) -> None:
        """Sleeps until one more request of ``estimated_tokens`` fits both windows (without
        counting it). Meant to be called holding ``self.lock``.

        Raises:
            tollgate.InsufficientCapacity: at once if the estimate exceeds ``tpm``.
        """
        while True:
            now = time.monotonic()
            wait = max(
                self._windows.rpm_wait(now),
                self._windows.tpm_wait(estimated_tokens, now),
            )
            if wait <= 0:
                return
            self._log_wait(model_name, estimated_tokens, now)
            await asyncio.sleep(wait)

    async def _admit(self, model_name: str, estimated_tokens: int):
        """Waits for room, then counts the request and reserves its estimate in one step."""
        while True:
            now = time.monotonic()
            wait, slot = self._windows.try_admit(estimated_tokens, now)
            if slot is not None:
                return slot
            self._log_wait(model_name, estimated_tokens, now)
            await asyncio.sleep(wait)


class ModelRateLimiter:
    """Rate limits per model: RPM, TPM and parallel requests, each model independent.

    >>> limiter = ModelRateLimiter(
    ...     model_configs={"gpt-4": {"rpm": 500, "tpm": 40000, "max_parallel_requests": 10}},
    ...     default_config={"rpm": 10, "tpm": 200000, "max_parallel_requests": 5},
    ... )
    """

    def __init__(
        self,
        model_configs: dict[str, dict] | None = None,
        default_config: dict | None = None,
    ):
        """Per-model configs (dicts of ``RateLimitConfig`` fields, missing ones defaulted)
        and a default for every other model."""
        self.model_configs = self._parse_configs(model_configs or {})
        self.default_config = self._parse_config(default_config)
        self.trackers: dict[str, ModelRateLimitTracker] = {}
        logger.debug(
            f"ModelRateLimiter initialized with {len(self.model_configs)} model configs"
        )

    def _parse_config(self, config: dict | None) -> RateLimitConfig:
        """A ``RateLimitConfig`` from a dict (``None``: the defaults)."""
        if config is None:
            return RateLimitConfig()
        return RateLimitConfig(**config)

    def _parse_configs(self, configs: dict[str, dict]) -> dict[str, RateLimitConfig]:
        """``_parse_config`` for each model."""
        return {name: self._parse_config(c) for name, c in configs.items()}

    def _get_tracker(self, model_name: str) -> ModelRateLimitTracker:
        """The model's tracker, created on first use."""
        tracker = self.trackers.get(model_name)
        if tracker is None:
            config = self.model_configs.get(model_name, self.default_config)
            tracker = ModelRateLimitTracker(config)
            self.trackers[model_name] = tracker
            logger.debug(
                f"Created tracker for '{model_name}': RPM={config.rpm}, "
                f"TPM={config.tpm}, Max Parallel={config.max_parallel_requests}"
            )
        return tracker

    async def _acquire_slot(self, model_name: str, estimated_tokens: int):
        """Admits one request and returns its window slot; on cancellation or error nothing
        stays taken."""
        tracker = self._get_tracker(model_name)
        if estimated_tokens > tracker.config.tpm:
            raise InsufficientCapacity(
                f"estimated_tokens={estimated_tokens} exceeds the TPM limit of "
                f"{tracker.config.tpm} for '{model_name}' and can never be admitted",
                estimated_tokens,
                tracker.config.tpm,
            )
        if tracker.active_requests >= tracker.config.max_parallel_requests:
            logger.info(
                f"⏳ [{model_name}] Max parallel requests reached: "
                f"{tracker.active_requests}/{tracker.config.max_parallel_requests}. "
                f"Waiting for available slot..."
            )
        await tracker.semaphore.acquire()
        try:
            async with tracker.lock:
                tracker.active_requests += 1
                logger.debug(
                    f"🔄 [{model_name}] Request acquired. Active: "
                    f"{tracker.active_requests}/{tracker.config.max_parallel_requests}"
                )
                try:
                    return await tracker._admit(model_name, estimated_tokens)
                except BaseException:
                    tracker.active_requests -= 1
                    raise
        except BaseException:
            tracker.semaphore.release()
            raise

    def _finish(self, model_name: str, slot, token_count: int) -> None:
        """Settles an admitted request and frees its parallel slot."""
        tracker = self._get_tracker(model_name)
        tracker._windows.settle(slot, token_count, time.monotonic())
        tracker.active_requests -= 1
        tracker.semaphore.release()
        logger.debug(
            f"✅ [{model_name}] Request completed. Active: "
            f"{tracker.active_requests}/{tracker.config.max_parallel_requests}"
        )

    async def acquire(
        self, model_name: str, estimated_tokens: int = DEFAULT_ESTIMATED_TOKENS
    ) -> None:
        """Waits for a parallel slot, then for RPM and TPM room; counts the request and
        reserves ``estimated_tokens``. Pair it with :meth:`release`.

        Raises:
            tollgate.InsufficientCapacity: at once if the estimate exceeds ``tpm``.
        """
        slot = await self._acquire_slot(model_name, estimated_tokens)
        self._get_tracker(model_name)._admitted.append(slot)

    async def release(
        self, model_name: str, token_count: int = DEFAULT_ESTIMATED_TOKENS
    ) -> None:
        """Ends the model's oldest outstanding :meth:`acquire`: settles its reserved
        estimate to ``token_count`` and frees its slot. Without one, does nothing."""
        tracker = self._get_tracker(model_name)
        if not tracker._admitted:
            return
        self._finish(model_name, tracker._admitted.popleft(), token_count)

    def get_stats(self) -> dict[str, dict[str, str]]:
        """Statistics strings for every configured model and every model used so far."""
        names = set(self.trackers) | set(self.model_configs)
        return {name: self._get_tracker(name).get_stats() for name in names}


class RateLimitContext:
    """``async with RateLimitContext(limiter, model, estimated, actual):`` acquires on
    entry and releases (settling ``actual_tokens``) on exit, also on errors and
    cancellation. It holds its own admission, so it settles its own request."""

    def __init__(
        self,
        rate_limiter: ModelRateLimiter,
        model_name: str,
        estimated_tokens: int = DEFAULT_ESTIMATED_TOKENS,
        actual_tokens: int = DEFAULT_ESTIMATED_TOKENS,
    ):
        """Remembers what to acquire; nothing is taken until entry."""
        self.rate_limiter = rate_limiter
        self.model_name = model_name
        self.estimated_tokens = estimated_tokens
        self.actual_tokens = actual_tokens
        self._slot = None

    async def __aenter__(self):
        """Acquires (waiting as needed) and returns the context."""
        limiter = self.rate_limiter
        if isinstance(limiter, ModelRateLimiter):
            self._slot = await limiter._acquire_slot(self.model_name, self.estimated_tokens)
        else:  # some other limiter with the seed's interface
            await limiter.acquire(self.model_name, self.estimated_tokens)
        return self

    async def __aexit__(self, exc_type, exc_val, exc_tb):
        """Releases, settling ``actual_tokens``; never swallows the exception."""
        slot, self._slot = self._slot, None
        if slot is not None:
            self.rate_limiter._finish(self.model_name, slot, self.actual_tokens)
        elif not isinstance(self.rate_limiter, ModelRateLimiter):
            await self.rate_limiter.release(self.model_name, self.actual_tokens)
        return False
