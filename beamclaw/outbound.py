"""Requests to addresses a tenant chose (http_fetch, a tenant's own model endpoint).

Where they may go: the host is resolved once, every address it resolves to must be
public unless the operator allows private ones, and the request connects to the
addresses that were checked, so a DNS answer that changes between check and connect
cannot reach inside. What comes back: the body is decoded in bounded pieces, so a
compressed answer cannot grow past a size cap before the reader sees it, and the wait
an answer asks for (Retry-After) is read the same way for model providers and chat APIs.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The URL may not be requested; the message says why, for the tenant to read."""


def not_public_reason(host: str) -> str:
    """What a tenant reads when a host is refused: the same words whether the name does
    not resolve or resolves to an internal address, so that no internal name, address or
    network layout can be learnt from the answer."""
    return f"host {host!r} does not resolve to a public address"


class UnresolvableHost(AddressRefused):
    """The host has no address now (which may pass: DNS can fail for a while)."""


@dataclass(frozen=True)
class Target:
    """One way to send a request for a URL: to this URL (host replaced by a checked
    address), with these headers and httpx request extensions."""

    url: httpx.URL
    headers: dict[str, str] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AddressPolicy:
    """Which hosts a tenant's URL may reach.

    A host in `allowed_hosts` (exact, case-insensitive match on the URL's host name, no
    wildcards) is requested as is. Any other host is resolved and refused if one of its
    addresses is not public, unless `allow_private`. The allow-list names hosts, not
    addresses: allowing "localhost" does not allow "127.0.0.1".
    """

    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, *, allow_private: bool, allowed_hosts: Iterable[str] = ()) -> AddressPolicy:
        hosts = frozenset(name.rstrip(".").lower() for name in allowed_hosts)
        return cls(allow_private=allow_private, allowed_hosts=hosts)

    def targets(self, url: httpx.URL, deadline: float | None = None) -> list[Target]:
        """Where to connect for `url`, one target per checked address; AddressRefused if
        the URL may not be requested. The DNS lookup ends by OUTBOUND_DNS_TIMEOUT, or by
        `deadline` (time.monotonic()) if that is sooner."""
        if url.scheme not in ("http", "https") or not url.host:
            raise AddressRefused("only http:// and https:// URLs with a host are allowed")
        host = url.raw_host.decode("ascii").rstrip(".").lower()  # IDNA-encoded
        if host in self.allowed_hosts:
            return [Target(url)]
        timeout = settings.OUTBOUND_DNS_TIMEOUT
        if deadline is not None:
            timeout = max(min(timeout, deadline - time.monotonic()), 0.0)
        addresses = resolve(host, timeout)
        if not self.allow_private:
            for address in addresses:
                kind = non_public_kind(address)
                if kind is not None:
                    log.info("refused %s: %s is not a public address (%s)", host, address, kind)
                    raise AddressRefused(not_public_reason(host))
        # The name still goes in the Host header and to TLS (SNI and certificate
        # verification both use sni_hostname).
        headers = {"Host": url.netloc.decode("ascii")}
        extensions = {} if _is_ip_literal(host) else {"sni_hostname": host}
        return [Target(url.copy_with(host=str(a)), headers, extensions) for a in addresses]


# Lookups run on a few threads of their own, so a caller can stop waiting for one
# (getaddrinfo itself has no timeout); a hung lookup holds one of these, not the caller.
DNS_THREADS = 8
_dns_pool: ThreadPoolExecutor | None = None
_dns_pool_lock = threading.Lock()


def lookup(host: str) -> list[tuple]:
    """The system resolver (tests point this at a resolver of their own)."""
    return socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)


def resolve(host: str, timeout: float) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order; UnresolvableHost if none
    or if the lookup takes longer than `timeout` seconds."""
    future = _get_dns_pool().submit(lookup, host)
    try:
        infos = future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        log.info("resolving host %r took over %.1f s", host, timeout)
        raise UnresolvableHost(f"host {host!r} did not resolve within {timeout:g} s") from None
    except (socket.gaierror, UnicodeError) as exc:
        log.info("cannot resolve host %r: %s", host, exc)
        raise UnresolvableHost(not_public_reason(host)) from None
    # The scope of a link-local IPv6 address ("%eth0") is dropped; such addresses are
    # refused anyway.
    return list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))


def _get_dns_pool() -> ThreadPoolExecutor:
    global _dns_pool
    if _dns_pool is None:
        with _dns_pool_lock:
            if _dns_pool is None:
                _dns_pool = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="dns")
    return _dns_pool


def _forget_dns_pool_in_child() -> None:
    # A forked child (Celery prefork) has none of the parent's threads; it starts its own.
    global _dns_pool, _dns_pool_lock
    _dns_pool = None
    _dns_pool_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_dns_pool_in_child)


def non_public_kind(address: IPAddress) -> str | None:
    """Why `address` is not public ("loopback", "private", ...), or None if it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return non_public_kind(embedded)
    checks = [
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        # is_global alone is not enough: on Python 3.11 multicast addresses count as
        # global; the checks above catch those.
        ("not globally routable", not address.is_global),
    ]
    return next((kind for kind, matches in checks if matches), None)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- reading bodies ---------------------------------------------------------------------

PIECE_BYTES = 64 * 1024


class UnsupportedEncoding(Exception):
    """The response is compressed in a way we did not ask for and do not decode."""


def iter_body(response: httpx.Response, piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
    """The decoded body of a streamed response, in pieces of at most `piece_bytes`.

    httpx decodes each network read whole, so 64 KB of gzip can become 64 MB before the
    caller sees a byte. Here the raw bytes are decompressed `piece_bytes` at a time, and a
    caller that stops reading stops the decompression too.
    """
    encodings = [
        e.strip().lower()
        for e in response.headers.get("content-encoding", "").split(",")
        if e.strip() and e.strip().lower() != "identity"
    ]
    if not encodings:
        for chunk in response.iter_raw():
            for start in range(0, len(chunk), piece_bytes):
                yield chunk[start : start + piece_bytes]
        return
    if len(encodings) > 1 or encodings[0] not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedEncoding(f"unsupported content encoding {', '.join(encodings)!r}")
    decompressor = None
    try:
        for chunk in response.iter_raw():
            if decompressor is None:
                decompressor = _decompressor(encodings[0], chunk)
            data = chunk
            while data and not decompressor.eof:
                piece = decompressor.decompress(data, piece_bytes)
                data = decompressor.unconsumed_tail
                if piece:
                    yield piece
        rest = decompressor.flush() if decompressor is not None else b""
    except zlib.error as exc:
        raise httpx.DecodingError(f"cannot decompress the body: {exc}") from exc
    for start in range(0, len(rest), piece_bytes):
        yield rest[start : start + piece_bytes]


def _decompressor(encoding: str, first_bytes: bytes) -> Any:
    if encoding != "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    # "deflate" is zlib-wrapped by the standard but raw from some servers: the first two
    # bytes tell, as in httpx.
    try:
        zlib.decompressobj().decompress(first_bytes[:2])
    except zlib.error:
        return zlib.decompressobj(-zlib.MAX_WBITS)
    return zlib.decompressobj()


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date)."""
    millis = _finite(headers.get("retry-after-ms"))
    if millis is not None:
        return max(millis / 1000, 0.0)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return max(seconds, 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _finite(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
