"""Where browsers report what the Content-Security-Policy refused: one log line per report.

Browsers post reports by themselves, without cookies or a CSRF token, so anybody can post here:
only a small JSON body is read, nothing is saved, every field is cut short and logged as a repr
(no forged log lines), and no input gets more than a 4xx answer.
"""

import json
import logging

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
MAX_REPORTS = 10
MAX_FIELD = 300
FIELDS = (
    "document-uri",
    "effective-directive",
    "blocked-uri",
    "source-file",
    "line-number",
    "script-sample",
)
# The Reporting API (report-to) names the same fields in camelCase.
CAMEL = {
    "documentURL": "document-uri",
    "effectiveDirective": "effective-directive",
    "blockedURL": "blocked-uri",
    "sourceFile": "source-file",
    "lineNumber": "line-number",
    "sample": "script-sample",
}


@login_not_required
@csrf_exempt
@require_POST
def csp_report(request: HttpRequest) -> HttpResponse:
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return HttpResponse("Bad Content-Length.\n", status=400, content_type="text/plain")
    if length > MAX_BODY:
        return HttpResponse("Report too large.\n", status=413, content_type="text/plain")
    reports = csp_reports_parse(request.read(MAX_BODY + 1))
    if reports is None:
        return HttpResponse("Expected a JSON CSP report.\n", status=400, content_type="text/plain")
    for report in reports[:MAX_REPORTS]:
        log.warning("CSP violation: %s", " ".join(f"{k}={v!r}" for k, v in report.items()))
    return HttpResponse(status=204)


def csp_reports_parse(body: bytes) -> list[dict] | None:
    """The reports in a report-uri body ({"csp-report": {...}}) or a report-to body
    ([{"type": "csp-violation", "body": {...}}, ...]), as short fields; None if it is neither."""
    if len(body) > MAX_BODY:
        return None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("csp-report"), dict):
        bodies = [data["csp-report"]]
    elif isinstance(data, list) and all(isinstance(item, dict) for item in data):
        bodies = [item.get("body") for item in data if item.get("type") == "csp-violation"]
        bodies = [{CAMEL.get(k, k): v for k, v in b.items()} for b in bodies if isinstance(b, dict)]
    else:
        return None
    return [{k: str(b.get(k, ""))[:MAX_FIELD] for k in FIELDS} for b in bodies]
