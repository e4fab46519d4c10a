"""`manage.py reshard --shards N [--pin tenant=k ...]`: move tenant queues between
worker shards while everything runs (make-before-break); see fleet/resharding.py."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from fleet import resharding
from fleet.models import ShardMap, ShardMapStatus


def _pin(text: str) -> tuple[str, int]:
    slug, _, index = text.partition("=")
    if not slug or not index.isdigit():
        raise CommandError(f"--pin takes tenant=k (a shard index), not {text!r}")
    return slug, int(index)


class Command(BaseCommand):
    help = "Change which worker shard consumes which tenant's queue, without a gap."

    def add_arguments(self, parser):
        parser.add_argument("--shards", type=int, help="hash shard count of the new map")
        parser.add_argument(
            "--pin", action="append", default=[], metavar="TENANT=K", help="put a tenant on shard K"
        )
        parser.add_argument(
            "--timeout", type=float, default=30.0, help="seconds to wait for workers"
        )
        parser.add_argument("--note", default="", help="why (kept with the map)")
        parser.add_argument("--show", action="store_true", help="print the current map")
        parser.add_argument("--abort", action="store_true", help="drop a map left half-added")

    def handle(
        self, *args, shards=None, pin=(), timeout=30.0, note="", show=False, abort=False, **o
    ):
        if abort:
            dropped = resharding.abort()
            self.stdout.write(f"dropped {dropped} half-added map(s)")
            return
        if show or shards is None:
            self._show()
            return
        try:
            result = resharding.reshard(
                shard_count=shards, pins=dict(_pin(p) for p in pin), timeout=timeout, note=note
            )
        except resharding.ReshardError as exc:
            raise CommandError(str(exc))
        shard_map = result.shard_map
        self.stdout.write(
            f"map {shard_map.epoch} active: {shard_map.shard_count} shard(s), "
            f"{len(result.moves)} tenant(s) moved, {len(result.workers)} worker(s) in step, "
            f"{result.seconds:.1f} s"
        )
        for move in result.moves[:50]:
            self.stdout.write(f"  {move.tenant}: shard {move.before} -> {move.after}")
        if len(result.moves) > 50:
            self.stdout.write(f"  ... and {len(result.moves) - 50} more")
        for hostname in result.idle_workers:
            self.stdout.write(
                f"  {hostname} owns no tenant now (its index is past {shard_map.shard_count}); "
                "drain it: manage.py drain " + hostname
            )

    def _show(self) -> None:
        active = ShardMap.objects.filter(status=ShardMapStatus.ACTIVE).first()
        if active is None:
            self.stdout.write("no shard map yet: each worker follows its own --shard k/N")
            return
        self.stdout.write(
            f"map {active.epoch}: {active.shard_count} shard(s), pins {active.pins or 'none'}, "
            f"active since {active.activated_at:%Y-%m-%d %H:%M:%S}"
        )
