"""The console in a real browser: logging in, the navigation of docs/api.md, roles."""

from tests.e2e.conftest import console_user, log_in

NAV = ["Dashboard", "Timeline", "Streams", "Projections", "Catalog", "Accounts", "Transfers"]


def test_log_in_and_find_every_page_in_the_navigation(page, transactional_db):
    log_in(page, console_user("vera", "viewer"))
    nav = page.locator("header nav a")
    assert nav.all_inner_texts() == [*NAV, "Dead letters"]  # the contract's links first; a viewer sees no Users link
    for name in NAV:
        page.click(f"header nav >> text={name}")
        assert page.locator("h1").first.is_visible()


def test_anonymous_visitors_are_sent_to_the_login_page(page, transactional_db):
    page.goto("/timeline/")
    assert "/login/" in page.url
