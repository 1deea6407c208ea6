"""Error reports (the DEBUG page, the admins' e-mails) that never show a password.

Django hides settings and request variables whose *names* look secret (PASS, KEY, TOKEN...),
but a credential inside a URL travels under an innocent name: DATABASE_URL in the process
environment, which runserver copies into request.META, a redis:// URL in Q_CLUSTER, a local
variable in a traceback frame. This filter masks the userinfo of any URL wherever Django
cleanses a value.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://user:password@host -> scheme://user:********@host (also scheme://:password@host).
_URL_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s/@]+@", re.I)


def mask_url_credentials(text: str) -> str:
    return _URL_CREDENTIALS.sub(
        lambda m: f"{m['head']}{CredentialMaskingFilter.cleansed_substitute}@", text
    )


class CredentialMaskingFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):  # lazy strings too: they pass for str
            return mask_url_credentials(str(cleansed))
        return cleansed

    def cleanse_special_types(self, request, value):
        value = super().cleanse_special_types(request, value)
        if isinstance(value, str):  # lazy strings too: they pass for str
            return mask_url_credentials(str(value))
        return value
