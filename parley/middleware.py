from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect


def htmx_login_redirect(get_response):
    """Send the whole page to log in when an htmx request finds the member logged out.

    A plain redirect would be followed inside the request, and the login page swapped into
    whatever part of the page asked (after logging out in another tab, say). `next` is the page
    the person was on, so logging in brings them back to it.
    """
    login_path = resolve_url(settings.LOGIN_URL)

    def middleware(request):
        response = get_response(request)
        if (
            getattr(request, "htmx", False)
            and response.status_code == 302
            and urlsplit(response["Location"]).path == login_path
        ):
            current = urlsplit(request.htmx.current_url or "/")
            here = current.path + (f"?{current.query}" if current.query else "")
            return HttpResponseClientRedirect(redirect_to_login(here)["Location"])
        return response

    return middleware
