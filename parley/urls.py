from django.contrib import admin
from django.urls import include, path

from parley import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.health, name="health"),
    path("accounts/", include("allauth.urls")),
    path("profile/", include("accounts.urls")),
    path("rooms/", include("rooms.urls")),
    path("calls/", include("calls.urls")),
    path("", include("accounts.contacts_urls")),
    path("admin/", admin.site.urls),
]
