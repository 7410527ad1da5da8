"""ICE servers from settings, TURN REST credentials, and the system checks on those settings."""

import logging
import os
from pathlib import Path

import pytest

from calls import ice
from calls.checks import ice_settings
from e2e.turn import Coturn, turn_allocate, turnserver_path

NOW = 1_700_000_000
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_ice_servers(settings):
    """Every test starts from the defaults: nothing configured."""
    settings.TURN_URLS = []
    settings.TURN_SECRET = ""
    settings.TURN_CREDENTIAL_TTL = 43200
    settings.STUN_URLS = []
    settings.CALL_FORCE_RELAY = False


@pytest.fixture
def frozen_time(monkeypatch):
    monkeypatch.setattr(ice.time, "time", lambda: NOW + 0.75)


@pytest.fixture
def turn(settings):
    settings.TURN_URLS = ["turn:turn.example.org:3478?transport=udp"]
    settings.TURN_SECRET = "north-wind"
    return settings


def check_ids(settings_problems) -> list[str]:
    return [problem.id for problem in settings_problems]


# --- ice_config ---------------------------------------------------------------------------


def test_with_nothing_configured_calls_get_no_ice_servers_and_may_use_any_candidate():
    assert ice.ice_config(member_id=7, call_id=42) == {
        "iceServers": [],
        "iceTransportPolicy": "all",
    }


def test_stun_urls_are_one_entry_without_credentials(settings):
    settings.STUN_URLS = ["stun:stun.example.org:3478", "stun:[2001:db8::1]"]

    assert ice.ice_config(member_id=7, call_id=42)["iceServers"] == [
        {"urls": ["stun:stun.example.org:3478", "stun:[2001:db8::1]"]}
    ]


def test_turn_credential_is_coturns_rest_scheme_for_this_member_and_call(turn, frozen_time):
    servers = ice.ice_config(member_id=7, call_id=42)["iceServers"]

    # Computed apart from Parley:
    #   echo -n 1700043200:7-42 | openssl dgst -sha1 -hmac north-wind -binary | base64
    assert servers == [
        {
            "urls": ["turn:turn.example.org:3478?transport=udp"],
            "username": "1700043200:7-42",
            "credential": "idfiSQR3rj6Tsb7+R9I8l3a5pYA=",
        }
    ]


def test_turn_credential_expires_after_the_configured_ttl(turn, frozen_time):
    turn.TURN_CREDENTIAL_TTL = 60

    username = ice.ice_config(member_id=7, call_id=42)["iceServers"][0]["username"]

    assert username == f"{NOW + 60}:7-42"


def test_each_member_and_call_gets_a_credential_of_its_own(turn, frozen_time):
    def credential(member_id, call_id):
        server = ice.ice_config(member_id=member_id, call_id=call_id)["iceServers"][0]
        return server["username"], server["credential"]

    assert len({credential(7, 42), credential(8, 42), credential(7, 43)}) == 3


def test_stun_and_turn_together_are_two_entries(turn):
    turn.STUN_URLS = ["stun:turn.example.org:3478"]

    servers = ice.ice_config(member_id=7, call_id=42)["iceServers"]

    assert [server["urls"] for server in servers] == [
        ["stun:turn.example.org:3478"],
        ["turn:turn.example.org:3478?transport=udp"],
    ]


@pytest.mark.parametrize(
    ("urls", "secret"),
    [(["turn:turn.example.org:3478"], ""), ([], "north-wind")],
    ids=["urls-without-secret", "secret-without-urls"],
)
def test_half_configured_turn_gives_no_turn_entry(settings, urls, secret):
    settings.TURN_URLS, settings.TURN_SECRET = urls, secret

    assert ice.ice_config(member_id=7, call_id=42)["iceServers"] == []


def test_force_relay_makes_the_page_use_relay_candidates_only(turn):
    turn.CALL_FORCE_RELAY = True

    assert ice.ice_config(member_id=7, call_id=42)["iceTransportPolicy"] == "relay"


def test_a_bad_url_that_slipped_past_the_checks_is_left_out_not_handed_to_the_browser(turn, caplog):
    turn.TURN_URLS = ["turn://turn.example.org:3478", "turns:turn.example.org:5349?transport=tcp"]

    with caplog.at_level(logging.WARNING, logger="calls.ice"):
        servers = ice.ice_config(member_id=7, call_id=42)["iceServers"]

    assert servers[0]["urls"] == ["turns:turn.example.org:5349?transport=tcp"]
    assert "turn://turn.example.org:3478" in caplog.text


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example.org",
        "turn:turn.example.org:3478",
        "turn:192.0.2.10:3478?transport=udp",
        "turns:turn.example.org:5349?transport=tcp",
        "turn:[2001:db8::1]:3478?transport=tcp",
    ],
)
def test_turn_urls_browsers_accept_pass(url):
    assert ice.url_problem(url, ice.TURN_SCHEMES) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("stun:turn.example.org:3478", "must start with turn: or turns:"),
        ("https://turn.example.org", "must start with turn: or turns:"),
        ("turn.example.org:3478", "must start with turn: or turns:"),
        ("TURN:turn.example.org", "must start with turn: or turns:"),
        ("turn://turn.example.org:3478", "without '//'"),
        ("turn:turn.example.org:3478?transport=sctp", "must look like turn:host:port"),
        ("turn:", "must look like turn:host:port"),
        ("turn:user@turn.example.org", "must look like turn:host:port"),
        ("turn:turn.example.org:70000", "between 1 and 65535"),
    ],
)
def test_turn_urls_browsers_refuse_are_named_with_the_reason(url, why):
    assert why in ice.url_problem(url, ice.TURN_SCHEMES)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("stun:stun.example.org:3478", None),
        ("stuns:stun.example.org:5349", None),
        ("stun:stun.example.org:3478?transport=udp", "takes no ?transport="),
        ("turn:stun.example.org:3478", "must start with stun: or stuns:"),
    ],
)
def test_stun_urls_are_checked_too(url, problem):
    found = ice.url_problem(url, ice.STUN_SCHEMES)
    assert found is None if problem is None else problem in found


# --- System checks --------------------------------------------------------------------------


def test_good_settings_pass_the_checks(turn):
    turn.STUN_URLS = ["stun:turn.example.org:3478"]
    turn.CALL_FORCE_RELAY = True

    assert ice_settings(None) == []


def test_no_ice_settings_at_all_pass_the_checks():
    assert ice_settings(None) == []


def test_a_bad_turn_url_is_a_check_error_naming_it(turn):
    turn.TURN_URLS = ["turn:ok.example.org", "stun:turn.example.org:3478"]

    [problem] = ice_settings(None)

    assert problem.id == "calls.E001"
    assert "'stun:turn.example.org:3478'" in problem.msg
    assert "STUN servers go in STUN_URLS" in problem.hint


def test_a_bad_stun_url_is_a_check_error_naming_it(settings):
    settings.STUN_URLS = ["stun.example.org"]

    assert check_ids(ice_settings(None)) == ["calls.E002"]


def test_a_credential_ttl_that_is_not_positive_is_a_check_error(turn):
    turn.TURN_CREDENTIAL_TTL = 0

    assert check_ids(ice_settings(None)) == ["calls.E003"]


def test_forcing_relay_without_a_turn_server_is_a_check_error(settings):
    settings.CALL_FORCE_RELAY = True
    settings.TURN_URLS = ["turn:turn.example.org"]

    assert check_ids(ice_settings(None)) == ["calls.E004", "calls.W001"]


def test_turn_urls_without_a_secret_are_a_check_warning(settings):
    settings.TURN_URLS = ["turn:turn.example.org"]

    [problem] = ice_settings(None)

    assert problem.id == "calls.W001"
    assert "TURN_URLS is set but TURN_SECRET is not" in problem.msg


# --- Against a real coturn -----------------------------------------------------------------


def require_turnserver() -> None:
    if not turnserver_path():
        if os.environ.get("CI"):
            pytest.fail("turnserver is missing (Debian's coturn package; .ci/run installs it)")
        pytest.skip("turnserver not installed (Debian: apt-get install coturn)")


@pytest.fixture
def coturn(tmp_path):
    require_turnserver()
    server = Coturn(tmp_path).start()
    yield server
    server.stop()


def test_coturn_grants_a_relay_to_a_minted_credential(settings, coturn):
    settings.TURN_URLS, settings.TURN_SECRET = coturn.urls, coturn.secret
    server = ice.ice_config(member_id=7, call_id=42)["iceServers"][0]

    outcome, relayed = turn_allocate(coturn.port, server["username"], server["credential"])

    assert outcome == "ok"
    assert relayed[0] == "127.0.0.1"


def test_coturn_refuses_a_credential_minted_with_another_secret(settings, coturn):
    settings.TURN_URLS, settings.TURN_SECRET = coturn.urls, "not-" + coturn.secret
    server = ice.ice_config(member_id=7, call_id=42)["iceServers"][0]

    assert turn_allocate(coturn.port, server["username"], server["credential"]) == ("error", 401)


def test_coturn_refuses_an_expired_credential(settings, coturn, monkeypatch):
    settings.TURN_URLS, settings.TURN_SECRET = coturn.urls, coturn.secret
    settings.TURN_CREDENTIAL_TTL = 60
    monkeypatch.setattr(ice.time, "time", lambda: NOW)  # expired long ago
    server = ice.ice_config(member_id=7, call_id=42)["iceServers"][0]

    assert turn_allocate(coturn.port, server["username"], server["credential"]) == ("error", 401)


def test_the_sites_coturn_configuration_takes_parleys_credentials(settings, tmp_path):
    """site/turnserver.conf as shipped, with a secret in it and loopback instead of the world."""
    require_turnserver()
    shipped = (ROOT / "site" / "turnserver.conf").read_text()
    assert "use-auth-secret" in shipped.splitlines()
    config = tmp_path / "turnserver.conf"
    config.write_text(
        shipped.replace("static-auth-secret=CHANGE-ME", "static-auth-secret=north-wind").replace(
            "\nsyslog\n", "\n"
        )
    )
    coturn = Coturn(tmp_path, secret="north-wind", config=config).start()
    try:
        settings.TURN_URLS, settings.TURN_SECRET = coturn.urls, "north-wind"
        server = ice.ice_config(member_id=7, call_id=42)["iceServers"][0]

        outcome, _ = turn_allocate(coturn.port, server["username"], server["credential"])
    finally:
        coturn.stop()
    assert outcome == "ok"
