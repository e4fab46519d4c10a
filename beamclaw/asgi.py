"""ASGI entry point: the web server (uvicorn) serves the API, SSE streams and the admin."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beamclaw.settings")
application = get_asgi_application()
