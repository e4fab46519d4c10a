"""A fake Slack Web API and Discord API on loopback, for tests: records every request.

    with FakeChannelApi() as api:
        settings.SLACK_API_BASE_URL = api.slack_url      # .../slack/api
        settings.DISCORD_API_BASE_URL = api.discord_url  # .../discord/api/v10
        api.fail(path=r"chat\\.postMessage", status=429, headers={"Retry-After": "1"})
        ...
        api.wait_for(lambda r: r.path.endswith("chat.postMessage"))

Slack methods answer `{"ok": true, "ts": ...}`; Discord's PATCH of `@original` and a bot's
`POST /channels/{id}/messages` answer 200 with a message object, other Discord calls 204
(200 with `?wait=true`). A scripted failure answers instead, `times` times.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SLACK_PREFIX = "/slack/api"
DISCORD_PREFIX = "/discord/api/v10"


@dataclass
class Request:
    method: str
    path: str  # without the /slack/api or /discord/api/v10 prefix
    api: str  # "slack" | "discord"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    json: object
    status: int = 0  # what the fake answered
    at: float = field(default_factory=time.time)


@dataclass
class _Failure:
    path: re.Pattern
    method: str | None
    status: int
    headers: dict[str, str]
    body: object
    times: int
    after: int


class FakeChannelApi:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._address = (host, port)
        self._lock = threading.Condition()
        self._records: list[Request] = []
        self._failures: list[_Failure] = []
        self._numbers = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeChannelApi:
        self._httpd = _HTTPServer(self._address, _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-channel-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeChannelApi:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def slack_url(self) -> str:
        return self.url + SLACK_PREFIX

    @property
    def discord_url(self) -> str:
        return self.url + DISCORD_PREFIX

    # -- scripting and reading ---------------------------------------------------------

    def fail(
        self,
        *,
        path: str = ".*",
        method: str | None = None,
        status: int = 500,
        headers: dict[str, str] | None = None,
        body: object = None,
        times: int = 1,
        after: int = 0,
    ) -> FakeChannelApi:
        """Answer `times` requests whose path matches (a regex search) with `status`,
        after letting `after` of them through (counted from now)."""
        if body is None:
            body = {"ok": False, "error": "ratelimited" if status == 429 else "fake_error"}
        with self._lock:
            self._failures.append(
                _Failure(re.compile(path), method, status, dict(headers or {}), body, times, after)
            )
        return self

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._failures.clear()

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._records)

    def wait_for(
        self, match: Callable[[Request], bool], count: int = 1, timeout: float = 20.0
    ) -> list[Request]:
        """The matching requests once there are `count`; TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(found := [r for r in self._records if match(r)]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} matching requests, got {len(found)} "
                        f"of {[(r.method, r.path) for r in self._records]}"
                    )
                self._lock.wait(remaining)
            return found

    # -- serving -----------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        split = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        if split.path.startswith(SLACK_PREFIX):
            api, path = "slack", split.path[len(SLACK_PREFIX) :]
        elif split.path.startswith(DISCORD_PREFIX):
            api, path = "discord", split.path[len(DISCORD_PREFIX) :]
        else:
            return _send(handler, 404, {"error": f"no route for {split.path}"})
        record = Request(
            method=handler.command,
            path=path,
            api=api,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in handler.headers.items()},
            json=body,
        )
        with self._lock:
            failure = self._take_failure(record)
        if failure is not None:
            status, answer, headers = failure.status, failure.body, failure.headers
        else:
            status, answer = self._answer(record)
            headers = {}
        record.status = status
        with self._lock:
            self._records.append(record)
            self._lock.notify_all()
        _send(handler, status, answer, headers)

    def _take_failure(self, record: Request) -> _Failure | None:
        """The first scripted failure due for this request. Every matching failure counts
        the request against its `after`, so failures scripted together fire in order."""
        due = None
        for failure in list(self._failures):
            if not failure.path.search(record.path) or failure.method not in (None, record.method):
                continue
            if failure.after > 0:
                failure.after -= 1
            elif due is None:
                due = failure
        if due is not None:
            due.times -= 1
            if due.times <= 0:
                self._failures.remove(due)
        return due

    def _answer(self, record: Request) -> tuple[int, object]:
        number = next(self._numbers)
        body = record.json if isinstance(record.json, dict) else {}
        if record.api == "slack":
            ts = f"{int(time.time())}.{number:06d}"
            return 200, {"ok": True, "channel": body.get("channel"), "ts": ts}
        message = {"id": str(number), "content": body.get("content", "")}
        creates = record.method == "POST" and record.path.startswith("/channels/")
        if creates or record.method == "PATCH" or record.query.get("wait") == ["true"]:
            return 200, message
        return 204, None


def _send(handler: BaseHTTPRequestHandler, status: int, body: object, headers=None) -> None:
    raw = b"" if body is None else json.dumps(body).encode()
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if body is not None:
        handler.send_header("Content-Type", "application/json")
    if status != 204:  # a 204 has no body, so no length either
        handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    with contextlib.suppress(OSError):
        handler.wfile.write(raw)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    do_PATCH = do_PUT = do_DELETE = do_GET = do_POST

    def log_message(self, format: str, *args: object) -> None:
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeChannelApi
