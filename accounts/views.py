from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.forms import ProfileForm
from parley.http import HtmxHttpRequest


@require_http_methods(["GET", "POST"])
def profile(request: HtmxHttpRequest) -> HttpResponse:
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        if request.htmx:
            # The form and, out of band, the name in the header.
            return render(
                request, "accounts/profile.html#profile-saved", {"form": form, "saved": True}
            )
        messages.success(request, "Your profile is saved.")
        return redirect("profile")
    template = "accounts/profile.html#profile-form" if request.htmx else "accounts/profile.html"
    return render(request, template, {"form": form})


@require_GET
def member_socket(request: HtmxHttpRequest) -> HttpResponse:
    """A fresh copy of the member socket's element, which opens a new socket when swapped in."""
    return render(request, "includes/member_socket.html")
