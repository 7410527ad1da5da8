from django.urls import path

from rooms import views

urlpatterns = [
    path("", views.directory, name="room_directory"),
    path("new/", views.room_create, name="room_create"),
    path("viewer.css", views.viewer_stylesheet, name="viewer_stylesheet"),
    path("<slug:slug>/", views.room, name="room"),
    path("<slug:slug>/messages/", views.room_messages, name="room_messages"),
    path("<slug:slug>/socket/", views.room_socket, name="room_socket"),
    path("<slug:slug>/post/", views.room_post, name="room_post"),
    path("<slug:slug>/join/", views.room_join, name="room_join"),
    path("<slug:slug>/leave/", views.room_leave, name="room_leave"),
    path("<slug:slug>/invite/", views.room_invite, name="room_invite"),
]
