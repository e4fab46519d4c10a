"""Read-side queries on tenants: usage summed over a period, and which API keys still work."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, F, QuerySet, Sum
from django.db.models.functions import TruncDate

from .models import ApiKey, Tenant, UsageRecord

# What `group_by` may name, and the expression each groups the records by.
USAGE_GROUPINGS = {
    "agent": F("agent__slug"),
    "model": F("model"),
    "day": TruncDate("created_at"),  # in settings.TIME_ZONE (UTC)
}

# Named apart from the model's fields: an annotation may not shadow a field.
_SUMS = {
    "input_sum": Sum("input_tokens"),
    "output_sum": Sum("output_tokens"),
    "cost_sum": Sum("cost"),
    "calls": Count("id"),
}


@dataclass(frozen=True)
class UsageTotals:
    input_tokens: int
    output_tokens: int
    cost: Decimal  # USD
    calls: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class UsageGroup(UsageTotals):
    # An agent slug, a model name or an ISO day; None for records whose agent was deleted.
    key: str | None = None


@dataclass(frozen=True)
class UsageSummary:
    start: datetime
    end: datetime
    group_by: str
    totals: UsageTotals
    groups: list[UsageGroup]


def _sums(row: dict) -> dict:
    """The summed columns of an aggregate row; an empty period sums to NULL, read as 0."""
    return {
        "input_tokens": row["input_sum"] or 0,
        "output_tokens": row["output_sum"] or 0,
        "cost": row["cost_sum"] or Decimal("0"),
        "calls": row["calls"],
    }


def usage_records(tenant: Tenant, start: datetime, end: datetime) -> QuerySet[UsageRecord]:
    """The tenant's records from `start` (inclusive) to `end` (exclusive)."""
    return UsageRecord.objects.filter(tenant=tenant, created_at__gte=start, created_at__lt=end)


def usage_totals(tenant: Tenant, start: datetime, end: datetime) -> UsageTotals:
    return UsageTotals(**_sums(usage_records(tenant, start, end).aggregate(**_SUMS)))


def usage_summary(tenant: Tenant, start: datetime, end: datetime, group_by: str) -> UsageSummary:
    """Tokens, cost and calls of one tenant in [start, end), in total and per agent, model or
    day (`group_by`, a key of USAGE_GROUPINGS); groups in key order, deleted agents last."""
    rows = (
        usage_records(tenant, start, end)
        .annotate(key=USAGE_GROUPINGS[group_by])
        .values("key")
        .annotate(**_SUMS)
        .order_by()  # group by the key alone
    )
    groups = [UsageGroup(key=_key_text(row["key"]), **_sums(row)) for row in rows]
    groups.sort(key=lambda group: (group.key is None, group.key or ""))
    return UsageSummary(
        start=start,
        end=end,
        group_by=group_by,
        totals=usage_totals(tenant, start, end),
        groups=groups,
    )


def _key_text(key: object) -> str | None:
    return key.isoformat() if isinstance(key, date) else key


def api_keys_refused(api_key_ids: set[int]) -> dict[int, str]:
    """Of these keys, those that no longer let their holder in, each with the auth error
    code a new request would get: `api_key_revoked` (revoked or deleted) or
    `tenant_suspended`. One query, whatever the number of keys."""
    rows = ApiKey.objects.filter(pk__in=api_key_ids).values_list(
        "pk", "revoked_at", "tenant__is_active"
    )
    refused = dict.fromkeys(api_key_ids, "api_key_revoked")
    for pk, revoked_at, tenant_active in rows:
        if revoked_at is None and tenant_active:
            del refused[pk]
        elif revoked_at is None:
            refused[pk] = "tenant_suspended"
    return refused
