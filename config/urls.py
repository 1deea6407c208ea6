from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView


class FaviconView(RedirectView):
    """Browsers ask for /favicon.ico before reading any page's <link rel="icon">."""

    permanent = True

    def get_redirect_url(self, *args, **kwargs):
        return static("favicon.svg")


urlpatterns = [
    path("", include("readings.page_urls")),
    path("accounts/", include("accounts.urls")),
    path("i18n/", include("django.conf.urls.i18n")),  # the page's language switch
    path("favicon.ico", FaviconView.as_view()),
    path("admin/", admin.site.urls),
    path("api/", include("readings.api.urls")),
    path("reports/", include("reports.urls")),
    path("", include("operations.urls")),
]

handler404 = "operations.error_pages.not_found"
handler500 = "operations.error_pages.server_error"
