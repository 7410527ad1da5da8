import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_an_htmx_request_after_logging_out_sends_the_whole_page_to_log_in(client):
    response = client.get(
        reverse("member_socket"),
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/rooms/garden/?x=1"},
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=/rooms/garden/%3Fx%3D1"


def test_a_plain_request_after_logging_out_is_redirected_as_usual(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"
