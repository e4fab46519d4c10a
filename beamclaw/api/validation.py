"""Input validation that answers with a stable, field-specific error code."""

from __future__ import annotations

from rest_framework import serializers

from beamclaw.errors import InvalidInput


def validated(serializer: serializers.Serializer, codes: dict[str, str] | None = None) -> dict:
    """`serializer.validated_data`, or an InvalidInput whose code names the first bad field.

    `codes` maps a field to its code (`{"wait": "invalid_wait"}`); other fields give
    `validation_error`. Field messages are always in `details`.
    """
    if serializer.is_valid():
        return serializer.validated_data
    errors = serializer.errors
    for name, code in (codes or {}).items():
        if name in errors:
            message = f"{name}: {' '.join(str(e) for e in errors[name])}"
            raise InvalidInput(code, message, details=errors)
    raise InvalidInput(
        "validation_error", "The request is invalid; see details for each field.", details=errors
    )
