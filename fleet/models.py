"""The shard map: which worker shard consumes which tenant's queue."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models

from .shards import shard_index


class ShardMapStatus(models.TextChoices):
    ADDING = "adding"  # new owners consume alongside the old ones (make-before-break)
    ACTIVE = "active"
    RETIRED = "retired"


class ShardMap(models.Model):
    """Which hash shard consumes which tenant's queue; versioned by `epoch`.

    A tenant belongs to shard `pins[slug]` if pinned, else crc32(slug) mod `shard_count`.
    Tenants flagged `dedicated_workers` are served by workers started with `--tenants`.
    Workers reconcile their queues against the active map (and one being added) every few
    seconds, so a missed broadcast or a restart heals itself. `manage.py reshard` writes
    a new map as `adding`, waits until every worker consumes under it, then activates it.
    With no map, each worker's own `--shard k/N` decides.
    """

    epoch = models.PositiveIntegerField(unique=True)
    shard_count = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    pins = models.JSONField(default=dict, blank=True, help_text='{"tenant-slug": shard index}')
    status = models.CharField(
        max_length=16, choices=ShardMapStatus.choices, default=ShardMapStatus.ADDING
    )
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # The table keeps the name it had when tenants owned the model: existing
        # databases keep their rows.
        db_table = "tenants_shardmap"
        ordering = ["-epoch"]

    def __str__(self) -> str:
        return f"shard map {self.epoch} ({self.shard_count} shards, {self.status})"

    def shard_of(self, slug: str) -> int:
        pinned = self.pins.get(slug)
        return pinned if pinned is not None else shard_index(slug, self.shard_count)
