import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from config.warm_up import warm_up  # noqa: E402 - needs Django set up
from operations.request_queue import RequestQueue  # noqa: E402

application = RequestQueue(django_application)
warm_up()
