"""Feedback end to end over real HTTP on 127.0.0.1: a strict mock provider whose quota a
neighbour has just used up answers 429 with ``retry-after-ms``; clients in threads send their
requests through the model limiter and hand each 429 to ``permit.throttled``. Once the first
429 is back, no request is admitted before the cooldown ends (the next waiter does not walk
into the same wall), only those already in flight are refused, and every request succeeds in
the end."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tollgate import ModelRateLimiter, RateLimitConfig

BLOCKED_FOR = 0.3  # seconds the neighbour's burst leaves the quota empty
RETRY_AFTER_MS = 300


class Provider:
    """The mock's state: when it starts admitting again, and every arrival."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open_at = 0.0
        self.arrivals: list[tuple[float, int]] = []  # (monotonic, status)


@pytest.fixture
def provider() -> Iterator[tuple[Provider, str]]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            self.rfile.read(int(self.headers.get("content-length", 0)))
            now = time.monotonic()
            with state.lock:
                refused = now < state.open_at
                state.arrivals.append((now, 429 if refused else 200))
            if refused:
                body = json.dumps({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})
                self.send_response(429)
                self.send_header("retry-after-ms", str(RETRY_AFTER_MS))
            else:
                body = json.dumps({"usage": {"total_tokens": 9}})
                self.send_response(200)
            self.send_header("x-ratelimit-limit-requests", "1000")
            self.send_header("x-ratelimit-remaining-requests", "900")
            self.send_header("x-ratelimit-reset-requests", "6s")
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/v1/chat"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def call(url: str) -> tuple[int, list[tuple[str, str]], bytes]:
    request = urllib.request.Request(url, data=b"{}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.getheaders(), response.read()
    except urllib.error.HTTPError as error:
        return error.code, list(error.headers.items()), error.read()


def test_one_429_pauses_every_client_until_the_cooldown_ends(
    provider: tuple[Provider, str],
) -> None:
    state, url = provider
    lim = ModelRateLimiter({"gpt-4o": RateLimitConfig(rpm=1_000, tpm=100_000, max_parallel_requests=4)})
    cooldowns: list[tuple[float, float]] = []
    admitted: list[float] = []
    done: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        for _ in range(20):  # bounded: never a retry loop without end
            with lim.acquire_blocking("gpt-4o", 10, max_wait=5) as permit:
                with lock:
                    admitted.append(permit.admitted_at)
                status, headers, body = call(url)
                if status == 429:
                    report = permit.throttled(headers, body)
                    assert report.cooldown is not None and report.error is None
                    with lock:
                        cooldowns.append((report.cooldown.start, report.cooldown.until))
                    continue
                lim.observe("gpt-4o", headers)
                permit.settle(json.loads(body)["usage"]["total_tokens"])
                with lock:
                    done.append(i)
                return

    # The neighbour got in first: the provider's quota is empty for a while.
    state.open_at = time.monotonic() + BLOCKED_FOR
    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
        assert not t.is_alive()

    assert sorted(done) == list(range(12))
    refused = [at for at, status in state.arrivals if status == 429]
    assert refused and cooldowns
    # Only the requests already in flight when the first 429 came back (one per parallel
    # slot) are refused: nobody walks into the same wall after it.
    assert len(refused) <= 4, refused
    for start, until in cooldowns:
        inside = [at for at in admitted if start < at < until]
        assert not inside, (start, until, inside)
    stats = lim.stats()["gpt-4o"]
    assert stats.active.used == 0
    assert stats.tokens.used >= 12 * 9  # the settled calls (the drains of observe may add more)
