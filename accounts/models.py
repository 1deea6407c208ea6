from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from readings.models import Language


class Profile(models.Model):
    """What a reader prefers: the language of their readings when a request names none, and
    the time zone their pages show times in (their browser's, sent by the page)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    language = models.CharField(
        _("reading language"),
        max_length=5,
        choices=Language.choices,
        blank=True,
        help_text=_("Empty: the browser's language."),
    )
    time_zone = models.CharField(
        _("time zone"),
        max_length=64,
        blank=True,
        help_text=_("An IANA name such as Asia/Seoul, from the browser. Empty: UTC."),
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(language__in=["", *Language.values]), name="profile_language_known"
            )
        ]

    def __str__(self):
        return f"{self.user} ({self.language or 'browser'})"
