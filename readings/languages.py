"""Which language a reading is written in: the request's, else the reader's preference, else
the browser's Accept-Language, else English."""

from django.core.exceptions import ValidationError
from django.utils import translation
from django.utils.translation import gettext as _

from readings.models import Language


def supported() -> str:
    return ", ".join(Language.values)


def validate_language(code: str) -> str:
    if code not in Language.values:
        raise ValidationError(
            {
                "language": _("%(code)s is not a supported language; use one of: %(supported)s.")
                % {"code": repr(code), "supported": supported()}
            }
        )
    return code


def reading_language(request, requested: str | None = None) -> str:
    """The language a reading asked for by `request` is written in (ValidationError if it
    names one that is not supported)."""
    if requested:
        return validate_language(requested)
    profile = getattr(request.user, "profile", None) if request.user.is_authenticated else None
    if profile is not None and profile.language:
        return profile.language
    browser = translation.get_language_from_request(request)
    base = (browser or "").split("-")[0]
    return base if base in Language.values else Language.ENGLISH
