"""The CSP report endpoint: browsers' reports are logged; anything else gets a 4xx, never a 500."""

import json

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

URL = "/csp-report/"


@pytest.fixture
def post():
    client = Client(enforce_csrf_checks=True)

    def send(body, content_type="application/csp-report"):
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        return client.post(URL, body, content_type=content_type)

    return send


def test_every_page_tells_browsers_where_to_report():
    response = Client().get(reverse("account_login"))
    assert "report-uri /csp-report/" in response["Content-Security-Policy"]
    assert reverse("csp_report") == URL


def test_a_report_uri_report_is_logged_without_a_session_or_csrf_token(post, caplog):
    report = {
        "csp-report": {
            "document-uri": "https://chat.example.org/rooms/garden/",
            "effective-directive": "script-src-elem",
            "blocked-uri": "inline",
            "script-sample": "alert(1)",
        }
    }
    response = post(report)
    assert response.status_code == 204
    [record] = [r for r in caplog.records if r.name == "parley.csp"]
    assert "effective-directive='script-src-elem'" in record.getMessage()
    assert "script-sample='alert(1)'" in record.getMessage()


def test_a_report_to_batch_is_logged_one_line_per_csp_report(post, caplog):
    batch = [
        {"type": "csp-violation", "body": {"documentURL": "https://x/", "blockedURL": "inline"}},
        {"type": "deprecation", "body": {"message": "not ours"}},
        {"type": "csp-violation", "body": {"effectiveDirective": "style-src-attr"}},
    ]
    assert post(batch, content_type="application/reports+json").status_code == 204
    messages = [r.getMessage() for r in caplog.records if r.name == "parley.csp"]
    assert len(messages) == 2
    assert "blocked-uri='inline'" in messages[0]
    assert "effective-directive='style-src-attr'" in messages[1]


def test_a_forged_newline_stays_inside_one_log_line(post, caplog):
    post({"csp-report": {"blocked-uri": "x\nCRITICAL forged line"}})
    [record] = [r for r in caplog.records if r.name == "parley.csp"]
    assert "\n" not in record.getMessage()


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"\xff\xfe", b"[1, 2]", b'"text"', b"{}", b'{"csp-report": 3}', b"[" * 5000],
    ids=[
        "empty",
        "text",
        "not-utf8",
        "list-of-numbers",
        "string",
        "empty-object",
        "wrong-type",
        "deep-nesting",
    ],
)
def test_a_body_that_is_no_report_gets_400(post, body, caplog):
    assert post(body).status_code == 400
    assert not [r for r in caplog.records if r.name == "parley.csp"]


def test_a_large_body_is_refused_unread(post):
    big = {"csp-report": {"blocked-uri": "x" * 20_000}}
    assert post(big).status_code == 413


def test_a_long_field_is_cut_short(post, caplog):
    post({"csp-report": {"blocked-uri": "y" * 5000}})
    [record] = [r for r in caplog.records if r.name == "parley.csp"]
    assert len(record.getMessage()) < 600


def test_only_post_is_answered():
    assert Client().get(URL).status_code == 405
