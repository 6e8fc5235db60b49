"""Every page opens in Chromium without a script error, shows its shortcut help on ``?`` and
is saved as a screenshot artifact."""

import pytest

from tests.e2e.conftest import screenshot

pytestmark = pytest.mark.e2e

PAGES = {
    "projects": "/projects",
    "label": "/projects/{pid}/label",
    "review": "/projects/{pid}/review",
    "verify": "/projects/{pid}/verify",
    "dashboard": "/projects/{pid}/dashboard",
}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_opens_with_shortcut_help(server, page, name):
    page.goto(server["url"] + PAGES[name].format(pid=server["demo_id"]))
    page.wait_for_load_state("networkidle")
    assert page.locator("main h1").count() == 1
    screenshot(page, name)
    page.keyboard.press("Shift+Slash")  # "?"
    dialog = page.locator("dialog#help")
    assert dialog.is_visible()
    assert dialog.locator("kbd").count() >= 2
    screenshot(page, f"{name}-help")
    page.keyboard.press("Escape")
    assert not dialog.is_visible()


def test_tab_order_starts_with_a_skip_link_and_focus_is_visible(server, page):
    page.goto(f"{server['url']}/projects/{server['demo_id']}/review")
    page.wait_for_load_state("networkidle")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.className") == "skip-link"
    assert page.locator(".skip-link").is_visible()  # shown once focused
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return [e.textContent.trim(), s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert focused[0] == "Quarry" and focused[1] != "none" and focused[2] >= 2
    page.keyboard.press("Enter")  # the brand link opens the projects page
    page.wait_for_url("**/projects")
