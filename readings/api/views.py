"""Thin views: they parse, call services and selectors, and shape the answer."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from django.templatetags.static import static
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import generics, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.settings import api_settings

from budgets.selectors import estimate_answer
from budgets.serializers import BudgetRefusalSerializer, ReadingEstimateSerializer
from budgets.services import BudgetExceeded
from budgets.throttles import EstimateThrottle, ReadingCreateThrottle, TokenThrottle
from readings.api.serializers import (
    CardSerializer,
    ReadingCreateSerializer,
    ReadingDetailSerializer,
    ReadingListSerializer,
    ReadingQueuedSerializer,
    SpreadSerializer,
)
from readings.languages import reading_language
from readings.models import Reading, ReadingStatus, ReadingTask
from readings.services import (
    CardChoice,
    RetryRefused,
    estimate_admission,
    reading_create,
    reading_estimate,
    reading_retry,
    reading_validate,
    submit,
)
from spreads.models import Card, Spread


def readings_visible_to(user):
    """Staff see every reading; anyone else only their own. Someone else's reading is then
    a 404, not a 403, so its existence is not revealed."""
    readings = Reading.objects.select_related("spread")
    if user.is_staff:
        return readings
    return readings.filter(owner=user)


def api_validation_error(exc: DjangoValidationError) -> ValidationError:
    """The service's ValidationError as DRF's, keeping its message per field."""
    if hasattr(exc, "error_dict"):
        return ValidationError(exc.message_dict)
    return ValidationError({api_settings.NON_FIELD_ERRORS_KEY: exc.messages})


class SpreadList(generics.ListAPIView):
    """The active spreads, each with its positions in order."""

    serializer_class = SpreadSerializer
    pagination_class = None  # a handful of spreads, picked from a menu
    queryset = Spread.objects.filter(is_active=True).prefetch_related("positions")


class SpreadDetail(generics.RetrieveAPIView):
    serializer_class = SpreadSerializer
    queryset = Spread.objects.filter(is_active=True).prefetch_related("positions")
    lookup_field = "slug"


class CardList(generics.ListAPIView):
    """The 78-card deck, for clients that let the querent choose their cards."""

    serializer_class = CardSerializer
    pagination_class = None
    queryset = Card.objects.all()


class QueryChoiceField(serializers.ChoiceField):
    """A choice from the query string where `?status=` (present but blank) is refused, not
    taken for an absent filter: a client that sent it meant something, and the schema says
    it must be one of the choices."""

    def get_value(self, dictionary):
        if self.field_name in dictionary and dictionary[self.field_name] == "":
            return ""
        return super().get_value(dictionary)


class ReadingFilterSerializer(serializers.Serializer):
    status = QueryChoiceField(
        choices=ReadingStatus.choices, required=False, help_text="Only readings in this status."
    )


class ReadingCollection(generics.GenericAPIView):
    serializer_class = ReadingListSerializer
    throttle_classes = [ReadingCreateThrottle]

    def get_queryset(self):
        return readings_visible_to(self.request.user).order_by("-created_at")

    def get_parsers(self):
        # Cards are a list of objects: only JSON can say that.
        if self.request is not None and self.request.method == "POST":
            return [JSONParser()]
        return super().get_parsers()

    @extend_schema(
        summary="List readings",
        description="Your readings, newest first (staff see everyone's).",
        parameters=[ReadingFilterSerializer],
        responses=ReadingListSerializer(many=True),
    )
    def get(self, request):
        filters = ReadingFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        readings = self.get_queryset()
        if "status" in filters.validated_data:
            readings = readings.filter(status=filters.validated_data["status"])
        page = self.paginate_queryset(readings)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(
        summary="Create a reading",
        description="Queues a reading and answers at once; follow it at `url` (also in the "
        "`Location` header) until its status is done or failed.",
        request=ReadingCreateSerializer,
        responses={
            202: ReadingQueuedSerializer,
            400: OpenApiResponse(description="A message per field that is wrong."),
            402: BudgetRefusalSerializer,
            429: OpenApiResponse(description="Too many readings: wait Retry-After seconds."),
        },
    )
    def post(self, request):
        data, reading_fields = reading_body(request)
        try:
            reading = reading_create(
                **reading_fields,
                mode=data["mode"],
                language=reading_language(request, data.get("language")),
                submitted=True,
            )
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from exc
        except BudgetExceeded as exc:
            return Response(exc.as_dict(), status=status.HTTP_402_PAYMENT_REQUIRED)
        return queued_answer(request, reading)


def queued_answer(request, reading) -> Response:
    """202 with the reading's id, status and url (also in Location): follow it there."""
    url = request.build_absolute_uri(reverse("api:reading-detail", kwargs={"pk": reading.pk}))
    queued = ReadingQueuedSerializer({"id": reading.pk, "status": reading.status, "url": url})
    return Response(queued.data, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


def reading_body(request) -> tuple[dict, dict]:
    """A create (or estimate) body, validated (a 400 with a message per field otherwise): the
    validated data, and the fields every reading is made of, for the services."""
    body = ReadingCreateSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    data = body.validated_data
    cards = data.get("cards")
    return data, {
        "owner": request.user,
        "spread": data["spread"],
        "question": data["question"],
        "cards": None if cards is None else [CardChoice(**card) for card in cards],
    }


class ReadingEstimateView(generics.GenericAPIView):
    """What a reading would cost, before creating it: nothing is stored or reserved."""

    serializer_class = ReadingEstimateSerializer
    parser_classes = [JSONParser]
    throttle_classes = [EstimateThrottle]

    @extend_schema(
        summary="Estimate a reading's cost",
        description="The same body as creating a reading. Returns the expected cost (from the "
        "recent history of each task type on its model, else prices x token estimates; an "
        "economy reading's at the Message Batches price), the "
        "worst case a creation would reserve, and whether each budget that applies would "
        "allow it now.",
        request=ReadingCreateSerializer,
        responses={
            200: ReadingEstimateSerializer,
            400: OpenApiResponse(description="As create."),
            429: OpenApiResponse(description="Too many estimates: wait Retry-After seconds."),
        },
    )
    def post(self, request):
        data, reading_fields = reading_body(request)
        try:
            reading_request = reading_validate(**reading_fields)
            language = reading_language(request, data.get("language"))
            estimate = reading_estimate(reading_request, data["mode"], language)
        except DjangoValidationError as exc:
            raise api_validation_error(exc) from exc
        room = estimate_admission(estimate, data["mode"]).room_usd
        answer = estimate_answer(reading_request, estimate, room)
        return Response(ReadingEstimateSerializer(answer).data)


class ReadingDetail(generics.RetrieveAPIView):
    """A reading with its progress, its text so far, its metrics and its cost."""

    serializer_class = ReadingDetailSerializer

    def get_queryset(self):
        return readings_visible_to(self.request.user).prefetch_related(
            Prefetch("tasks", queryset=ReadingTask.objects.order_by("phase", "batch_index", "pk"))
        )


class ReadingRetry(generics.GenericAPIView):
    """A failed reading, queued again: only what was not finished runs."""

    serializer_class = ReadingQueuedSerializer
    # A retry spends as a new reading does: it is counted with creations.
    throttle_classes = [ReadingCreateThrottle]

    def get_queryset(self):
        return readings_visible_to(self.request.user)

    @extend_schema(
        summary="Retry a failed reading",
        description="Queues a failed reading again and answers at once. Only its unfinished "
        "tasks run, so nothing already written is paid for twice; its worst case is held "
        "against your budgets again. Follow it at `url`, as after creating one.",
        request=None,
        responses={
            202: ReadingQueuedSerializer,
            402: BudgetRefusalSerializer,
            404: OpenApiResponse(description="No such reading of yours."),
            409: OpenApiResponse(description="The reading is not failed, or cannot be retried."),
            429: OpenApiResponse(description="Too many readings: wait Retry-After seconds."),
        },
    )
    def post(self, request, pk):
        try:
            reading = reading_retry(self.get_object())
        except RetryRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        except BudgetExceeded as exc:
            return Response(exc.as_dict(), status=status.HTTP_402_PAYMENT_REQUIRED)
        submit(reading)
        return queued_answer(request, reading)


class TokenLogin(ObtainAuthToken):
    """DRF's token login, with JSON listed first: Swagger UI's "Try it out" then shows an
    editable JSON body that Execute sends, instead of an empty form it refuses to send."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    # Password guesses are limited per client address.
    throttle_classes = [TokenThrottle]

    @extend_schema(
        summary="Get your API token",
        description="Send your username and password; use the token as "
        "`Authorization: Token <token>` on every other call.",
        examples=[
            OpenApiExample(
                "Sign in",
                value={"username": "bob", "password": "your-password"},
                request_only=True,
            )
        ],
        responses={
            200: inline_serializer("ApiToken", {"token": serializers.CharField()}),
            400: OpenApiResponse(description="Wrong username or password, by field."),
            429: OpenApiResponse(description="Too many attempts: wait Retry-After seconds."),
        },
    )
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def get_serializer_context(self):
        # django-axes marks the request it authenticates as locked out, and its middleware
        # reads the mark from Django's request: hand it that one, not DRF's wrapper.
        return {**super().get_serializer_context(), "request": self.request._request}


class ApiDocs(SpectacularSwaggerView):
    """Swagger UI served from drf-spectacular-sidecar's static files: no CDN needed."""

    url_name = "api:schema"

    @staticmethod
    def _swagger_ui_resource(filename):
        return static(f"drf_spectacular_sidecar/swagger-ui-dist/{filename}")

    @staticmethod
    def _swagger_ui_favicon():
        return static("favicon.svg")
