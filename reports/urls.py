from django.urls import path

from reports import views

app_name = "reports"

urlpatterns = [
    path("costs/", views.costs_page, name="costs"),
    path("costs.csv", views.costs_csv, name="costs_csv"),
    path("api/costs/", views.CostSummaryAPI.as_view(), name="costs_api"),
]
