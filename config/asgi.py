import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from operations.request_queue import RequestQueue  # noqa: E402 - needs Django set up

application = RequestQueue(django_application)
