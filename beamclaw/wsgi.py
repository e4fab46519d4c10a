"""WSGI entry point, for servers without ASGI (live event streams then need an ASGI server)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "beamclaw.settings")
application = get_wsgi_application()
