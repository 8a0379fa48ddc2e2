"""Driving a core wait from Python: asyncio sleeps and wake-ups, or the calling thread.

The core says *when* (a delay) or *on what* (a wake-up); this module waits with
``asyncio.sleep`` looked up at call time and gives the wait back to the core, which frees its
queue place, slot and reservation, when the task is cancelled.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from ._tollgate import Waiting


def _wake(future: asyncio.Future[None]) -> None:
    # A stale wake-up (from an earlier poll) may arrive after the future was used.
    if not future.done():
        future.set_result(None)


def _notify(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    # Called by the core from any thread. A loop that has closed meanwhile has nobody left
    # to wake.
    try:
        loop.call_soon_threadsafe(_wake, future)
    except RuntimeError:
        pass


async def _sleep_or_wake(delay: float, woken: asyncio.Future[None]) -> None:
    # Sleep until the deadline, but stop early when the core wakes us (a refund made room).
    sleeper = asyncio.ensure_future(asyncio.sleep(delay))
    try:
        await asyncio.wait((sleeper, woken), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not sleeper.done():
            sleeper.cancel()


async def drive(waiting: Waiting) -> Any:
    """Polls ``waiting`` to completion on the running loop; cancels it on any exception."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            done, value = waiting.poll(functools.partial(_notify, loop, woken))
            if done:
                return value
            if value is None:
                await woken
            elif value > 0:
                await _sleep_or_wake(value, woken)
            else:
                await asyncio.sleep(0)
    except BaseException:
        waiting.cancel()
        raise
