"""Calls through their pages: the forms with and without htmx, what each answers, the 404s, CSRF,
and the call slot on a page load."""

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services as contacts
from calls import services
from calls.models import Call
from rooms import selectors as room_selectors

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


def befriend(a, b):
    contacts.contact_request_send(sender=a, username=b.username)
    contacts.contact_request_send(sender=b, username=a.username)


def client_of(member, **options) -> Client:
    client = Client(**options)
    client.force_login(member)
    return client


@pytest.fixture
def ada(user_factory):
    return user_factory(username="ada", display_name="Ada")


@pytest.fixture
def bob(user_factory):
    return user_factory(username="bob", display_name="Bob")


@pytest.fixture
def carol(user_factory):
    return user_factory(username="carol", display_name="Carol")


@pytest.fixture
def pair(ada, bob):
    befriend(ada, bob)
    return ada, bob


def ring(caller, callee, video=True) -> Call:
    return services.call_start(caller=caller, callee=callee, video=video)


def fresh(call: Call) -> Call:
    return Call.objects.get(pk=call.pk)


def slot_of(page: str) -> str:
    return page.split('id="call-slot"')[1].split("</main>")[0]


def conversation(a, b) -> str:
    return room_selectors.direct_room(a, b).get_absolute_url()


# --- Starting --------------------------------------------------------------------------------


def test_a_video_call_form_rings_and_goes_to_the_call_page(pair):
    ada, bob = pair
    response = client_of(ada).post("/calls/new/bob/", {"kind": "video"})
    call = Call.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/calls/{call.pk}/"
    assert call.callee == bob
    assert call.video
    assert call.state == Call.State.RINGING


def test_an_audio_call_form_starts_an_audio_only_call(pair):
    ada, _ = pair
    client_of(ada).post("/calls/new/bob/", {"kind": "audio"})
    assert not Call.objects.get().video


def test_a_call_started_with_htmx_answers_with_hx_redirect(pair):
    ada, _ = pair
    response = client_of(ada).post("/calls/new/bob/", {"kind": "video"}, headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/calls/{Call.objects.get().pk}/"


@pytest.mark.parametrize(
    ("username", "words"),
    [
        ("ada", "You cannot call yourself."),
        ("bob", "You can only call your contacts."),
        ("nemo", "You can only call your contacts."),
    ],
)
def test_a_refused_call_goes_back_with_the_reason_and_saves_nothing(ada, bob, username, words):
    response = client_of(ada).post(
        f"/calls/new/{username}/", {"kind": "video", "next": "/people/"}, follow=True
    )
    assert response.redirect_chain == [("/people/", 302)]
    assert words in response.text
    assert Call.objects.count() == 0


def test_a_refused_call_with_htmx_sends_the_page_back_with_the_reason(ada, bob):
    client = client_of(ada)
    response = client.post("/calls/new/bob/", headers=HTMX | {"Referer": "http://testserver/x/"})
    assert response["HX-Redirect"] == "http://testserver/x/"
    assert "You can only call your contacts." in client.get("/").text
    assert Call.objects.count() == 0


def test_a_refused_call_never_goes_back_to_another_site(ada):
    response = client_of(ada).post("/calls/new/ada/", {"next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_calling_while_in_a_call_says_so_and_saves_nothing(pair, carol):
    ada, bob = pair
    befriend(ada, carol)
    ring(ada, bob)
    response = client_of(ada).post("/calls/new/carol/", {"next": "/"}, follow=True)
    assert "You are already in a call. Hang up first." in response.text
    assert Call.objects.count() == 1


def test_a_call_to_someone_in_a_call_stays_where_the_caller_is_and_says_busy(pair, carol):
    ada, bob = pair
    befriend(bob, carol)
    busy_with = ring(carol, bob)
    services.call_accept(call_id=busy_with.pk, member=bob)
    response = client_of(ada).post("/calls/new/bob/", {"next": "/rooms/"}, follow=True)
    assert response.redirect_chain == [("/rooms/", 302)]
    assert "Bob is in another call. Try again later." in response.text
    assert Call.objects.exclude(pk=busy_with.pk).get().outcome == Call.Outcome.BUSY


def test_a_busy_call_with_htmx_sends_the_page_back_with_the_notice(pair, carol):
    ada, bob = pair
    befriend(bob, carol)
    services.call_accept(call_id=ring(carol, bob).pk, member=bob)
    client = client_of(ada)
    response = client.post("/calls/new/bob/", headers=HTMX | {"Referer": "http://testserver/x/"})
    assert response["HX-Redirect"] == "http://testserver/x/"
    assert "Bob is in another call. Try again later." in client.get("/").text


def test_starting_a_call_needs_a_post(pair):
    ada, _ = pair
    assert client_of(ada).get("/calls/new/bob/").status_code == 405
    assert Call.objects.count() == 0


def test_starting_a_call_needs_a_signed_in_member(pair):
    response = Client().post("/calls/new/bob/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert Call.objects.count() == 0


def test_a_call_form_without_csrf_is_refused_and_rings_nobody(pair):
    ada, _ = pair
    response = client_of(ada, enforce_csrf_checks=True).post("/calls/new/bob/", {"kind": "video"})
    assert response.status_code == 403
    assert Call.objects.count() == 0


def test_the_call_buttons_post_with_the_pages_csrf_token(pair):
    ada, _ = pair
    client = client_of(ada, enforce_csrf_checks=True)
    page = client.get("/people/bob/").text
    assert 'action="/calls/new/bob/"' in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    response = client.post("/calls/new/bob/", {"kind": "audio", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert not Call.objects.get().video


# --- Answering and ending --------------------------------------------------------------------


def test_accepting_goes_to_the_call_page(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/accept/")
    assert response["Location"] == f"/calls/{call.pk}/"
    assert fresh(call).state == Call.State.ACTIVE


def test_accepting_audio_only_without_htmx_goes_to_the_call_page_without_video(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/accept/", {"audio_only": "1"})
    assert response["Location"] == f"/calls/{call.pk}/?audio=1"
    assert fresh(call).state == Call.State.ACTIVE


ACCEPT_HTMX = HTMX | {"HX-Target": "main"}  # what the slot's Accept forms send


def test_accepting_with_htmx_answers_with_the_call_pages_main_to_swap_in(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/accept/", headers=ACCEPT_HTMX)
    assert response.status_code == 200
    assert "HX-Redirect" not in response
    main = response.text
    # The title first (htmx sets the page's from it), then what the call page's #main holds.
    assert main.lstrip().startswith("<title>Video call with Ada · Parley</title>")
    assert 'data-call-state="active"' in slot_of(main)
    assert 'id="notices"' in main
    assert 'id="request-notices"' in main
    assert f'data-call-id="{call.pk}"' in main
    assert 'data-video="1"' in main
    assert 'data-state="active"' in main
    assert 'id="call-chat-body"' in main
    # Nothing outside #main: no layout, no sidebar, no document around it.
    for outside in ('class="layout"', 'id="sidebar"', 'id="main"', "<html", "<head>", "<body"):
        assert outside not in main
    assert fresh(call).state == Call.State.ACTIVE


def test_the_accepts_main_is_the_call_pages_main(pair):
    ada, bob = pair
    call = ring(ada, bob)
    client = client_of(bob)
    main = client.post(f"/calls/{call.pk}/accept/", headers=ACCEPT_HTMX).text
    page = client.get(f"/calls/{call.pk}/").text
    inner = re.search(r'<main id="main"[^>]*>(.*)</main>', page, re.S).group(1)
    assert same_html(main.split("</title>", 1)[1], inner)


def same_html(a: str, b: str) -> bool:
    """Equal but for whitespace and the CSRF tokens' masks (a new one at every render)."""

    def squeeze(html: str) -> str:
        html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "csrf", html)
        return re.sub(r"\s+", " ", html).strip()

    return squeeze(a) == squeeze(b)


def test_accepting_with_htmx_from_an_older_slot_answers_with_the_whole_call_page(pair):
    # A slot rendered before its forms said hx-target="#main" swaps .layout (no target id).
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/accept/", headers=HTMX)
    assert response.status_code == 200
    assert 'class="layout"' in response.text
    assert f'data-call-id="{call.pk}"' in response.text
    assert fresh(call).state == Call.State.ACTIVE


def test_accepting_audio_only_with_htmx_answers_with_a_call_page_without_video(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(
        f"/calls/{call.pk}/accept/", {"audio_only": "1"}, headers=ACCEPT_HTMX
    )
    assert response.status_code == 200
    assert 'data-kind="video" data-video="0"' in response.text
    assert fresh(call).state == Call.State.ACTIVE


def test_a_second_accept_from_another_tab_says_where_the_call_went(pair):
    ada, bob = pair
    call = ring(ada, bob)
    first, second = client_of(bob), client_of(bob)
    assert first.post(f"/calls/{call.pk}/accept/", headers=HTMX).status_code == 200
    response = second.post(
        f"/calls/{call.pk}/accept/", headers=HTMX | {"Referer": "http://testserver/rooms/"}
    )
    assert response["HX-Redirect"] == "http://testserver/rooms/"
    assert "You answered this call in another tab." in second.get("/").text
    assert fresh(call).state == Call.State.ACTIVE


def test_the_caller_accepting_is_refused_with_words(pair):
    ada, bob = pair
    call = ring(ada, bob)
    client = client_of(ada)
    response = client.post(f"/calls/{call.pk}/accept/", {"next": "/"})
    assert response["Location"] == "/"
    assert "Only Bob can answer this call." in client.get("/").text
    assert fresh(call).state == Call.State.RINGING


def test_an_accept_without_csrf_is_refused(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob, enforce_csrf_checks=True).post(f"/calls/{call.pk}/accept/")
    assert response.status_code == 403
    assert fresh(call).state == Call.State.RINGING


def test_declining_with_htmx_answers_204_and_leaves_the_slot_to_the_member_socket(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/decline/", headers=HTMX)
    assert response.status_code == 204
    assert fresh(call).outcome == Call.Outcome.DECLINED


def test_declining_without_javascript_goes_back_to_the_page(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/decline/", {"next": "/rooms/"})
    assert response["Location"] == "/rooms/"
    assert fresh(call).outcome == Call.Outcome.DECLINED


def test_declining_never_goes_back_to_another_site(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(bob).post(f"/calls/{call.pk}/decline/", {"next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_cancelling_goes_to_the_conversation(pair):
    ada, bob = pair
    call = ring(ada, bob)
    response = client_of(ada).post(f"/calls/{call.pk}/cancel/")
    assert response["Location"] == conversation(ada, bob)
    assert fresh(call).outcome == Call.Outcome.CANCELLED


@pytest.mark.parametrize("who", ["ada", "bob"])
def test_hanging_up_goes_to_the_conversation_where_the_row_is(pair, who):
    ada, bob = pair
    call = ring(ada, bob)
    services.call_accept(call_id=call.pk, member=bob)
    client = client_of({"ada": ada, "bob": bob}[who])
    response = client.post(f"/calls/{call.pk}/hangup/", headers=HTMX)
    assert response["HX-Redirect"] == conversation(ada, bob)
    assert fresh(call).outcome == Call.Outcome.COMPLETED
    page = client.get(conversation(ada, bob)).text
    assert re.search(r"class=\"message__call\">.*?</span>Video call · 0:0\d <time", page)


@pytest.mark.parametrize("action", ["accept", "decline", "cancel", "hangup"])
@pytest.mark.parametrize("htmx", [False, True])
def test_a_call_that_is_not_yours_is_404_and_changes_nothing(pair, carol, action, htmx):
    ada, bob = pair
    call = ring(ada, bob)
    headers = HTMX if htmx else {}
    assert client_of(carol).post(f"/calls/{call.pk}/{action}/", headers=headers).status_code == 404
    assert client_of(bob).post(f"/calls/999999/{action}/", headers=headers).status_code == 404
    assert fresh(call).state == Call.State.RINGING


def test_the_call_page_is_404_to_everyone_else_and_for_no_call(pair, carol):
    ada, bob = pair
    call = ring(ada, bob)
    assert client_of(carol).get(f"/calls/{call.pk}/").status_code == 404
    assert client_of(ada).get("/calls/999999/").status_code == 404


def test_the_call_page_of_a_silent_call_is_404_to_the_member_who_blocked(pair):
    ada, bob = pair
    contacts.member_block(blocker=bob, username="ada")
    call = ring(ada, bob)
    assert client_of(bob).get(f"/calls/{call.pk}/").status_code == 404
    assert client_of(bob).post(f"/calls/{call.pk}/accept/").status_code == 404
    assert fresh(call).state == Call.State.RINGING


@pytest.mark.parametrize(
    ("action", "who"), [("accept", "bob"), ("decline", "bob"), ("cancel", "ada"), ("hangup", "ada")]
)
def test_acting_on_an_ended_call_gives_a_notice_and_changes_nothing(pair, action, who):
    ada, bob = pair
    call = ring(ada, bob)
    services.call_cancel(call_id=call.pk, member=ada)
    before = fresh(call)
    client = client_of({"ada": ada, "bob": bob}[who])
    response = client.post(f"/calls/{call.pk}/{action}/", {"next": "/rooms/"}, follow=True)
    assert response.redirect_chain == [("/rooms/", 302)]
    assert "This call has already ended." in response.text
    after = fresh(call)
    assert (after.outcome, after.ended_at) == (before.outcome, before.ended_at)


def test_a_late_htmx_decline_sends_the_page_back_with_a_notice(pair):
    ada, bob = pair
    call = ring(ada, bob)
    services.call_cancel(call_id=call.pk, member=ada)
    client = client_of(bob)
    response = client.post(
        f"/calls/{call.pk}/decline/", headers=HTMX | {"Referer": "http://testserver/rooms/"}
    )
    assert response["HX-Redirect"] == "http://testserver/rooms/"
    assert "This call has already ended." in client.get("/").text
    assert fresh(call).outcome == Call.Outcome.CANCELLED


@pytest.mark.parametrize("action", ["accept", "decline", "cancel", "hangup"])
def test_the_call_actions_need_a_post(pair, action):
    ada, bob = pair
    call = ring(ada, bob)
    assert client_of(bob).get(f"/calls/{call.pk}/{action}/").status_code == 405
    assert fresh(call).state == Call.State.RINGING


# --- The slot on every page ------------------------------------------------------------------


def test_every_page_of_the_callee_shows_the_incoming_call_with_working_forms(pair):
    ada, bob = pair
    call = ring(ada, bob, video=True)
    for path in ("/", "/rooms/", conversation(ada, bob)):
        slot = slot_of(client_of(bob).get(path).text)
        assert 'data-call-state="incoming"' in slot
        assert "<strong>Ada</strong> is calling you" in slot
        assert f'action="/calls/{call.pk}/accept/"' in slot
        assert "Accept audio only" in slot
        assert f'action="/calls/{call.pk}/decline/"' in slot
        assert 'name="csrfmiddlewaretoken"' in slot  # the forms work without JavaScript
        assert "calls/ring" in slot
        assert "hx-swap-oob" not in slot
        # With htmx, Accept swaps the call page's #main in, and says what media to start.
        assert 'hx-target="#main" hx-swap="innerHTML' in slot
        assert "hx-select" not in slot
        assert 'data-call-answer="video"' in slot
        assert 'data-call-answer="audio"' in slot


def test_an_incoming_audio_call_offers_no_audio_only_button(pair):
    ada, bob = pair
    ring(ada, bob, video=False)
    slot = slot_of(client_of(bob).get("/").text)
    assert "Audio call" in slot
    assert "Accept audio only" not in slot


def test_the_callers_pages_show_the_call_ringing_with_cancel(pair):
    ada, bob = pair
    call = ring(ada, bob)
    slot = slot_of(client_of(ada).get("/").text)
    assert 'data-call-state="outgoing"' in slot
    assert "Calling <strong>Bob</strong>…" in slot
    assert f'action="/calls/{call.pk}/cancel/"' in slot
    assert "Accept" not in slot


def test_an_active_call_shows_return_and_hang_up_on_both_sides(pair):
    ada, bob = pair
    call = ring(ada, bob)
    services.call_accept(call_id=call.pk, member=bob)
    for member, other in ((ada, "Bob"), (bob, "Ada")):
        slot = slot_of(client_of(member).get("/").text)
        assert 'data-call-state="active"' in slot
        assert f"In a call with <strong>{other}</strong>" in slot
        assert f'href="/calls/{call.pk}/"' in slot
        assert f'action="/calls/{call.pk}/hangup/"' in slot
    # Only pushed, to the tabs that did not answer: a page rendered later may be the call's own.
    assert "Answered in another tab" not in slot_of(client_of(bob).get("/").text)


def test_a_page_load_ends_a_call_that_rang_out_and_shows_no_call(pair, settings):
    ada, bob = pair
    call = ring(ada, bob)
    Call.objects.filter(pk=call.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.CALL_RING_TIMEOUT + 1)
    )
    slot = slot_of(client_of(bob).get("/").text)
    assert 'data-call-state="none"' in slot
    assert "is calling you" not in slot
    assert fresh(call).outcome == Call.Outcome.MISSED


def test_a_busy_members_pages_keep_showing_their_own_call(pair, carol):
    ada, bob = pair
    befriend(bob, carol)
    theirs = ring(carol, bob)
    services.call_accept(call_id=theirs.pk, member=bob)
    client_of(ada).post("/calls/new/bob/")
    slot = slot_of(client_of(bob).get("/").text)
    assert f'data-call-id="{theirs.pk}"' in slot
    assert "In a call with <strong>Carol</strong>" in slot
    assert "Ada" not in slot


def test_nobody_else_sees_the_call_in_their_slot(pair, carol):
    ada, bob = pair
    ring(ada, bob)
    assert 'data-call-state="none"' in slot_of(client_of(carol).get("/").text)


def test_the_slot_fragment_is_the_members_call_as_of_now(pair):
    ada, bob = pair
    assert 'data-call-state="none"' in client_of(bob).get("/calls/slot/").text
    call = ring(ada, bob)
    fragment = client_of(bob).get("/calls/slot/", headers=HTMX).text
    assert fragment.lstrip().startswith('<div id="call-slot"')
    assert 'data-call-state="incoming"' in fragment
    assert f'data-call-id="{call.pk}"' in fragment
    assert "hx-swap-oob" not in fragment


def test_the_slot_fragment_needs_a_signed_in_member():
    response = Client().get("/calls/slot/")
    assert response.status_code == 302


def test_names_full_of_html_are_text_in_the_slot(user_factory, bob):
    hostile = '<img src=x onerror="alert(1)">'
    mallory = user_factory(username="mallory", display_name=hostile)
    befriend(mallory, bob)
    ring(mallory, bob)
    for text in (client_of(bob).get("/").text, client_of(bob).get("/calls/slot/").text):
        slot = slot_of(text) if "</main>" in text else text
        assert hostile not in slot
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in slot


# --- The call page (its media is e2e's) ------------------------------------------------------


def test_the_call_page_opens_for_both_participants_with_their_part(pair):
    ada, bob = pair
    call = ring(ada, bob)
    services.call_accept(call_id=call.pk, member=bob)
    adas = client_of(ada).get(f"/calls/{call.pk}/")
    bobs = client_of(bob).get(f"/calls/{call.pk}/?audio=1")
    assert adas.status_code == bobs.status_code == 200
    assert 'data-video="1"' in adas.text
    assert 'data-video="0"' in bobs.text  # accepted audio only
    assert 'data-peer-name="Bob"' in adas.text
    assert 'data-peer-name="Ada"' in bobs.text
    # ICE servers and TURN credentials come over the call socket only, never in the page.
    assert "credential" not in adas.text
    assert "turn:" not in adas.text


def test_the_page_of_an_ended_call_says_how_it_ended(pair):
    ada, bob = pair
    call = ring(ada, bob)
    services.call_decline(call_id=call.pk, member=bob)
    page = client_of(ada).get(f"/calls/{call.pk}/").text
    assert 'data-state="ended"' in page
    assert "Bob declined the call." in page


class Elements(HTMLParser):
    """Each element with an id: its attributes, and the ids and classes of it and its ancestors."""

    VOID = {"input", "link", "meta", "br", "img", "hr", "source", "area", "base", "col", "wbr"}

    def __init__(self, html: str):
        super().__init__()
        self.open: list[tuple[str, str, set[str]]] = []  # (tag, id, classes)
        self.by_id: dict[str, dict] = {}
        self.lineage: dict[str, list[tuple[str, set[str]]]] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        here = (tag, attributes.get("id") or "", set((attributes.get("class") or "").split()))
        if here[1]:
            self.by_id[here[1]] = attributes
            self.lineage[here[1]] = [(i, c) for _, i, c in self.open] + [(here[1], here[2])]
        if tag not in self.VOID:
            self.open.append(here)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def selected(self, element_id: str, selector: str) -> bool:
        """Whether `selector` ("#id, .class, ...") picks the element or one of its ancestors."""
        for part in (p.strip() for p in selector.split(",")):
            assert part[:1] in "#.", f"only ids and classes are understood here, not {part!r}"
            for ancestor_id, classes in self.lineage[element_id]:
                if part == f"#{ancestor_id}" or (part[0] == "." and part[1:] in classes):
                    return True
        return False


def test_the_conversation_beside_the_call_brings_what_its_room_socket_resumes_from(pair):
    # The call page swaps in parts of the conversation's page (hx-select): the room socket's
    # resume frame includes #room-seq and the composer, so those must be among the parts, or
    # the socket hears no seq and the conversation never shows a message (e2e/test_call_media).
    ada, bob = pair
    call = ring(ada, bob)
    services.call_accept(call_id=call.pk, member=bob)
    call_page = Elements(client_of(ada).get(f"/calls/{call.pk}/").text)
    chat = call_page.by_id["call-chat-body"]
    assert chat["hx-get"] == conversation(ada, bob)
    room_page = Elements(client_of(ada).get(chat["hx-get"]).text)
    resume = room_page.by_id["room-resume"]
    assert room_page.selected("room-resume", chat["hx-select"])
    for included in resume["hx-include"].split(","):
        assert room_page.selected(included.strip().removeprefix("#"), chat["hx-select"]), included
    assert room_page.selected("message-list", chat["hx-select"])
