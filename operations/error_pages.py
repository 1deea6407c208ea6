"""404 and 500 answers for API clients in JSON, as the API's own errors are.

Django's default pages are HTML; a client of /api/ that asks for a reading id the URL
resolver cannot even parse would otherwise get HTML where the schema promises JSON.
"""

from django.http import JsonResponse
from django.views import defaults

JSON_PREFIXES = ("/api/", "/reports/api/")


def _wants_json(request) -> bool:
    return request.path.startswith(JSON_PREFIXES)


def not_found(request, exception):
    if _wants_json(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _wants_json(request):
        return JsonResponse({"detail": "Server error: it has been logged."}, status=500)
    return defaults.server_error(request)
