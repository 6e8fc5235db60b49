"""Pool text never executes: items holding ``<script>`` and ``<img onerror=…>`` payloads are
shown as text on the label and review pages, and no script, handler or alert runs (the page
fixture fails the test on any dialog or page error)."""

import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.helpers import set_annotator, shown_item

pytestmark = pytest.mark.e2e
PAYLOADS = [
    "<script>window.__pwned = 'script'; alert('script')</script>",
    "<img src=x onerror=\"window.__pwned = 'img'; alert('img')\">",
    "<svg onload=\"window.__pwned = 'svg'\"></svg><b>bold?</b>",
]


@pytest.fixture(scope="module")
def hostile_project(server):
    api = server["api"]
    body = {"name": "<img src=x onerror=alert('name')>", "task": "multiclass",
            "labels": ["<b>ok</b>", "<script>alert('label')</script>"], "modality": "vector"}
    project = api.post("/projects", json=body)
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    records = [{"external_id": f"hostile-{i}", "text": text, "vector": [float(i), 1.0, -1.0],
                "meta": {"note": text}} for i, text in enumerate(PAYLOADS)]
    imported = api.post(f"/projects/{pid}/items", json=records)
    assert imported.status_code == 201, imported.text
    return pid


def _assert_inert(page):
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("main script, main svg[onload]").count() == 0


def test_label_page_shows_markup_as_text(server, page, hostile_project):
    page.goto(f"{server['url']}/projects/{hostile_project}/label")
    set_annotator(page, "e2e-xss")
    _item_id, external_id = shown_item(page)
    text = page.locator("#item-text").text_content()
    assert text == PAYLOADS[int(external_id.rsplit("-", 1)[1])]
    assert page.locator("#item-meta dd").first.text_content() == text
    names = page.locator(".label-name").all_text_contents()
    assert names == ["<b>ok</b>", "<script>alert('label')</script>"]
    _assert_inert(page)
    screenshot(page, "label-untrusted-text")
    for _ in PAYLOADS:  # label every item, so each payload is rendered once
        item_id, _ = shown_item(page)
        page.keyboard.press("1")
        page.wait_for_function(
            "(id) => document.getElementById('item').dataset.itemId !== String(id)", arg=item_id
        )
    _assert_inert(page)


def test_review_page_shows_markup_as_text(server, page, hostile_project):
    api = server["api"]
    rows = api.get(f"/projects/{hostile_project}/annotations").json()["rows"]
    if len(rows) < len(PAYLOADS):  # run alone: label them through the API
        for record in api.get(f"/projects/{hostile_project}/items").json()["items"]:
            api.post(f"/projects/{hostile_project}/annotations",
                     json={"item_id": record["id"], "label": "<b>ok</b>", "annotator": "e2e-xss"})
    page.goto(f"{server['url']}/projects/{hostile_project}/review")
    page.wait_for_selector("#review-rows tr[data-annotation-id]")
    snippets = page.locator("#review-rows .item-snippet").all_text_contents()
    assert sorted(snippets) == sorted(PAYLOADS)
    assert page.locator("#review-rows .chip").first.text_content() == "<b>ok</b>"
    _assert_inert(page)
    screenshot(page, "review-untrusted-text")
