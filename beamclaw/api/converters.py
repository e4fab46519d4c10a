"""Converters for URL patterns, so a path segment that can name no object is a plain 404.

`<id:name>`: a database id, ASCII digits only, small enough for a bigint.

Django's `int` converter takes any length, so an id past 2**63 reaches the database; and a
`str` id checked with `str.isdigit()` lets through digits such as "²" that `int()` refuses.
This one matches what an id can be, so anything else is a plain 404.
"""

from __future__ import annotations

from django.urls import register_converter


class IdConverter:
    regex = "[0-9]{1,18}"  # 18 digits always fit PostgreSQL's bigint (19 may not)

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(int(value))


class SessionKeyConverter:
    """`<session_key:key>`: printable text without a slash, at most as long as the stored
    key. A NUL or other control character would reach PostgreSQL, which refuses NUL in
    text with an error (a 500); such a key can name no session, so it is a plain 404."""

    regex = r"[^/\x00-\x1f\x7f]{1,300}"  # 300: Session.key's max_length

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class VersionConverter:
    """`<version:name>`: what a SemVer version can be made of, at most as long as the stored
    version; anything else (a NUL, a slash) can name no version, so it is a plain 404."""

    regex = r"[0-9A-Za-z.+-]{1,64}"  # 64: PackageVersion.version's max_length

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


# Registered once, when this module is first imported (from the app's ready(), before any
# URLconf): registering again is deprecated in Django 5.x and an error in 6.0.
register_converter(IdConverter, "id")
register_converter(SessionKeyConverter, "session_key")
register_converter(VersionConverter, "version")
