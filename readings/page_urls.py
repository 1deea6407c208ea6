from django.urls import path

from readings import pages

app_name = "pages"

urlpatterns = [
    path("", pages.home, name="home"),
    path("readings/<uuid:pk>/", pages.reading_page, name="reading"),
    path("readings/<uuid:pk>/retry/", pages.retry, name="reading-retry"),
]
