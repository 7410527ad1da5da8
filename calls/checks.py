"""System checks for the call settings: a bad ICE server URL is refused when the site is
checked or migrated (`manage.py check --deploy`), not found later by a member whose call
cannot start."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from calls.ice import STUN_SCHEMES, TURN_SCHEMES, url_problem

TURN_EXAMPLE = "turn:turn.example.org:3478?transport=udp,turns:turn.example.org:5349?transport=tcp"


@register()
def ice_settings(app_configs, **kwargs) -> list:
    problems = []
    for url in settings.TURN_URLS:
        problem = url_problem(url, TURN_SCHEMES)
        if problem:
            problems.append(
                Error(
                    f"TURN_URLS: {url!r} is not a TURN server URL: {problem}.",
                    hint=f"For example TURN_URLS={TURN_EXAMPLE}"
                    + (". STUN servers go in STUN_URLS." if url.startswith("stun") else ""),
                    id="calls.E001",
                )
            )
    for url in settings.STUN_URLS:
        problem = url_problem(url, STUN_SCHEMES)
        if problem:
            problems.append(
                Error(
                    f"STUN_URLS: {url!r} is not a STUN server URL: {problem}.",
                    hint="For example STUN_URLS=stun:turn.example.org:3478"
                    + (". TURN servers go in TURN_URLS." if url.startswith("turn") else ""),
                    id="calls.E002",
                )
            )
    if settings.TURN_CREDENTIAL_TTL <= 0:
        problems.append(
            Error(
                f"TURN_CREDENTIAL_TTL must be a positive number of seconds, "
                f"not {settings.TURN_CREDENTIAL_TTL}.",
                hint="The default, 43200 (12 hours), outlasts any call.",
                id="calls.E003",
            )
        )
    turn = bool(settings.TURN_URLS and settings.TURN_SECRET)
    if settings.CALL_FORCE_RELAY and not turn:
        problems.append(
            Error(
                "CALL_FORCE_RELAY is on but no TURN server is configured, so no call could "
                "connect.",
                hint="Set TURN_URLS and TURN_SECRET, or turn CALL_FORCE_RELAY off.",
                id="calls.E004",
            )
        )
    if bool(settings.TURN_URLS) != bool(settings.TURN_SECRET):
        missing, given = (
            ("TURN_SECRET", "TURN_URLS") if settings.TURN_URLS else ("TURN_URLS", "TURN_SECRET")
        )
        problems.append(
            Warning(
                f"{given} is set but {missing} is not, so calls use no TURN server.",
                hint="TURN_SECRET is the static-auth-secret of the coturn server in TURN_URLS; "
                "see the README's Calls section.",
                id="calls.W001",
            )
        )
    return problems
