"""The CSP check every browser test runs (conftest's csp_violations, e2e/csp.py) can fail.

Each test here makes the policy refuse something, shows that it was refused (the script did
not run), and that the check heard it; it then takes the violation, or it would fail itself.
"""

from playwright.sync_api import expect

INJECT_INLINE_SCRIPT = """() => {
  const script = document.createElement("script");
  script.textContent = "window.inlineRan = true";
  document.body.append(script);
}"""


def wait_for_violations(page, csp_violations, count=1) -> list[dict]:
    """The violations heard so far, once at least `count` arrived (they come as events)."""
    taken = []
    for _ in range(50):
        taken += csp_violations.take()
        if len(taken) >= count:
            break
        page.wait_for_timeout(100)
    return taken


def test_an_inline_script_added_to_a_page_is_refused_and_caught(page, csp_violations):
    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Sign In")).to_be_visible()
    page.evaluate(INJECT_INLINE_SCRIPT)

    [violation] = wait_for_violations(page, csp_violations)
    assert violation["effectiveDirective"] == "script-src-elem"
    assert violation["blockedURI"] == "inline"
    assert violation["documentURI"].endswith("/accounts/login/")
    assert page.evaluate("window.inlineRan") is None


def test_an_inline_script_in_the_served_page_is_caught_as_it_loads(page, csp_violations):
    """The listener is there before the document's own first script runs."""

    def add_inline_script(route):
        response = route.fetch()
        body = response.text().replace("<head>", "<head><script>window.inlineRan = true</script>")
        route.fulfill(response=response, body=body)

    page.route("**/accounts/login/", add_inline_script)
    page.goto("/accounts/login/")

    [violation] = wait_for_violations(page, csp_violations)
    assert violation["effectiveDirective"] == "script-src-elem"
    assert page.evaluate("window.inlineRan") is None


def test_an_inline_style_attribute_is_caught_in_a_signed_in_page(
    member_context, user, csp_violations
):
    """What htmx's settle once copied: a style attribute (see helpers.screenshot)."""
    page = member_context(user).new_page()
    page.goto("/")
    # Parsed from HTML, as htmx swaps fragments in.
    page.evaluate(
        "() => document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')"
    )

    [violation] = wait_for_violations(page, csp_violations)
    assert violation["effectiveDirective"] == "style-src-attr"
    assert (
        page.evaluate("getComputedStyle(document.body.lastElementChild).color") != "rgb(255, 0, 0)"
    )


def test_a_context_made_straight_from_the_browser_is_watched_too(
    browser, daphne_server, csp_violations
):
    context = browser.new_context(base_url=daphne_server.url)
    page = context.new_page()
    page.goto("/accounts/login/")
    page.evaluate(INJECT_INLINE_SCRIPT)

    [violation] = wait_for_violations(page, csp_violations)
    assert violation["blockedURI"] == "inline"
    context.close()


def test_the_browser_reports_a_violation_to_parleys_endpoint(page, csp_violations):
    page.goto("/accounts/login/")
    with page.expect_response("**/csp-report/") as sent:
        page.evaluate(INJECT_INLINE_SCRIPT)

    assert sent.value.status == 204
    report = sent.value.request.post_data_json["csp-report"]
    assert report["blocked-uri"] == "inline"
    assert report["script-sample"] == "window.inlineRan = true"
    assert len(wait_for_violations(page, csp_violations)) == 1
