from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from readings.api import events, views

app_name = "api"

urlpatterns = [
    path("spreads/", views.SpreadList.as_view(), name="spread-list"),
    path("spreads/<str:slug>/", views.SpreadDetail.as_view(), name="spread-detail"),
    path("cards/", views.CardList.as_view(), name="card-list"),
    path("readings/", views.ReadingCollection.as_view(), name="reading-list"),
    path("readings/estimate/", views.ReadingEstimateView.as_view(), name="reading-estimate"),
    path("readings/<uuid:pk>/", views.ReadingDetail.as_view(), name="reading-detail"),
    path("readings/<uuid:pk>/retry/", views.ReadingRetry.as_view(), name="reading-retry"),
    path("readings/<uuid:pk>/events/", events.ReadingEvents.as_view(), name="reading-events"),
    path("auth/token/", views.TokenLogin.as_view(), name="token"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", views.ApiDocs.as_view(), name="docs"),
]
