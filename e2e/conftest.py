"""Browser tests: a live daphne server started here, driven by Chromium through Playwright.

The server is a separate process running the real ASGI application; it shares the test database
with this process (an SQLite file, or PostgreSQL's test database), so fixtures can make members
with the ORM and the server sees them. Tests use `transactional_db`, so what a test writes is
committed, and emptied again after it.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Browser

from e2e.csp import CspWatch
from e2e.helpers import CHROMIUM_FLAGS, DESKTOP, CuttableLink
from parley.tests.live_server import LiveServer

E2E_DIR = Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def _orm_beside_playwright():
    """Playwright's sync API keeps an asyncio loop in this thread, and Django would refuse the
    tests' own ORM calls as "async-unsafe". Only this process, and only while browser tests run;
    the server never gets the variable."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if E2E_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


CSP_WATCH = pytest.StashKey[CspWatch]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A browser test fails on any CSP violation in any page it opened (see e2e/csp.py)."""
    watch = item.stash.get(CSP_WATCH, None)
    try:
        result = yield
    except BaseException:
        if watch is not None and watch.violations:
            item.add_report_section("call", "CSP violations", watch.report())
        raise
    if watch is not None:
        watch.settle()
        if watch.violations:
            pytest.fail("The Content-Security-Policy refused:\n" + watch.report(), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    server = item.funcargs.get("daphne_server") if hasattr(item, "funcargs") else None
    if report.failed and server is not None:
        report.sections.append(("live daphne server output (last lines)", server.tail()))
    return report


# --- The browser ---------------------------------------------------------------------------


def chromium_path() -> str | None:
    """The system Chromium (CHROMIUM_PATH, or Debian's); None lets Playwright use its own."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": chromium_path(), "args": CHROMIUM_FLAGS}


@pytest.fixture(autouse=True)
def csp_violations(request, monkeypatch):
    """Every browser context made during a test, by any fixture or browser, reports its pages'
    CSP violations here; the test fails on any (pytest_runtest_call above). A test that
    provokes one on purpose takes it with `csp_violations.take()`."""
    watch = CspWatch()
    request.node.stash[CSP_WATCH] = watch
    new_context = Browser.new_context

    def watched_new_context(self, *args, **kwargs):
        context = new_context(self, *args, **kwargs)
        watch.watch(context)
        return context

    monkeypatch.setattr(Browser, "new_context", watched_new_context)
    return watch


# --- The live server -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """Put SQLite's test database in a file, so that the server process can open it too."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        database.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "e2e.sqlite3")


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker):
    server = LiveServer.for_tests()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_url(daphne_server):
    """pytest-playwright resolves page.goto("/path") against this."""
    return daphne_server.url


@pytest.fixture(autouse=True)
def _committed_data(transactional_db):
    """The server is another process: it only sees data that is committed."""


@pytest.fixture(autouse=True)
def _seeding_announces_nothing(monkeypatch):
    """Tests seed rooms and messages through the services in this process, whose channel layer
    has no sockets to tell (the server's has them, and announces its own changes for real);
    announcing from here would also need an event loop that Playwright's is not."""
    from accounts import services as contact_services
    from rooms import services

    monkeypatch.setattr(services, "message_announce", lambda message, **kwargs: None)
    monkeypatch.setattr(services, "_announce_left", lambda room, member: None)
    monkeypatch.setattr(services, "member_rooms_changed", lambda member_id: None)
    monkeypatch.setattr(services, "_announce_access", lambda room: None)
    monkeypatch.setattr(contact_services, "contacts_changed", lambda member_id, **kwargs: None)


# --- Members and their browsers -------------------------------------------------------------


@pytest.fixture
def member_context(new_context, daphne_server):
    """A browser context already signed in as `member`, as if they had logged in there."""

    def make(member, **options):
        client = Client()
        client.force_login(member)
        context = new_context(**(DESKTOP | options))
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": daphne_server.url,
                }
            ]
        )
        return context

    return make


@pytest.fixture
def cuttable_link(daphne_server):
    """A link to the live server whose network a test can cut (see CuttableLink)."""
    link = CuttableLink(daphne_server.port)
    yield link
    link.close()


@pytest.fixture
def console_errors():
    """Collects every console error and failed request of the pages given to `watch`."""
    errors: list[str] = []

    def watch(page):
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        return page

    watch.errors = errors
    return watch
