"""This installation's identity: the one row every Redis key of the platform is named by."""

from __future__ import annotations

from django.db import models


class Installation(models.Model):
    """One row, created by a migration with a random key.

    Redis keys start with the key, so installations sharing one Redis server (a fresh
    SQLite database next to an old one, two clones on one laptop) never read each
    other's counters, leases or event streams: tenant 1 of one database is not tenant 1
    of another.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    key = models.CharField(max_length=32, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(id=1), name="one_installation")]

    def __str__(self) -> str:
        return f"installation {self.key}"
