import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_application = get_asgi_application()

from operations.admission import AdmissionControl  # noqa: E402 - needs Django set up

application = AdmissionControl(django_application)
