"""ASGI entry point: the web server (uvicorn) serves the API, SSE streams and the admin."""

import contextlib
import os

from django.core.asgi import get_asgi_application
from django.db import DatabaseError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beamclaw.settings")
application = get_asgi_application()

# Every Redis key starts with the installation's id, read from the database once per
# process. Read it now, before the event loop runs: read by the first requests, it would
# hold the loop while a thread waits for a database connection that those requests hold.
# With the database not up yet, the first request reads it instead.
with contextlib.suppress(DatabaseError):
    from beamclaw.installation import installation_id  # needs the apps loaded above

    installation_id()
