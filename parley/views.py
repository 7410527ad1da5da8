from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from parley.http import HtmxHttpRequest


@require_GET
def home(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "home.html")


@login_not_required
@require_GET
def health(request: HtmxHttpRequest) -> HttpResponse:
    """The proxy's health check (site/Caddyfile): this process answers. It touches neither the
    database nor Redis, so an outage there does not take every process out of the rotation."""
    return HttpResponse("ok", content_type="text/plain")
