"""The built-in tools (calculator, clock, session memory, http_fetch), called the way the turn
loop calls them."""

from __future__ import annotations

import calendar
import functools
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.tools import registry
from agents.tools.base import ToolContext, ToolError
from tests.agents.tools.calling import call
from tests.support import wait_until


def calculate(expression: str, ctx: ToolContext):
    return call("calculator", {"expression": expression}, ctx)


# --- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "content"),
    [
        ("2 + 3 * 4", "14"),
        ("(2 + 3) * sqrt(16)", "20"),
        ("7 / 2", "3.5"),
        ("7 // 2 + 7 % 2", "4"),
        ("-2 ** 10", "-1024"),
        ("round(pi, 2)", "3.14"),
        ("max(1, floor(2.7), ceil(1.2)) + abs(-1)", "3"),
        ("log(8, 2)", "3"),
    ],
)
def test_calculator_evaluates_arithmetic(ctx, expression, content):
    result = calculate(expression, ctx)

    assert (result.ok, result.content) == (True, content)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("(1).__class__", "Attribute is not allowed"),
        ("x + 1", "unknown name 'x'"),
        ("'a' * 3", "Constant is not allowed"),
        ("[n for n in (1, 2)]", "ListComp is not allowed"),
        ("1 / 0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("9**9**9", "exponents larger than 1000"),
        ("(10**1000)**1000", "too large"),
        ("sqrt(-1)", "cannot compute"),
        ("1 +", "not a valid arithmetic expression"),
        ("1" + "+1" * 300, "longer than 500 characters"),
    ],
)
def test_calculator_refuses_what_is_not_safe_arithmetic(ctx, expression, message):
    started = time.monotonic()
    result = calculate(expression, ctx)

    assert result.error_code == "tool_error"
    assert message in result.content
    assert time.monotonic() - started < 0.5


class Ticker:
    """A second thread noting the time every millisecond, as a worker's heartbeat and lease
    keeper would: if an evaluation holds the interpreter, the ticks stop."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        while not self._stopping.wait(0.001):
            self.ticks.append(time.monotonic())

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: self.ticks, timeout=10, message="the ticker to start")

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def longest_pause_between(self, started: float, ended: float) -> float:
        """The longest time without a tick from the last tick before `started` to the first
        tick after `ended`."""
        wait_until(lambda: self.ticks[-1] > ended, timeout=10, message="the ticker to tick")
        ticks = list(self.ticks)
        first = max(i for i, tick in enumerate(ticks) if tick <= started)
        last = next(i for i, tick in enumerate(ticks) if tick > ended)
        return max(ticks[i + 1] - ticks[i] for i in range(first, last))


@pytest.fixture
def ticker() -> Iterator[Ticker]:
    ticker = Ticker()
    ticker.start()
    yield ticker
    ticker.stop()


BIG = "(2**999)**4"  # 3996 bits, just under the integer cap


@pytest.mark.parametrize(
    ("expression", "outcome"),
    [
        ("9**9**9", "exponents larger than 1000"),
        ("9**9**9**9", "exponents larger than 1000"),
        ("(10**300)**(10**3)", "too large"),
        ("10 ** -10**6", "exponents larger than 1000"),
        ("2 ** 0.5 ** -1000", "exponents larger than 1000"),
        ("(-1) ** 1000", 1),
        ("2**999 * 2**999 * 2**999 * 2**999 * 2**999", "too large"),
        (f"{BIG} * {BIG}", "too large"),
        (f"({BIG}) ** 2", "too large"),
        ("floor(1e308) ** 5", "too large"),
        ("round(5, -10**7)", "round() to more than 1234 digits"),
        ("round(5, -10**4 * 10**4)", "round() to more than 1234 digits"),
        ("round(5, 10**8)", "round() to more than 1234 digits"),
        ("round(2.5, -10**300)", "round() to more than 1234 digits"),
        ("round(1e308, 10**9)", "round() to more than 1234 digits"),
        (f"round({BIG}, -1234)", 0),
        ("10.0 ** 400", "too large"),
        ("1e308 * 10", "not a finite number"),
        ("1e308 / 1e-308", "not a finite number"),
        (f"{BIG} / 3", "too large"),
        (f"sqrt({BIG})", "too large"),
        (f"{BIG} % 7", 1),
        (f"{BIG} // 3**600", 2**3996 // 3**600),
        (f"log({BIG}, 1)", "division by zero"),
        (f"max({', '.join([BIG] * 20)}) - {BIG}", 0),
        ("9" * 499, int("9" * 499)),
        (f"{BIG} + 0", 2**3996),
        ("1 << 10**9", "BinOp is not allowed"),
        ("1 < 2 < 3", "Compare is not allowed"),
        ("'9' * 10**9", "Constant is not allowed"),
        ("(-8) ** 0.5", "not a real number"),
        ("(" * 249 + "1" + ")" * 249, "not a valid arithmetic expression"),
        ("(" * 99 + "1" + ")" * 99, 1),
        ("-" * 499 + "1", -1),
        ("1" + "+1" * 249, 250),
        ("1" + "**1" * 166, 1),
        ("1" * 501, "longer than 500 characters"),
    ],
)
def test_a_hostile_expression_is_answered_or_refused_at_once_without_stalling_the_process(
    ctx, ticker, expression, outcome
):
    calculator = registry.get("calculator")
    cpu_started, started = time.thread_time(), time.monotonic()
    try:
        answer: Any = calculator.run({"expression": expression}, ctx)
        json.dumps(answer)  # what the registry does with it: a huge integer would cost here too
    except ToolError as exc:
        answer = str(exc)
    cpu_seconds, ended = time.thread_time() - cpu_started, time.monotonic()

    assert ticker.longest_pause_between(started, ended) < 1.0
    # CPU time of this thread, so a loaded machine cannot make it flaky.
    assert cpu_seconds < 0.1
    if isinstance(outcome, str):
        assert isinstance(answer, str) and outcome in answer
    else:
        assert answer == outcome


# --- current_time -------------------------------------------------------------------------


def test_current_time_in_a_named_zone(ctx):
    result = call("current_time", {"timezone": "Asia/Tokyo"}, ctx)

    value = json.loads(result.content)
    assert value["timezone"] == "Asia/Tokyo"
    assert value["time"].endswith("+09:00")
    assert value["weekday"] in calendar.day_name


def test_current_time_defaults_to_utc(ctx):
    assert json.loads(call("current_time", {}, ctx).content)["timezone"] == "UTC"


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "America", "../etc/passwd", "a" * 300])
def test_current_time_with_an_unknown_zone_is_a_tool_error(ctx, zone):
    result = call("current_time", {"timezone": zone}, ctx)

    assert result.error_code == "tool_error"
    assert "unknown timezone" in result.content


# --- session_memory -----------------------------------------------------------------------


def memory(ctx: ToolContext, **args: Any) -> Any:
    result = call("session_memory", args, ctx)
    assert result.ok, result.content
    return json.loads(result.content)


def test_session_memory_sets_gets_lists_and_deletes(ctx):
    memory(ctx, action="set", key="city", value={"name": "Lyon"})
    memory(ctx, action="set", key="nothing", value=None)

    city = memory(ctx, action="get", key="city")
    assert (city["value"], city["found"]) == ({"name": "Lyon"}, True)
    assert memory(ctx, action="get", key="nothing")["found"] is True
    assert memory(ctx, action="list") == {"keys": ["city", "nothing"]}
    assert memory(ctx, action="delete", key="city") == {"key": "city", "deleted": True}
    assert memory(ctx, action="get", key="city") == {"key": "city", "value": None, "found": False}


@pytest.mark.parametrize(
    "args",
    [
        {"action": "get"},
        {"action": "set", "key": "", "value": 1},
        {"action": "set", "key": "k" * 201, "value": 1},
        {"action": "set", "key": "big", "value": "x" * 17_000},
        {"action": "set", "key": "no value"},
    ],
)
def test_session_memory_refuses_bad_keys_and_values(ctx, args):
    result = call("session_memory", args, ctx)

    assert result.error_code == "tool_error"
    assert ctx.memory.items() == {}


def test_session_memory_refuses_an_unknown_action(ctx):
    assert call("session_memory", {"action": "drop"}, ctx).error_code == "invalid_arguments"


# --- http_fetch ---------------------------------------------------------------------------


@functools.cache
def gzip_bomb() -> bytes:
    """100 MB of zeros in about 100 KB of gzip."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    megabyte = b"\0" * 1_000_000
    return b"".join(compressor.compress(megabyte) for _ in range(100)) + compressor.flush()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.partition("?to=")[2])
            self.end_headers()
            return
        if self.path == "/gzip-bomb":
            # Sent compressed although the client asked for identity.
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(gzip_bomb())))
            self.end_headers()
            self.wfile.write(gzip_bomb())
            return
        bodies = {"/big": b"x" * 5000, "/host": self.headers["Host"].encode()}
        body = bodies.get(self.path, b"hello from the test server")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def fetch(ctx: ToolContext, url: str, **args: Any):
    return call("http_fetch", {"url": url, **args}, ctx)


def test_http_fetch_refuses_a_loopback_address_by_default(ctx, server_port):
    result = fetch(ctx, f"http://127.0.0.1:{server_port}/")

    assert result.error_code == "tool_error"
    assert "host '127.0.0.1' does not resolve to a public address" in result.content


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",  # 127.0.0.1 as one number
    ],
)
def test_http_fetch_refuses_non_public_addresses(ctx, url):
    result = fetch(ctx, url)

    assert result.error_code == "tool_error"
    assert "does not resolve to a public address" in result.content


def test_http_fetch_refuses_other_schemes(ctx):
    result = fetch(ctx, "file:///etc/passwd")

    assert result.error_code == "tool_error"
    assert "only http:// and https://" in result.content


def test_http_fetch_reads_a_private_address_when_allowed(ctx, server_port, settings):
    settings.TOOLS_HTTP_ALLOW_PRIVATE = True
    result = fetch(ctx, f"http://127.0.0.1:{server_port}/")

    assert result.ok, result.content
    assert json.loads(result.content) == {
        "url": f"http://127.0.0.1:{server_port}/",
        "status": 200,
        "content_type": "text/plain; charset=utf-8",
        "body": "hello from the test server",
        "truncated": False,
    }


def test_http_fetch_connects_to_the_checked_address_but_sends_the_host_name(
    ctx, server_port, settings
):
    settings.TOOLS_HTTP_ALLOW_PRIVATE = True
    result = fetch(ctx, f"http://localhost:{server_port}/host")

    assert json.loads(result.content)["body"] == f"localhost:{server_port}"


def test_http_fetch_cuts_the_body_at_the_size_limit(ctx, server_port, settings):
    settings.TOOLS_HTTP_ALLOW_PRIVATE = True
    settings.TOOLS_HTTP_MAX_BYTES = 1000

    capped_by_settings = json.loads(fetch(ctx, f"http://127.0.0.1:{server_port}/big").content)
    capped_by_call = json.loads(
        fetch(ctx, f"http://127.0.0.1:{server_port}/big", max_bytes=10).content
    )

    assert (len(capped_by_settings["body"]), capped_by_settings["truncated"]) == (1000, True)
    assert (capped_by_call["body"], capped_by_call["truncated"]) == ("x" * 10, True)


def test_http_fetch_caps_a_gzip_bomb_as_it_decodes_it(ctx, server_port, settings):
    settings.TOOLS_HTTP_ALLOW_PRIVATE = True
    tracemalloc.start()
    try:
        result = fetch(ctx, f"http://127.0.0.1:{server_port}/gzip-bomb", max_bytes=1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.ok, result.content
    fetched = json.loads(result.content)
    assert (fetched["body"], fetched["truncated"]) == ("\0" * 1000, True)
    # Decoding a whole network read of it at once would take tens of megabytes.
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB"


def test_http_fetch_follows_redirects_between_allowed_hosts(ctx, server_port, settings):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["localhost"]
    target = f"http://localhost:{server_port}/"
    result = fetch(ctx, f"http://localhost:{server_port}/redirect?to={target}")

    assert result.ok, result.content
    assert json.loads(result.content)["url"] == target


def test_http_fetch_refuses_a_redirect_from_an_allowed_host_to_a_private_address(
    ctx, server_port, settings
):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["localhost"]
    target = f"http://127.0.0.1:{server_port}/"
    result = fetch(ctx, f"http://localhost:{server_port}/redirect?to={target}")

    assert result.error_code == "tool_error"
    assert "host '127.0.0.1' does not resolve to a public address" in result.content


def test_http_fetch_stops_after_five_redirects(ctx, server_port, settings):
    settings.TOOLS_HTTP_ALLOWED_HOSTS = ["localhost"]
    url = f"http://localhost:{server_port}/"
    for _ in range(6):
        url = f"http://localhost:{server_port}/redirect?to={url}"

    result = fetch(ctx, url)

    assert result.error_code == "tool_error"
    assert "more than 5 redirects" in result.content


def test_http_fetch_reports_a_refused_connection_as_a_tool_error(ctx, settings):
    settings.TOOLS_HTTP_ALLOW_PRIVATE = True
    result = fetch(ctx, "http://127.0.0.1:1/")

    assert result.error_code == "tool_error"
    assert "could not fetch" in result.content
