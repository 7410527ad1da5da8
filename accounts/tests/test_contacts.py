"""Contacts: requests, answers, removal and blocks, through the services and the pages."""

import re
import threading

import pytest
from django.db import connection, connections
from django.http import Http404
from django.test import Client

from accounts import selectors, services
from accounts.models import Block, Contact, ContactRequest
from rooms.models import Room

pytestmark = pytest.mark.django_db

# SQLite has no row locks and lets one writer in at a time: racing there shows nothing.
needs_row_locks = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="racing needs PostgreSQL's row locks"
)


@pytest.fixture
def ada(user_factory):
    return user_factory(username="ada", display_name="Ada Lovelace")


@pytest.fixture
def bob(user_factory):
    return user_factory(username="bob", display_name="Bob Marley")


def befriend(a, b):
    services.contact_request_send(sender=a, username=b.username)
    request = ContactRequest.objects.get(sender=a, recipient=b)
    services.contact_request_accept(member=b, request_id=request.pk)


# --- Sending ---------------------------------------------------------------------------------


def test_a_request_reaches_its_recipient(ada, bob):
    assert services.contact_request_send(sender=ada, username="bob") == "sent"
    assert [r.sender for r in selectors.incoming_requests(bob)] == [ada]
    assert selectors.relation(ada, bob).kind == "sent"
    assert selectors.relation(bob, ada).kind == "received"


def test_asking_twice_is_one_request(ada, bob):
    services.contact_request_send(sender=ada, username="bob")
    services.contact_request_send(sender=ada, username="BOB")
    assert ContactRequest.objects.count() == 1


def test_two_members_asking_each_other_become_contacts(ada, bob):
    services.contact_request_send(sender=ada, username="bob")
    assert services.contact_request_send(sender=bob, username="ada") == "contact"
    assert selectors.are_contacts(ada, bob)
    assert selectors.are_contacts(bob, ada)
    assert ContactRequest.objects.count() == 0


def test_a_request_to_yourself_is_refused(ada):
    with pytest.raises(services.Refused, match="That is you"):
        services.contact_request_send(sender=ada, username="ada")
    assert ContactRequest.objects.count() == 0


def test_a_request_to_a_username_nobody_has_is_refused(ada):
    with pytest.raises(services.Refused, match="Nobody here is called “nemo”"):
        services.contact_request_send(sender=ada, username="nemo")


def test_a_request_to_a_contact_is_refused(ada, bob):
    befriend(ada, bob)
    with pytest.raises(services.Refused, match="Bob Marley is already one of your contacts"):
        services.contact_request_send(sender=ada, username="bob")
    assert ContactRequest.objects.count() == 0


def test_requests_are_limited_per_hour_with_a_clear_message(ada, user_factory):
    others = [user_factory() for _ in range(services.CONTACT_REQUEST_LIMIT + 1)]
    for other in others[:-1]:
        services.contact_request_send(sender=ada, username=other.username)
    with pytest.raises(services.Refused, match="20 contact requests in the last hour"):
        services.contact_request_send(sender=ada, username=others[-1].username)
    assert ContactRequest.objects.count() == services.CONTACT_REQUEST_LIMIT


def test_a_request_to_someone_who_blocked_you_looks_sent_and_is_never_delivered(ada, bob):
    services.member_block(blocker=bob, username="ada")
    assert services.contact_request_send(sender=ada, username="bob") == "sent"
    assert selectors.relation(ada, bob).kind == "sent"
    assert selectors.incoming_requests(bob) == []
    assert selectors.relation(bob, ada).kind == "blocked"
    assert [r.recipient for r in selectors.outgoing_requests(ada)] == [bob]


# --- Answering -------------------------------------------------------------------------------


def test_accepting_makes_two_contacts_and_opens_their_conversation(ada, bob):
    befriend(ada, bob)
    assert selectors.contacts_of(ada) == [bob]
    assert selectors.contacts_of(bob) == [ada]
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    assert room.is_private
    assert not room.is_read_only
    assert set(room.memberships.values_list("member__username", flat=True)) == {"ada", "bob"}


def test_a_request_can_only_be_accepted_by_its_recipient(ada, bob, user_factory):
    carol = user_factory(username="carol")
    services.contact_request_send(sender=ada, username="bob")
    request = ContactRequest.objects.get()
    for outsider in (carol, ada):
        with pytest.raises(Http404):
            services.contact_request_accept(member=outsider, request_id=request.pk)
        with pytest.raises(Http404):
            services.contact_request_decline(member=outsider, request_id=request.pk)
    assert ContactRequest.objects.filter(pk=request.pk).exists()
    assert Contact.objects.count() == 0


def test_answering_a_request_that_is_gone_is_404_and_changes_nothing(ada, bob):
    services.contact_request_send(sender=ada, username="bob")
    request = ContactRequest.objects.get()
    services.contact_request_accept(member=bob, request_id=request.pk)
    with pytest.raises(Http404):
        services.contact_request_accept(member=bob, request_id=request.pk)
    with pytest.raises(Http404):
        services.contact_request_decline(member=bob, request_id=request.pk)
    assert Contact.objects.count() == 2
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


def test_an_undelivered_request_cannot_be_answered(ada, bob):
    services.member_block(blocker=bob, username="ada")
    services.contact_request_send(sender=ada, username="bob")
    request = ContactRequest.objects.get()
    with pytest.raises(Http404):
        services.contact_request_accept(member=bob, request_id=request.pk)
    assert Contact.objects.count() == 0


def test_declining_removes_the_request_and_the_sender_may_ask_again(ada, bob):
    services.contact_request_send(sender=ada, username="bob")
    services.contact_request_decline(member=bob, request_id=ContactRequest.objects.get().pk)
    assert ContactRequest.objects.count() == 0
    assert selectors.relation(ada, bob).kind == "none"
    services.contact_request_send(sender=ada, username="bob")
    assert selectors.incoming_requests(bob)[0].sender == ada


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_the_same_accept_from_two_tabs_at_once_has_exactly_one_effect(ada, bob):
    services.contact_request_send(sender=ada, username="bob")
    request_id = ContactRequest.objects.get().pk
    barrier, outcomes = threading.Barrier(2), []

    def accept():
        try:
            barrier.wait()
            services.contact_request_accept(member=bob, request_id=request_id)
            outcomes.append("accepted")
        except Http404:
            outcomes.append("404")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["404", "accepted"]
    assert Contact.objects.count() == 2
    assert Room.objects.filter(kind=Room.Kind.DIRECT).count() == 1


@pytest.mark.django_db(transaction=True)
@needs_row_locks
def test_two_members_asking_each_other_at_the_same_moment_become_contacts(ada, bob):
    barrier = threading.Barrier(2)

    def ask(sender, username):
        try:
            barrier.wait()
            services.contact_request_send(sender=sender, username=username)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=ask, args=(ada, "bob")),
        threading.Thread(target=ask, args=(bob, "ada")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Contact.objects.count() == 2
    assert ContactRequest.objects.count() == 0


# --- Removing and blocking -------------------------------------------------------------------


def test_either_contact_can_remove_the_other_and_the_conversation_turns_read_only(ada, bob):
    befriend(ada, bob)
    services.contact_remove(member=bob, username="ada")
    assert Contact.objects.count() == 0
    assert Room.objects.get(kind=Room.Kind.DIRECT).is_read_only


def test_becoming_contacts_again_reopens_the_same_conversation(ada, bob):
    befriend(ada, bob)
    room = Room.objects.get(kind=Room.Kind.DIRECT)
    services.contact_remove(member=ada, username="bob")
    befriend(bob, ada)
    assert list(Room.objects.filter(kind=Room.Kind.DIRECT)) == [room]
    room.refresh_from_db()
    assert not room.is_read_only


def test_blocking_removes_the_contact_and_every_pending_request(ada, bob, user_factory):
    befriend(ada, bob)
    services.member_block(blocker=bob, username="ada")
    assert Contact.objects.count() == 0
    assert Room.objects.get(kind=Room.Kind.DIRECT).is_read_only
    carol = user_factory(username="carol")
    services.contact_request_send(sender=carol, username="bob")
    services.contact_request_send(sender=bob, username="carol")  # they are contacts now
    dave = user_factory(username="dave")
    services.contact_request_send(sender=dave, username="bob")
    services.contact_request_send(sender=bob, username="dave")
    services.contact_remove(member=bob, username="dave")
    services.contact_request_send(sender=dave, username="bob")
    services.member_block(blocker=bob, username="dave")
    assert not ContactRequest.objects.filter(sender=dave).exists()


def test_a_blocked_member_sees_a_former_contact_never_a_block(ada, bob):
    befriend(ada, bob)
    services.member_block(blocker=bob, username="ada")
    assert selectors.contacts_of(ada) == []
    assert selectors.relation(ada, bob).kind == "none"


def test_a_member_cannot_block_themselves(ada):
    with pytest.raises(services.Refused):
        services.member_block(blocker=ada, username="ada")
    assert Block.objects.count() == 0


def test_unblocking_lets_the_two_ask_each_other_again(ada, bob):
    services.member_block(blocker=bob, username="ada")
    with pytest.raises(services.Refused, match="You have blocked Ada Lovelace"):
        services.contact_request_send(sender=bob, username="ada")
    services.member_unblock(blocker=bob, username="ada")
    services.contact_request_send(sender=bob, username="ada")
    assert selectors.incoming_requests(ada)[0].sender == bob


# --- Finding people --------------------------------------------------------------------------


def test_people_search_finds_by_part_of_a_display_name_or_username(ada, bob, client_of):
    response = client_of(ada).get("/people/", {"q": "marl"})
    assert response.status_code == 200
    assert "Bob Marley" in response.text
    assert "@bob" in response.text
    assert "Add contact" in response.text
    assert "Bob Marley" in client_of(ada).get("/people/", {"q": "BO"}).text


def test_people_search_never_shows_or_matches_email_addresses(ada, bob, client_of):
    assert "bob@example.org" not in client_of(ada).get("/people/", {"q": "bob"}).text
    assert "Bob Marley" not in client_of(ada).get("/people/", {"q": "example.org"}).text


def test_people_search_never_lists_members_who_blocked_you(ada, bob, client_of):
    services.member_block(blocker=bob, username="ada")
    assert "Bob Marley" not in client_of(ada).get("/people/", {"q": "bob"}).text
    # …while the member who blocked sees whom they blocked, with the way back.
    found = client_of(bob).get("/people/", {"q": "ada"}).text
    assert "Blocked by you" in found
    assert "Unblock" in found


def test_people_search_shows_each_relation_with_the_action_that_fits(
    ada, bob, user_factory, client_of
):
    carol = user_factory(username="carol", display_name="Carol Bee")
    user_factory(username="dave", display_name="Dave Bee")
    eve = user_factory(username="eve", display_name="Eve Bee")
    befriend(ada, carol)
    services.contact_request_send(sender=ada, username="dave")
    services.contact_request_send(sender=eve, username="ada")
    page = client_of(ada).get("/people/", {"q": "bee"}).text
    assert "Contact</span>" in page
    assert ">Message</a>" in page
    assert "Request sent" in page
    assert "Cancel request" in page
    assert "Wants to be your contact" in page
    assert ">Accept</button>" in page


def test_people_search_answers_only_signed_in_members(ada):
    response = Client().get("/people/", {"q": "ada"})
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_over_long_search_query_is_cut_to_100_characters(ada, client_of):
    response = client_of(ada).get("/people/", {"q": "b" * 5000})
    assert response.status_code == 200
    assert "b" * 100 in response.text
    assert "b" * 101 not in response.text


def test_htmx_search_answers_with_the_results_alone(ada, bob, client_of):
    response = client_of(ada).get(
        "/people/", {"q": "bob"}, headers={"HX-Request": "true", "HX-Target": "people-results"}
    )
    assert response.text.lstrip().startswith('<div id="people-results"')


def test_the_member_page_of_someone_who_blocked_you_looks_like_a_stranger(ada, bob, client_of):
    def page() -> str:
        text = client_of(ada).get("/people/bob/").text
        return re.sub(r'(name="csrfmiddlewaretoken" value=|"X-CSRFToken": )"[^"]+"', "", text)

    as_a_stranger = page()
    services.member_block(blocker=bob, username="ada")
    assert page() == as_a_stranger
    assert "Add contact" in as_a_stranger


def test_the_member_page_shows_presence_to_contacts_only(ada, bob, client_of):
    assert "presence-of-" not in client_of(ada).get("/people/bob/").text
    befriend(ada, bob)
    assert f"presence-of-{bob.pk}" in client_of(ada).get("/people/bob/").text


def test_a_member_page_of_nobody_is_404(ada, client_of):
    assert client_of(ada).get("/people/nemo/").status_code == 404


# --- The pages' forms ------------------------------------------------------------------------


def test_a_request_sent_without_javascript_returns_to_the_page_with_a_notice(ada, bob, client_of):
    response = client_of(ada).post("/people/bob/request/", {"next": "/people/?q=bob"}, follow=True)
    assert response.redirect_chain[-1][0] == "/people/?q=bob"
    assert "Request sent to Bob Marley." in response.text


def test_a_request_never_returns_to_another_site(ada, bob, client_of):
    response = client_of(ada).post("/people/bob/request/", {"next": "https://evil.example/"})
    assert response["Location"] == "/people/bob/"


def test_a_request_with_htmx_answers_with_the_new_actions_and_the_sidebar(ada, bob, client_of):
    response = client_of(ada).post("/people/bob/request/", headers={"HX-Request": "true"})
    assert response.text.lstrip().startswith(f'<div id="actions-{bob.pk}"')
    assert "Request sent to Bob Marley." in response.text
    assert 'id="sidebar-contacts"' in response.text


def test_adding_by_an_unknown_username_says_so(ada, client_of):
    response = client_of(ada).post("/contacts/add/", {"username": "nemo"}, follow=True)
    assert "Nobody here is called “nemo”." in response.text


def test_accepting_someone_elses_request_over_http_is_404(ada, bob, user_factory, client_of):
    carol = user_factory(username="carol")
    services.contact_request_send(sender=ada, username="bob")
    request = ContactRequest.objects.get()
    assert client_of(carol).post(f"/contacts/requests/{request.pk}/accept/").status_code == 404
    assert client_of(carol).post(f"/contacts/requests/{request.pk}/decline/").status_code == 404
    assert client_of(bob).post("/contacts/requests/999999/accept/").status_code == 404
    assert ContactRequest.objects.count() == 1


def test_a_double_submitted_accept_has_one_effect(ada, bob, client_of):
    services.contact_request_send(sender=ada, username="bob")
    url = f"/contacts/requests/{ContactRequest.objects.get().pk}/accept/"
    bobs = client_of(bob)
    assert bobs.post(url).status_code == 302
    assert bobs.post(url).status_code == 404
    assert Contact.objects.count() == 2


@pytest.mark.parametrize(
    "path",
    [
        "/people/bob/request/",
        "/people/bob/block/",
        "/people/bob/remove/",
        "/people/bob/unblock/",
        "/people/bob/cancel/",
        "/contacts/add/",
    ],
)
def test_a_post_without_csrf_is_refused(ada, bob, client_of, path):
    response = client_of(ada, enforce_csrf_checks=True).post(path, {"username": "bob"})
    assert response.status_code == 403
    assert ContactRequest.objects.count() == 0
    assert Block.objects.count() == 0


def test_an_accept_without_csrf_is_refused(ada, bob, client_of):
    services.contact_request_send(sender=ada, username="bob")
    url = f"/contacts/requests/{ContactRequest.objects.get().pk}/accept/"
    assert client_of(bob, enforce_csrf_checks=True).post(url).status_code == 403
    assert Contact.objects.count() == 0


def test_names_full_of_html_are_text_on_every_page(user_factory, client_of):
    hostile = '<img src=x onerror="alert(1)">'
    mallory = user_factory(username="mallory", display_name=hostile)
    ada = user_factory(username="ada2", display_name="Ada")
    services.contact_request_send(sender=mallory, username="ada2")
    pages = [
        client_of(ada).get("/people/", {"q": "mallory"}).text,
        client_of(ada).get("/people/mallory/").text,
        client_of(ada).get("/contacts/").text,
    ]
    befriend_id = ContactRequest.objects.get().pk
    services.contact_request_accept(member=ada, request_id=befriend_id)
    pages.append(client_of(ada).get("/").text)
    pages.append(client_of(ada).get("/people/mallory/chat/", follow=True).text)
    for page in pages:
        assert hostile not in page
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_the_contacts_page_lists_contacts_requests_both_ways_and_blocked_members(
    ada, bob, user_factory, client_of
):
    carol = user_factory(username="carol", display_name="Carol")
    user_factory(username="dave", display_name="Dave")
    user_factory(username="eve", display_name="Eve")
    befriend(ada, bob)
    services.contact_request_send(sender=carol, username="ada")
    services.contact_request_send(sender=ada, username="dave")
    services.member_block(blocker=ada, username="eve")
    page = client_of(ada).get("/contacts/").text
    incoming, rest = page.split('id="contacts-incoming"')[1].split('id="contacts-list"')
    listed, rest = rest.split('id="contacts-outgoing"')
    outgoing, blocked = rest.split('id="contacts-blocked"')
    assert "Carol" in incoming
    assert "Accept" in incoming
    assert "Bob Marley" in listed
    assert f"presence-of-{bob.pk}" in listed
    assert "Dave" in outgoing
    assert "Cancel request" in outgoing
    assert "Eve" in blocked
    assert "Unblock" in blocked


def test_the_sidebar_lists_contacts_by_name_with_presence_and_a_request_badge(
    ada, bob, user_factory, client_of
):
    zed = user_factory(username="zed", display_name="Aaron Zed")
    befriend(ada, bob)
    befriend(ada, zed)
    services.contact_request_send(sender=user_factory(), username="ada")
    page = client_of(ada).get("/").text
    sidebar = page.split('id="sidebar-contacts"')[1].split("</section>")[0]
    assert sidebar.index("Aaron Zed") < sidebar.index("Bob Marley")
    assert f"presence-of-{bob.pk}" in sidebar
    assert "presence--offline" in sidebar
    room = Room.objects.get(direct_pair=f"{min(ada.pk, bob.pk)}:{max(ada.pk, bob.pk)}")
    assert f'id="unread-{room.pk}"' in sidebar
    assert '1<span class="visually-hidden"> request waiting' in sidebar


def test_the_rooms_list_leaves_direct_conversations_to_the_contact_list(ada, bob, client_of):
    befriend(ada, bob)
    page = client_of(ada).get("/").text
    rooms = page.split('id="sidebar-room-list"')[1].split("</ul>")[0]
    assert "Direct conversation" not in rooms
    assert "direct-" not in rooms


def test_contact_ids_are_a_members_contacts(ada, bob, user_factory):
    befriend(ada, bob)
    user_factory(username="carol")
    assert selectors.contact_ids(ada.pk) == {bob.pk}


def test_answering_from_a_notice_with_htmx_leaves_the_page_to_the_member_socket(
    ada, bob, client_of
):
    # The socket replaces the notices in every tab, so the form that asked is gone by the time
    # an answer with fragments would arrive (htmx then logs an error and swaps nothing).
    services.contact_request_send(sender=ada, username="bob")
    url = f"/contacts/requests/{ContactRequest.objects.get().pk}/accept/"
    response = client_of(bob).post(url, {"from": "notice"}, headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert selectors.are_contacts(bob, ada)
