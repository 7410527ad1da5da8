from django.urls import path

from accounts import views

urlpatterns = [
    path("people/", views.people, name="people"),
    path("people/<str:username>/", views.person, name="person"),
    path("people/<str:username>/request/", views.contact_request, name="contact_request"),
    path("people/<str:username>/cancel/", views.contact_request_cancel, name="contact_cancel"),
    path("people/<str:username>/remove/", views.contact_remove, name="contact_remove"),
    path("people/<str:username>/block/", views.member_block, name="member_block"),
    path("people/<str:username>/unblock/", views.member_unblock, name="member_unblock"),
    path("people/<str:username>/chat/", views.direct_chat, name="direct_chat"),
    path("contacts/", views.contacts, name="contacts"),
    path("contacts/add/", views.contact_request, name="contact_add"),
    path(
        "contacts/requests/<int:request_id>/accept/",
        views.contact_request_accept,
        name="contact_accept",
    ),
    path(
        "contacts/requests/<int:request_id>/decline/",
        views.contact_request_decline,
        name="contact_decline",
    ),
]
