"""The settings of the platform processes a bench run starts: the platform's own, plus the
pipeline floor (bench/floor.py) mounted beside the API and registered in the workers.

Only the bench's processes load this module (DJANGO_SETTINGS_MODULE in bench/platform.py),
so an installed platform never serves the floor's URL nor runs its task.
"""

from beamclaw.settings import *  # noqa: F403 - everything the platform runs with

ROOT_URLCONF = "bench.urls"
CELERY_IMPORTS = ["bench.floor"]
