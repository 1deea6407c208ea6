"""/healthz for load balancers and monitors, /metrics for Prometheus (staff or a token)."""

import secrets

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from operations import health, metrics
from operations.error_reports import mask_url_credentials


@never_cache
@require_GET
def healthz(request):
    """200 while the database and broker answer (status "ok", or "degraded" without a live
    worker), 503 when either is down. A load balancer needs no more: anonymous callers get
    the status only; staff and the metrics token also get each check and the queue depth
    (which say what runs the platform and how busy it is)."""
    checks = health.run_checks()
    status = health.overall(checks)
    body = {"status": status}
    if _may_scrape(request):
        body["checks"] = {
            c.name: {"ok": c.ok, "detail": mask_url_credentials(c.detail)} for c in checks
        }
        try:
            body["queue_depth"] = health.queue_depth()
        except Exception:  # noqa: BLE001 - the broker check already says why
            body["queue_depth"] = None
    return JsonResponse(body, status=503 if status == "down" else 200)


def _may_scrape(request) -> bool:
    """Staff signed in, or the bearer of METRICS_TOKEN."""
    if request.user.is_authenticated and request.user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return bool(token) and secrets.compare_digest(given.encode(), token.encode())


@never_cache
@require_GET
def prometheus_metrics(request):
    if not _may_scrape(request):
        return JsonResponse(
            {"detail": "Staff only, or send Authorization: Bearer <METRICS_TOKEN>."}, status=403
        )
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)
