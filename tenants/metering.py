"""Usage metering: one UsageRecord per successful model call, priced from settings.MODEL_PRICES.

The records are the ledger that budgets (re-seeded from them after a Redis restart),
invoices and the usage API sum up. The turn loop makes a record after each model call
(`usage_record`) and writes it in the transaction of its next fenced step, which saves a
transaction per call; `save_unwritten` keeps the ones a turn could not write that way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

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


def usage_record(
    *,
    tenant_id: int,
    agent_id: int | None,
    turn_id: int | None,
    provider: str,
    model: str,
    input_tokens: int,
    output_tokens: int,
) -> UsageRecord:
    """The ledger entry of one successful model call, priced; not saved yet."""
    return UsageRecord(
        tenant_id=tenant_id,
        agent_id=agent_id,
        turn_id=turn_id,
        provider=provider,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(model, input_tokens, output_tokens),
    )


def save_unwritten(records: list[UsageRecord]) -> None:
    """Save the records no fenced step wrote (the turn lost its lease, or crashed): a call
    that was paid for is always on the ledger. Empties the list."""
    if not records:
        return
    try:
        UsageRecord.objects.bulk_create(records)
    except Exception:
        log.exception("could not save %d usage record(s)", len(records))
    records.clear()
