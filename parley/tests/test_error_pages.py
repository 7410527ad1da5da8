"""Parley's own error pages (Django renders them with DEBUG off, as in production)."""

import pytest
from django.template.loader import render_to_string
from django.test import Client

pytestmark = pytest.mark.django_db


def test_a_missing_page_says_so_in_parleys_layout(auth_client):
    response = auth_client.get("/rooms/no-such-room/")
    assert response.status_code == 404
    assert b"<h1>Nothing here</h1>" in response.content
    assert b'<main id="main"' in response.content


def test_a_form_posted_without_its_csrf_token_says_it_expired(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/rooms/new/", {"name": "No token"})
    assert response.status_code == 403
    assert b"This form has expired" in response.content


def test_the_server_error_page_renders_without_any_context():
    html = render_to_string("500.html")
    assert "Something went wrong on Parley" in html
    assert "<main" in html
