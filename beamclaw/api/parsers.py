"""The API's JSON parser: DRF's, refusing JSON nested deeper than JSON_MAX_DEPTH with a 400.

Python's json module recurses once per level, so a body nested 100,000 deep raises
RecursionError (a 500 if left alone); one nested a few hundred deep parses, then breaks
whatever walks it next. Both are refused here, before any view sees the data.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import parsers

from beamclaw.errors import InvalidInput


def _too_deep(error: str) -> InvalidInput:
    return InvalidInput(
        "json_too_deep",
        f"The JSON body is nested {error}; at most {settings.JSON_MAX_DEPTH} levels are accepted.",
    )


def nesting_exceeds(value: Any, limit: int) -> bool:
    """Whether `value` has lists or objects nested more than `limit` deep (no recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise _too_deep("too deep to parse")
        if nesting_exceeds(data, settings.JSON_MAX_DEPTH):
            raise _too_deep("too deep")
        return data
