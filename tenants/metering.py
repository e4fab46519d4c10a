"""Usage metering: one UsageRecord per successful model call, priced from settings.MODEL_PRICES.

A telemetry handler for `provider.call` (registered in beamclaw.apps). The records are the
ledger that budgets (re-seeded from them after a Redis restart), invoices and the usage API
sum up. A running turn collects its records (`collecting()`) and writes them in the
transaction of its next fenced step, which saves a transaction per model call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings

from .models import UsageRecord

log = logging.getLogger(__name__)

PER_TOKENS = Decimal(1_000_000)  # prices are per million tokens
COST_QUANTUM = Decimal("0.000001")  # UsageRecord.cost keeps 6 decimal places


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: Decimal
    output: Decimal


def price_key(model: str) -> str | None:
    """The MODEL_PRICES entry for a model: its exact name, else the longest entry it extends
    with a dash (`gpt-4o-2024-08-06` → `gpt-4o`), else None."""
    prices = settings.MODEL_PRICES
    if model in prices:
        return model
    extended = [name for name in prices if model.startswith(f"{name}-")]
    return max(extended, key=len, default=None)


def price_of(model: str) -> Price:
    key = price_key(model)
    entry = settings.MODEL_PRICES[key] if key is not None else settings.DEFAULT_MODEL_PRICE
    # str() first: a price given as a float in an override must not become 0.1499999...
    return Price(input=Decimal(str(entry["input"])), output=Decimal(str(entry["output"])))


def cost_of(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price = price_of(model)
    cost = (input_tokens * price.input + output_tokens * price.output) / PER_TOKENS
    return cost.quantize(COST_QUANTUM, rounding=ROUND_HALF_UP)


def record_usage(event: str, metadata: dict[str, Any]) -> None:
    """Telemetry handler for `provider.call`: meter a successful call (a failed one has no
    tokens to bill)."""
    if not metadata.get("ok"):
        return
    model = metadata["model"]
    input_tokens = int(metadata.get("input_tokens") or 0)
    output_tokens = int(metadata.get("output_tokens") or 0)
    record = UsageRecord(
        tenant_id=metadata["tenant_id"],
        agent_id=metadata.get("agent_id"),
        turn_id=metadata.get("turn_id"),
        provider=metadata["provider"],
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(model, input_tokens, output_tokens),
    )
    pending = getattr(_collected, "records", None)
    if pending is not None:
        pending.append(record)
    else:
        record.save()


_collected = threading.local()


@contextmanager
def collecting() -> Iterator[list[UsageRecord]]:
    """Within the block, this thread's usage records are kept in the yielded list, unsaved.

    The caller saves them in its own transaction (bulk_create) and empties the list; what
    is still in it at the end (the turn lost its lease, crashed) is saved here, so a call
    that was paid for is always on the ledger.
    """
    previous = getattr(_collected, "records", None)
    records: list[UsageRecord] = []
    _collected.records = records
    try:
        yield records
    finally:
        _collected.records = previous
        if records:
            try:
                UsageRecord.objects.bulk_create(records)
            except Exception:
                log.exception("could not save %d usage record(s)", len(records))
