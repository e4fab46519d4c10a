#!/usr/bin/env python
"""Django's command-line utility for BeamClaw."""

import os
import sys
from pathlib import Path


def use_running_redis() -> None:
    """With REDIS_URL unset, talk to the Redis of a running `make run`.

    `make run` writes the URL of the private Redis it started to var/redis/run.url and
    deletes it when it stops; without it, REDIS_URL's default applies.
    """
    if "REDIS_URL" in os.environ:  # set, even to a mistake: settings.py judges it
        return
    var_dir = Path(os.environ.get("BEAMCLAW_VAR_DIR") or Path(__file__).resolve().parent / "var")
    run_url = var_dir / "redis" / "run.url"
    if run_url.is_file() and (url := run_url.read_text().strip()):
        os.environ["REDIS_URL"] = url


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beamclaw.settings")
    use_running_redis()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
