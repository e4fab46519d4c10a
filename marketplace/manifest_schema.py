"""The manifest's JSON Schema (schema/manifest.schema.json) applied to untrusted JSON.

A tenant writes the manifest, so its types, depth and size are checked first, without
recursion and before anything serialises it; then the schema's errors are put in words,
each naming its field as a JSON path and none repeating a long value back.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from beamclaw.errors import InvalidInput

from .manifest_checks import Problem, json_path

MAX_MANIFEST_BYTES = 256 * 1024  # of canonical JSON
MAX_DEPTH = 32  # objects and arrays inside each other; tool parameters need a few levels
MAX_ERRORS = 20  # listed in an error's details
_MAX_INTEGER = 2**63 - 1  # what a 64-bit column or a JSONB number round-trips exactly


def schema_path() -> Path:
    return Path(__file__).resolve().parent / "schema" / "manifest.schema.json"


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text(encoding="utf-8"))


def manifest_schema() -> dict[str, Any]:
    """The manifest's JSON Schema (a copy: the API may publish or change it freely)."""
    return copy.deepcopy(_schema())


# --- before the schema: JSON types, depth, size ---------------------------------------


def json_problems(data: object) -> Iterator[Problem]:
    """Whatever makes `data` not plain, storable JSON of bounded depth. Walks without
    recursion, and stops as soon as a lower bound of its JSON size passes the cap: a byte
    per value and per character of text, counted before a container's values are visited."""
    stack: list[tuple[object, tuple[str | int, ...]]] = [(data, ())]
    size_at_least = 1
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_DEPTH:
            raise InvalidInput(
                "manifest_too_deep",
                f"{json_path(*path)}: the manifest nests deeper than {MAX_DEPTH} levels.",
                details={"field": json_path(*path), "max_depth": MAX_DEPTH},
            )
        if isinstance(value, dict | list | str):
            size_at_least += len(value)
            if size_at_least > MAX_MANIFEST_BYTES:
                raise InvalidInput(
                    "manifest_too_large",
                    f"The manifest is larger than {MAX_MANIFEST_BYTES} bytes as canonical JSON.",
                    details={"max_bytes": MAX_MANIFEST_BYTES},
                )
        # Children go on the stack last first, so problems come out in document order.
        if isinstance(value, dict):
            children: list[tuple[object, tuple[str | int, ...]]] = []
            for key, child in value.items():
                if not isinstance(key, str):
                    yield json_path(*path), "object keys must be strings"
                    continue
                yield from _text_problems(key, (*path, key))
                size_at_least += len(key)
                children.append((child, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend((value[i], (*path, i)) for i in reversed(range(len(value))))
        elif isinstance(value, str):
            yield from _text_problems(value, path)
        elif isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if abs(value) > _MAX_INTEGER:
                yield json_path(*path), "the number does not fit in 64 bits"
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                yield json_path(*path), "NaN and infinities are not JSON"
        else:
            yield json_path(*path), f"{type(value).__name__} is not a JSON value"


def _text_problems(text: str, path: tuple[str | int, ...]) -> Iterator[Problem]:
    # PostgreSQL's JSONB and text refuse NUL, and UTF-8 cannot encode a lone surrogate.
    if "\x00" in text:
        yield json_path(*path), "contains a NUL character"
    elif not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            yield json_path(*path), "contains a lone surrogate (not valid Unicode)"


# --- the schema ------------------------------------------------------------------------


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Iterator:
    # JSON Schema patterns are ECMAScript's, where `$` is the end of the text; Python's `$`
    # also matches before a final newline, so "name\n" would pass `^[a-z]+$`.
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern)


# 1.0 is an integer to JSON Schema; here an integer is written without a fraction, so the
# stored manifest, its digest and the amounts read from it agree.
_ManifestValidator = validators.extend(
    Draft202012Validator,
    validators={"pattern": _ecma_pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


@functools.cache
def _validator() -> Any:
    return _ManifestValidator(_schema())


def schema_problems(data: object) -> list[Problem]:
    """The schema's errors, in words, at most MAX_ERRORS of them."""
    problems: list[Problem] = []
    for error in _validator().iter_errors(data):
        problems += _described(error)
        if len(problems) >= MAX_ERRORS:
            break
    return problems


def _described(error: ValidationError) -> list[Problem]:
    """(field, message) for a schema error, naming the missing or unknown key itself and
    never repeating a long value back."""
    path = tuple(error.absolute_path)
    keyword, value, instance = error.validator, error.validator_value, error.instance
    if "propertyNames" in error.relative_schema_path:
        return [(json_path(*path, instance), "is not an allowed name")]
    if keyword == "required":
        return [(json_path(*path, key), "is required") for key in value if key not in instance]
    if keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        return [
            (json_path(*path, key), "is not a known field") for key in instance if key not in known
        ]
    return [(json_path(*path), _message(error))]


_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer (no fraction)",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _message(error: ValidationError) -> str:
    value = error.validator_value
    match error.validator:
        case "type":
            names = value if isinstance(value, list) else [value]
            return "must be " + " or ".join(_TYPE_NAMES[name] for name in names)
        case "const":
            return f"must be {json.dumps(value)}"
        case "enum":
            return "must be one of " + ", ".join(json.dumps(each) for each in value)
        case "pattern":
            # A pattern's schema says in words what it matches ("a slug: ...").
            return "must be " + error.schema.get("description", "in the expected form")
        case "minLength" | "maxLength":
            least = error.validator == "minLength"
            return f"must be at {'least' if least else 'most'} {value} characters long"
        case "minItems" | "maxItems" | "maxProperties":
            least = error.validator == "minItems"
            return f"must have at {'least' if least else 'most'} {value} entries"
        case "minimum" | "maximum":
            return f"must be at {'least' if error.validator == 'minimum' else 'most'} {value}"
        case "uniqueItems":
            return "must not list an entry twice"
    return error.message[:200]
