from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.sign_up, name="sign-up"),
    path("time-zone/", views.set_time_zone, name="time-zone"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            # The querent's home, unless `next` names a page of this site.
            template_name="accounts/login.html",
            redirect_authenticated_user=True,
            next_page="pages:home",
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(next_page="accounts:login"), name="logout"),
]
