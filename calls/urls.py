from django.urls import path

from calls import views

urlpatterns = [
    path("new/<str:username>/", views.call_start, name="call_start"),
    path("slot/", views.call_slot, name="call_slot"),
    path("<int:call_id>/", views.call_page, name="call"),
    path("<int:call_id>/accept/", views.call_accept, name="call_accept"),
    path("<int:call_id>/decline/", views.call_decline, name="call_decline"),
    path("<int:call_id>/cancel/", views.call_cancel, name="call_cancel"),
    path("<int:call_id>/hangup/", views.call_hangup, name="call_hangup"),
]
