"""Find the private Redis of a running `make run` (no Django import: runs before settings)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def use_running_redis() -> None:
    """With REDIS_URL unset, talk to the Redis of a running `make run`.

    `make run` writes the URL of the private Redis it started to var/redis/run.url (same
    var/ rule as settings.VAR_DIR) and deletes it when it stops; without the file,
    REDIS_URL's default applies.
    """
    if "REDIS_URL" in os.environ:  # set, even to a mistake: settings.py judges it
        return
    var_dir = Path(os.environ.get("BEAMCLAW_VAR_DIR") or BASE_DIR / "var")
    run_url = var_dir / "redis" / "run.url"
    if run_url.is_file() and (url := run_url.read_text().strip()):
        os.environ["REDIS_URL"] = url
