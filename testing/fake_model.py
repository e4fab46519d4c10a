"""A scripted model server on loopback that speaks OpenAI Chat Completions and Anthropic
Messages, for tests and benchmarks: real HTTP, deterministic answers, recorded requests.

    with FakeModelServer() as server:
        server.add_rule(match=r"6\\*7", tool_calls=[{"name": "calculator",
                                                     "arguments": {"expression": "6*7"}}])
        ...  # point a provider at server.url_openai or server.url_anthropic

A rule with `hold=threading.Event()` keeps its answers open in the middle until the test
sets the event, so a test can look at the platform while a model call is under way.

Run standalone for benchmarks: `python -m testing.fake_model --port 0 --latency 0.5`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PATHS = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
}

# Error `type`s per status, as the real APIs spell them.
OPENAI_ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}

Record = dict  # {"path", "format", "body", "messages", "headers", "started_at", ...}


@dataclass
class Rule:
    match: re.Pattern | Callable[[Record], bool] | None
    reply: str | Callable[[Record], str] | None
    tool_calls: list[dict] | None
    status: int | None
    headers: dict[str, str] | None
    body: str | bytes | None
    latency: float | None
    times: int | None
    stream_chunk_delay: float | None
    hold: threading.Event | None = None
    keepalive_every: float | None = None
    keepalive_for: float = 30.0

    def matches(self, record: Record) -> bool:
        if self.match is None:
            return True
        if isinstance(self.match, re.Pattern):
            return bool(self.match.search(last_text(record["messages"])))
        return bool(self.match(record))


class FakeModelServer:
    """Answers by the first matching rule, else `echo: <last user text>` (or
    `tool said: <result>` when the last message is a tool result).

    Usage is deterministic: input = chars of all message texts // 4 + 1, output =
    chars of the reply and tool-call arguments // 4 + 1.
    """

    def __init__(
        self,
        latency: float = 0.0,
        *,
        stream_chunk_delay: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.latency = latency
        self.stream_chunk_delay = stream_chunk_delay
        self._address = (host, port)
        self._lock = threading.Condition()
        self._rules: list[Rule] = []
        self._records: list[Record] = []
        self._in_flight = 0
        self._peak = 0
        self._answers_open = True  # hold_answers() closes it
        self._answers_being_written = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeModelServer:
        self._stopping.clear()
        self._httpd = _HTTPServer(self._address, _Handler)
        self._httpd.fake = self
        # A short poll interval keeps stop() (once per test) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="fake-model-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping out a latency
        self._httpd.shutdown()
        self._httpd.close_connections()  # or kept-alive clients would still be answered
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FakeModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        return self._httpd.server_address[1]

    @property
    def url_anthropic(self) -> str:
        host = self._address[0] if self._address[0] not in ("", "0.0.0.0") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @property
    def url_openai(self) -> str:
        return f"{self.url_anthropic}/v1"

    # -- scripting ---------------------------------------------------------------------

    def add_rule(
        self,
        match: str | Callable[[Record], bool] | None = None,
        reply: str | Callable[[Record], str] | None = None,
        tool_calls: list[dict] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: str | bytes | None = None,
        latency: float | None = None,
        times: int | None = None,
        stream_chunk_delay: float | None = None,
        hold: threading.Event | None = None,
        keepalive_every: float | None = None,
        keepalive_for: float = 30.0,
    ) -> FakeModelServer:
        """Add a rule; the first rule (in order added) that matches a request answers it.

        `match`: a regex searched in the last message's text (the user's words, or the
        tool result when the model is being handed one), a predicate on the request
        record, or None for every request. `tool_calls`: [{"name", "arguments": dict or
        raw str, "id"?}]. `status` / `body` answer with an error in the request's format
        or with raw bytes. `times`: use the rule n times, then drop it (None = forever).
        `hold`: a streamed answer stops right after its first piece of text (an answer
        without text, or not streamed, before it is sent) until the event is set; the
        request's record says `"held": True` meanwhile. reset() and stop() release it.
        `keepalive_every`: open an event stream and send only keep-alive comments, one
        every so many seconds, for `keepalive_for` seconds, then end it unanswered.
        """
        if isinstance(match, str):
            match = re.compile(match, re.IGNORECASE)
        rule = Rule(
            match,
            reply,
            tool_calls,
            status,
            headers,
            body,
            latency,
            times,
            stream_chunk_delay,
            hold,
            keepalive_every,
            keepalive_for,
        )
        with self._lock:
            self._rules.append(rule)
        return self

    def reset(self) -> None:
        """Forget rules, records and counters; answers still held are let go."""
        with self._lock:
            for rule in self._rules:
                if rule.hold is not None:
                    rule.hold.set()
            self._rules.clear()
            self._records.clear()
            self._peak = self._in_flight
            self._answers_open = True
            self._lock.notify_all()

    def hold_answers(self) -> None:
        """Stop answering: requests wait (after their latency) until release_answers().

        Returns once no answer is being written, so every request is then either fully
        answered or not answered at all: a test can kill a client knowing which calls it
        received.
        """
        with self._lock:
            self._answers_open = False
            while self._answers_being_written:
                self._lock.wait()

    def release_answers(self) -> None:
        with self._lock:
            self._answers_open = True
            self._lock.notify_all()

    # -- what was asked ----------------------------------------------------------------

    @property
    def requests(self) -> list[Record]:
        with self._lock:
            return list(self._records)

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def max_concurrent(self) -> int:
        """Peak number of requests being served at the same time."""
        with self._lock:
            return self._peak

    def concurrent_by(self, key_fn: Callable[[Record], Hashable]) -> dict[Hashable, int]:
        """Peak simultaneous requests per key, e.g. `lambda r: r["body"]["model"]`."""
        edges: dict[Hashable, list[tuple[float, int]]] = {}
        for record in self.requests:
            end = record["finished_at"] or float("inf")
            edges.setdefault(key_fn(record), []).extend([(record["started_at"], 1), (end, -1)])
        peaks = {}
        for key, points in edges.items():
            current = peak = 0
            for _, step in sorted(points):  # at equal times an end (-1) sorts first
                current += step
                peak = max(peak, current)
            peaks[key] = peak
        return peaks

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Record]:
        """Block until `count` requests have finished; raise TimeoutError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while sum(1 for r in self._records if r["finished_at"]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} requests, got {len(self._records)}")
                self._lock.wait(remaining)
            return list(self._records)

    # -- serving -----------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path.rstrip("/")
        fmt = PATHS.get(path)
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if fmt is None:
            return _send_error(handler, "openai", 404, f"no route for {path}")
        try:
            body = json.loads(raw)
            messages = normalise(fmt, body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return _send_error(handler, fmt, 400, f"malformed request: {exc}")
        record: Record = {
            "path": path,
            "format": fmt,
            "body": body,
            "messages": messages,
            "headers": {k.lower(): v for k, v in handler.headers.items()},
            "started_at": time.time(),
            "finished_at": None,
            "status": None,
            "held": False,
            # Which connection it came on: requests on one kept-alive connection share it.
            "client_port": handler.client_address[1],
        }
        with self._lock:
            self._records.append(record)
            number = len(self._records)
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            rule = self._take_rule(record)
        writing = False
        try:
            latency = self.latency if rule is None or rule.latency is None else rule.latency
            if latency and self._stopping.wait(latency):
                return
            with self._lock:
                while not self._answers_open:
                    if self._stopping.is_set():
                        return
                    self._lock.wait(0.05)
                self._answers_being_written += 1
                writing = True
            record["status"] = self._answer(handler, fmt, body, record, rule, number)
        finally:
            with self._lock:
                self._in_flight -= 1
                if writing:
                    self._answers_being_written -= 1
                record["finished_at"] = time.time()
                self._lock.notify_all()

    def _take_rule(self, record: Record) -> Rule | None:
        for rule in self._rules:
            if rule.matches(record):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                return rule
        return None

    def _answer(
        self,
        handler: _Handler,
        fmt: str,
        body: dict,
        record: Record,
        rule: Rule | None,
        number: int,
    ) -> int:
        extra = dict(rule.headers or {}) if rule else {}
        if rule and rule.keepalive_every:
            _send_keepalives(
                handler, rule.keepalive_every, rule.keepalive_for, extra, self._stopping
            )
            return 200
        if rule and rule.body is not None:
            raw = rule.body.encode() if isinstance(rule.body, str) else rule.body
            extra.setdefault("Content-Type", "application/json")
            _send(handler, rule.status or 200, raw, extra)
            return rule.status or 200
        if rule and rule.status is not None and rule.status >= 400:
            message = rule.reply if isinstance(rule.reply, str) else f"fake error {rule.status}"
            _send_error(handler, fmt, rule.status, message, extra)
            return rule.status
        if rule and rule.reply is not None:
            reply = rule.reply(record) if callable(rule.reply) else rule.reply
        elif rule and rule.tool_calls:
            reply = ""
        else:
            reply = default_reply(record["messages"])
        calls = [
            {
                "id": call.get("id") or f"call_{number}_{i}",
                "name": call["name"],
                "arguments": call["arguments"]
                if isinstance(call.get("arguments"), str)
                else json.dumps(call.get("arguments") or {}),
            }
            for i, call in enumerate((rule.tool_calls if rule else None) or [])
        ]
        answer = _Answer(
            id=f"fake-{number}",
            model=str(body.get("model") or "fake-model"),
            reply=reply,
            calls=calls,
            input_tokens=sum(len(m["content"]) for m in record["messages"]) // 4 + 1,
            output_tokens=(len(reply) + sum(len(c["arguments"]) for c in calls)) // 4 + 1,
        )
        hold = rule.hold if rule else None

        def wait_for_release() -> bool:
            """True once the test releases the answer, False if the server stops first."""
            record["held"] = True
            while not hold.wait(0.05):
                if self._stopping.is_set():
                    return False
            record["held"] = False
            return True

        if body.get("stream") is True:
            delay = self.stream_chunk_delay
            if rule and rule.stream_chunk_delay is not None:
                delay = rule.stream_chunk_delay
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = (
                _openai_events(answer, include_usage)
                if fmt == "openai"
                else _anthropic_events(answer)
            )
            if hold is not None and not answer.reply and not wait_for_release():
                return 200
            held = wait_for_release if hold is not None and answer.reply else None
            _send_stream(handler, events, delay, extra, self._stopping, held)
        else:
            if hold is not None and not wait_for_release():
                return 200
            document = _openai_json(answer) if fmt == "openai" else _anthropic_json(answer)
            extra.setdefault("Content-Type", "application/json")
            _send(handler, 200, json.dumps(document).encode(), extra)
        return 200


# -- request normalisation -------------------------------------------------------------


def normalise(fmt: str, body: dict) -> list[dict]:
    """The request's conversation as [{"role", "content"}] with text content, whichever
    format it came in; tool results become role "tool"."""
    out: list[dict] = []
    if fmt == "openai":
        for message in body["messages"]:
            out.append({"role": message["role"], "content": _text(message.get("content"))})
        return out
    if body.get("system"):
        out.append({"role": "system", "content": _text(body["system"])})
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        results = [b for b in content if b.get("type") == "tool_result"]
        out += [{"role": "tool", "content": _text(b.get("content"))} for b in results]
        if len(results) < len(content):
            out.append({"role": message["role"], "content": _text(content)})
    return out


def _text(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        part.get("text", "") for part in content if isinstance(part, dict)
    )  # list of parts/blocks


def last_text(messages: list[dict]) -> str:
    return messages[-1]["content"] if messages else ""


def default_reply(messages: list[dict]) -> str:
    if messages and messages[-1]["role"] == "tool":
        return f"tool said: {messages[-1]['content']}"
    user = [m["content"] for m in messages if m["role"] == "user"]
    return f"echo: {user[-1] if user else ''}"


# -- answers in both formats -----------------------------------------------------------


@dataclass
class _Answer:
    id: str
    model: str
    reply: str
    calls: list[dict]  # {"id", "name", "arguments": JSON text}
    input_tokens: int
    output_tokens: int


def _pieces(text: str, size: int = 0) -> list[str]:
    """Word-sized chunks (or `size`-char chunks) that join back to `text`."""
    if size:
        return [text[i : i + size] for i in range(0, len(text), size)] or [""]
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _openai_json(a: _Answer) -> dict:
    message: dict = {"role": "assistant", "content": a.reply or (None if a.calls else "")}
    if a.calls:
        message["tool_calls"] = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in a.calls
        ]
    return {
        "id": f"chatcmpl-{a.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": a.model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if a.calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": a.input_tokens,
            "completion_tokens": a.output_tokens,
            "total_tokens": a.input_tokens + a.output_tokens,
        },
    }


def _openai_events(a: _Answer, include_usage: bool) -> list[tuple[str | None, dict | str]]:
    def chunk(delta: dict, finish: str | None = None) -> tuple[None, dict]:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return None, {
            "id": f"chatcmpl-{a.id}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": a.model,
            "choices": choices,
        }

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in _pieces(a.reply)]
    for i, call in enumerate(a.calls):
        head = {"index": i, "id": call["id"], "type": "function"}
        head["function"] = {"name": call["name"], "arguments": ""}
        events.append(chunk({"tool_calls": [head]}))
        events += [
            chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            for piece in _pieces(call["arguments"], size=8)
        ]
    events.append(chunk({}, "tool_calls" if a.calls else "stop"))
    if include_usage:
        _, last = chunk({})
        last["choices"] = []
        last["usage"] = _openai_json(a)["usage"]
        events.append((None, last))
    events.append((None, "[DONE]"))
    return events


def _anthropic_json(a: _Answer) -> dict:
    content: list[dict] = [{"type": "text", "text": a.reply}] if a.reply else []
    for call in a.calls:
        try:
            arguments = json.loads(call["arguments"])
        except ValueError:
            arguments = call["arguments"]  # a scripted malformed call stays malformed
        content.append(
            {"type": "tool_use", "id": call["id"], "name": call["name"], "input": arguments}
        )
    return {
        "id": f"msg_{a.id}",
        "type": "message",
        "role": "assistant",
        "model": a.model,
        "content": content,
        "stop_reason": "tool_use" if a.calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": a.input_tokens, "output_tokens": a.output_tokens},
    }


def _anthropic_events(a: _Answer) -> list[tuple[str | None, dict | str]]:
    start = _anthropic_json(a) | {"content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": a.input_tokens, "output_tokens": 1}
    events: list[tuple[str | None, dict | str]] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("ping", {"type": "ping"}),
    ]

    def block(index: int, content_block: dict, deltas: list[dict]) -> None:
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": content_block},
            )
        )
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))

    index = 0
    if a.reply:
        deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(a.reply)]
        block(index, {"type": "text", "text": ""}, deltas)
        index += 1
    for call in a.calls:
        head = {"type": "tool_use", "id": call["id"], "name": call["name"], "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in _pieces(call["arguments"], size=8)
        ]
        block(index, head, deltas)
        index += 1
    stop = "tool_use" if a.calls else "end_turn"
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": a.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _error_body(fmt: str, status: int, message: str) -> dict:
    if fmt == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = OPENAI_ERROR_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


# -- HTTP ------------------------------------------------------------------------------


def _send(handler: _Handler, status: int, raw: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    handler.wfile.write(raw)


def _send_error(
    handler: _Handler, fmt: str, status: int, message: str, headers: dict | None = None
) -> None:
    raw = json.dumps(_error_body(fmt, status, message)).encode()
    _send(handler, status, raw, {"Content-Type": "application/json", **(headers or {})})


def _send_stream(
    handler: _Handler,
    events: list[tuple[str | None, dict | str]],
    delay: float,
    headers: dict[str, str],
    stopping: threading.Event,
    hold_after_first_text: Callable[[], bool] | None = None,
) -> None:
    """Send `events` as SSE; `hold_after_first_text` (if any) is called after the first
    frame that carries reply text and returns False to cut the stream short."""
    handler.send_response(200)
    for name, value in {"Content-Type": "text/event-stream", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Cache-Control", "no-cache")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for i, (event, data) in enumerate(events):
        if i and delay and stopping.wait(delay):
            return
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
        raw = frame.encode()
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        if hold_after_first_text is not None and _carries_text(data):
            handler.wfile.flush()
            if not hold_after_first_text():
                return
            hold_after_first_text = None
    handler.wfile.write(b"0\r\n\r\n")


def _carries_text(data: dict | str) -> bool:
    """Whether a stream frame (OpenAI chunk or Anthropic event) holds a piece of reply text."""
    if not isinstance(data, dict):
        return False
    if data.get("object") == "chat.completion.chunk":
        return any((c.get("delta") or {}).get("content") for c in data.get("choices") or [])
    return (data.get("delta") or {}).get("type") == "text_delta"


def _send_keepalives(
    handler: _Handler,
    every: float,
    duration: float,
    headers: dict[str, str],
    stopping: threading.Event,
) -> None:
    handler.send_response(200)
    for name, value in {"Content-Type": "text/event-stream", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    frame = b": keep-alive\n\n"
    end = time.monotonic() + duration
    while time.monotonic() < end:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
        handler.wfile.flush()
        if stopping.wait(every):
            return
    handler.wfile.write(b"0\r\n\r\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real APIs
    server: _HTTPServer

    def do_POST(self) -> None:
        self.server.fake._serve(self)

    def do_GET(self) -> None:
        if urlsplit(self.path).path == "/health":
            return _send(self, 200, b"ok", {"Content-Type": "text/plain"})
        _send_error(self, "openai", 404, f"no route for {self.path}")

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: tests and benchmarks make thousands of requests


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # benchmarks open hundreds of connections at once
    fake: FakeModelServer

    def __init__(self, address: tuple[str, int], handler: type[_Handler]):
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timeout test, killed benchmark) is not a server error.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    parser.add_argument("--stream-chunk-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = FakeModelServer(
        args.latency, stream_chunk_delay=args.stream_chunk_delay, host=args.host, port=args.port
    ).start()
    print(f"openai:    {server.url_openai}", flush=True)
    print(f"anthropic: {server.url_anthropic}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
