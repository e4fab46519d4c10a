"""`<id:name>` in URL patterns: a database id, ASCII digits only, small enough for a bigint.

Django's `int` converter takes any length, so an id past 2**63 reaches the database; and a
`str` id checked with `str.isdigit()` lets through digits such as "²" that `int()` refuses.
This one matches what an id can be, so anything else is a plain 404.
"""

from __future__ import annotations


class IdConverter:
    regex = "[0-9]{1,18}"  # 18 digits always fit PostgreSQL's bigint (19 may not)

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: int) -> str:
        return str(int(value))
