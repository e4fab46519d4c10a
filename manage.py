#!/usr/bin/env python
"""Django's command-line utility for BeamClaw."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beamclaw.settings")
    from beamclaw.running_redis import use_running_redis

    use_running_redis()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
