"""`manage.py drain <worker> | --shard k | --all`: stop workers without losing a step.

Each named worker stops consuming; its running turns finish the model or tool call they
are in, save the step and hand their session back, and the worker exits. Prints what
became of every turn that was running and exits 0 once every worker is gone.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fleet import drain, registry


class Command(BaseCommand):
    help = "Drain workers: stop consuming, hand running turns over at a step boundary, exit."

    def add_arguments(self, parser):
        parser.add_argument("worker", nargs="?", help="hostname, e.g. worker1@host (or worker1)")
        parser.add_argument("--shard", type=int, help="every worker of hash shard k")
        parser.add_argument("--all", action="store_true", help="every worker")
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds to wait for the workers to exit "
            "(default: WORKER_SHUTDOWN_GRACE_SECONDS + 10)",
        )

    def handle(self, *args, worker=None, shard=None, all=False, timeout=None, **options):
        if sum(x is not None and x is not False for x in (worker, shard, all or None)) != 1:
            raise CommandError("name one worker, or --shard k, or --all")
        timeout = timeout if timeout is not None else settings.WORKER_SHUTDOWN_GRACE_SECONDS + 10
        entries = drain.pick_targets(registry.list_workers(), hostname=worker, shard=shard)
        if not entries:
            raise CommandError("no running worker matches (see GET /api/v1/ops/workers)")
        targets = [drain.DrainTarget(e["hostname"], drain.running_turns(e)) for e in entries]
        hostnames = [t.hostname for t in targets]
        started = time.monotonic()
        answers = drain.send_drain(hostnames)
        for target in targets:
            answer = answers.get(target.hostname, "no answer (it may already be stopping)")
            self.stdout.write(
                f"{target.hostname}: {answer}; {len(target.turn_ids)} turn(s) running"
            )
        pending = set(hostnames)
        deadline = started + timeout
        while pending and time.monotonic() < deadline:
            pending = {name for name in pending if not drain.worker_gone(name)}
            if pending:
                time.sleep(0.2)  # polling the registry and a ping
        for target in targets:
            state = "still running" if target.hostname in pending else "gone"
            took = time.monotonic() - started
            self.stdout.write(f"{target.hostname}: {state} after {took:.1f} s")
            for fate in drain.turn_fates(target.turn_ids):
                self.stdout.write(
                    f"  turn {fate.turn_id} ({fate.session_key}): {fate.outcome} — {fate.detail}"
                )
        if pending:
            raise CommandError(
                f"{', '.join(sorted(pending))} did not exit within {timeout:.0f} s; "
                "a SIGKILL now leaves their turns to the reaper"
            )
