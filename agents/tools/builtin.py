"""The tools every install has: clock, calculator, guarded HTTP fetch and session memory.

Each is one class; `agents/tools/__init__.py` registers them.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from django.conf import settings

from beamclaw.outbound import AddressPolicy, AddressRefused, UnsupportedEncoding, iter_body

from .base import Tool, ToolContext, ToolError


class CurrentTime(Tool):
    name = "current_time"
    description = "The current date and time in a timezone (IANA name such as Europe/Paris)."
    parameters = {
        "type": "object",
        "properties": {
            "timezone": {"type": "string", "description": "IANA timezone name; default UTC"},
        },
        "additionalProperties": False,
    }
    timeout = 2.0

    def run(self, args: dict, ctx: ToolContext) -> dict:
        zone_name = args.get("timezone") or "UTC"
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", too long
            raise ToolError(f"unknown timezone {zone_name!r}; use an IANA name like Europe/Paris")
        now = datetime.now(zone)
        return {"time": now.isoformat(), "weekday": now.strftime("%A"), "timezone": zone_name}


# --- calculator ---------------------------------------------------------------------------

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max,
    "floor": math.floor, "ceil": math.ceil, "log": math.log,
    "sin": math.sin, "cos": math.cos, "tan": math.tan,
}  # fmt: skip
_CONSTANTS = {"pi": math.pi, "e": math.e}

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
# Integers past ~1200 digits are refused: big enough for arithmetic, small enough that no
# expression of 500 characters can make the worker spend seconds or megabytes on it.
MAX_INT_BITS = 4096
# round(n, -d) on an integer computes 10**d, holding the GIL for the whole process (d = 10**7:
# seconds). No integer we hold has more digits than this, so a larger d rounds nothing.
MAX_ROUND_DIGITS = math.ceil(MAX_INT_BITS * math.log10(2))


class Calculator(Tool):
    name = "calculator"
    description = (
        "Evaluate an arithmetic expression exactly. Supports + - * / // % ** and parentheses, "
        "the functions sqrt abs round min max floor ceil log sin cos tan, and pi, e. "
        f"At most {MAX_EXPRESSION_CHARS} characters; integers up to {MAX_ROUND_DIGITS} digits."
    )
    parameters = {
        "type": "object",
        "properties": {"expression": {"type": "string", "description": "e.g. (2 + 3) * sqrt(16)"}},
        "required": ["expression"],
        "additionalProperties": False,
    }
    timeout = 2.0

    def run(self, args: dict, ctx: ToolContext) -> int | float:
        expression = args["expression"]
        if len(expression) > MAX_EXPRESSION_CHARS:
            raise ToolError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
        try:
            tree = ast.parse(expression.strip(), mode="eval")
            value = _evaluate(tree.body)
        except SyntaxError:
            raise ToolError("not a valid arithmetic expression")
        except ZeroDivisionError:
            raise ToolError("division by zero")
        except (OverflowError, RecursionError, MemoryError):
            raise ToolError("the result is too large")
        except (ValueError, TypeError) as exc:  # math domain errors, wrong argument counts
            raise ToolError(f"cannot compute: {exc}")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise ToolError("the result is not a finite number")
            if value.is_integer() and abs(value) < 2**53:
                return int(value)
        return value


def _evaluate(node: ast.expr) -> int | float:
    """Walk the parsed expression, accepting only numbers, operators and the listed names."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        _check_operation(node.op, left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(arg) for arg in node.args]
        if node.func.id == "round":
            _check_round(args)
        return _checked(_FUNCTIONS[node.func.id](*args))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        raise ToolError(f"unknown function {node.func.id!r}")
    if isinstance(node, ast.Name):
        raise ToolError(f"unknown name {node.id!r}")
    raise ToolError(f"{type(node).__name__} is not allowed in an arithmetic expression")


def _check_operation(op: ast.operator, left: int | float, right: int | float) -> None:
    """Refuse, before computing it, an operation whose result would be out of bounds.

    Every integer held is at most MAX_INT_BITS, so + - / // % on them cost microseconds and
    their results stay small; only products and powers grow, so only they are estimated.
    Floats cost the same whatever their value (overflow is an error, not a long wait).
    """
    if isinstance(op, ast.Pow):
        _check_power(left, right)
    both_int = isinstance(left, int) and isinstance(right, int)
    # An m-bit times an n-bit integer has at least m + n - 1 bits.
    if isinstance(op, ast.Mult) and both_int and _bits(left) + _bits(right) - 1 > MAX_INT_BITS:
        raise ToolError("the result is too large")


def _bits(value: int | float) -> int:
    return value.bit_length() if isinstance(value, int) else 0


def _check_round(args: list[int | float]) -> None:
    digits = args[1] if len(args) == 2 else 0
    if isinstance(digits, int) and abs(digits) > MAX_ROUND_DIGITS:
        raise ToolError(f"round() to more than {MAX_ROUND_DIGITS} digits is not allowed")


def _check_power(base: int | float, exponent: int | float) -> None:
    # Refuse before computing: 9**9**9 would otherwise run for minutes.
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponents larger than {MAX_EXPONENT} are not allowed")
    integer_power = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if integer_power and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
        raise ToolError("the result is too large")


def _checked(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("the result is too large")
    return value


# --- http_fetch ---------------------------------------------------------------------------

MAX_REDIRECTS = 5


class HttpFetch(Tool):
    """GET a public web page.

    Every hop (the first URL and each redirect) is checked by beamclaw.outbound under
    settings.TOOLS_HTTP_ALLOWED_HOSTS and TOOLS_HTTP_ALLOW_PRIVATE, and connected to at the
    addresses that were checked.
    """

    name = "http_fetch"
    description = (
        "Fetch a public http(s) URL with GET and return its status, content type and text "
        "body (cut at a size limit)."
    )
    parameters = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "description": "http:// or https:// URL"},
            "max_bytes": {"type": "integer", "minimum": 1, "description": "body size limit"},
        },
        "required": ["url"],
        "additionalProperties": False,
    }

    @property
    def timeout(self) -> float:
        # The fetch enforces its own deadline; the registry's is a backstop just past it.
        return _http_timeout() + 5.0

    def run(self, args: dict, ctx: ToolContext) -> dict:
        limit = getattr(settings, "TOOLS_HTTP_MAX_BYTES", 100_000)
        max_bytes = min(args.get("max_bytes") or limit, limit)
        deadline = time.monotonic() + _http_timeout()
        url = _parse_url(args["url"])
        policy = AddressPolicy.of(
            allow_private=getattr(settings, "TOOLS_HTTP_ALLOW_PRIVATE", False),
            allowed_hosts=getattr(settings, "TOOLS_HTTP_ALLOWED_HOSTS", []),
        )
        # trust_env=False: a proxy from the environment would resolve hosts itself and
        # bypass the address check.
        with httpx.Client(trust_env=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                try:
                    response, body, truncated = _get(client, policy, url, max_bytes, deadline)
                    if response.is_redirect:
                        url = url.join(response.headers["location"])
                        continue
                except httpx.TimeoutException:
                    raise ToolError(f"timed out fetching {url}")
                except (httpx.HTTPError, httpx.InvalidURL) as exc:
                    raise ToolError(f"could not fetch {url}: {type(exc).__name__}: {exc}")
                return {
                    "url": str(url),
                    "status": response.status_code,
                    "content_type": response.headers.get("content-type", ""),
                    "body": _decode(body, response.charset_encoding),
                    "truncated": truncated,
                }
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")


def _http_timeout() -> float:
    return float(getattr(settings, "TOOLS_HTTP_TIMEOUT", 10.0))


def _parse_url(raw: str) -> httpx.URL:
    try:
        url = httpx.URL(raw)
    except httpx.InvalidURL as exc:
        raise ToolError(f"invalid URL: {exc}")
    if url.scheme not in ("http", "https") or not url.host:
        raise ToolError("only http:// and https:// URLs with a host can be fetched")
    return url


def _get(
    client: httpx.Client, policy: AddressPolicy, url: httpx.URL, max_bytes: int, deadline: float
) -> tuple[httpx.Response, bytes, bool]:
    """One GET of `url`, at the first checked address that accepts a connection."""
    try:
        targets = policy.targets(url, deadline)
    except AddressRefused as exc:
        raise ToolError(f"refusing to fetch {url}: {exc}")
    error: httpx.HTTPError = httpx.ConnectError(f"no address to connect to for {url.host}")
    for target in targets:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise httpx.TimeoutException("deadline passed")
        request = client.build_request(
            "GET",
            target.url,
            headers={**target.headers, "Accept-Encoding": "identity"},
            extensions=target.extensions,
            timeout=remaining,
        )
        try:
            response = client.send(request, stream=True)
        except httpx.ConnectError as exc:
            error = exc
            continue
        try:
            if response.is_redirect:
                return response, b"", False
            return response, *_read_capped(response, max_bytes, deadline)
        finally:
            response.close()
    raise error


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> tuple[bytes, bool]:
    """At most max_bytes of the body, and whether there was more; stops at the deadline.

    The cap counts decoded bytes: a server may compress even though we asked it not to.
    """
    body = bytearray()
    try:
        for piece in iter_body(response):
            body += piece
            if len(body) > max_bytes:
                return bytes(body[:max_bytes]), True
            # The client timeout is per read; a server dripping bytes is stopped here.
            if time.monotonic() > deadline:
                raise ToolError("timed out reading the response")
    except UnsupportedEncoding as exc:
        raise ToolError(str(exc))
    return bytes(body), False


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


# --- session_memory -----------------------------------------------------------------------

MAX_KEY_CHARS = 200
MAX_VALUE_BYTES = 16 * 1024
MAX_KEYS = 100  # with MAX_VALUE_BYTES, bounds what one session can store to ~1.6 MB


class SessionMemoryTool(Tool):
    """The model's view of agents.runtime.memory.SessionMemory, the store it reads and writes."""

    name = "session_memory"
    description = (
        "Remember values across turns of this conversation. action=set stores value under "
        "key; get reads one key; list returns the keys; delete removes one key."
    )
    parameters = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["get", "set", "list", "delete"]},
            "key": {"type": "string", "description": "required for get, set and delete"},
            "value": {"description": "any JSON value; required for set"},
        },
        "required": ["action"],
        "additionalProperties": False,
    }

    def run(self, args: dict, ctx: ToolContext) -> dict:
        action = args["action"]
        if action == "list":
            return {"keys": sorted(ctx.memory.items())}
        key = args.get("key")
        if not key or len(key) > MAX_KEY_CHARS:
            raise ToolError(f"{action} needs a key of 1 to {MAX_KEY_CHARS} characters")
        if action == "get":
            stored = ctx.memory.items()  # get() cannot tell a stored null from a missing key
            return {"key": key, "value": stored.get(key), "found": key in stored}
        if action == "delete":
            found = key in ctx.memory.items()
            ctx.memory.delete(key)
            return {"key": key, "deleted": found}
        if "value" not in args:
            raise ToolError("set needs a value")
        size = len(json.dumps(args["value"]).encode())
        if size > MAX_VALUE_BYTES:
            raise ToolError(f"value is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}")
        stored = ctx.memory.items()
        if key not in stored and len(stored) >= MAX_KEYS:
            raise ToolError(f"memory is full ({MAX_KEYS} keys); delete one first")
        ctx.memory.set(key, args["value"])
        return {"key": key, "stored": True}
