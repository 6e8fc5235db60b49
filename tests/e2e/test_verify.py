"""Verify mode in Chromium: a mined hard negative confirmed with ``n`` and a false negative
flagged with ``y``, recorded through the API; routed pseudo-labels accepted with ``y``."""

import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.helpers import label_via_api, set_annotator, wait_until

pytestmark = pytest.mark.e2e


def test_verify_mined_negatives_by_keyboard(server, page):
    api, pid, who = server["api"], server["demo_id"], "e2e-verifier"
    anchors = label_via_api(api, pid, "e2e-anchors", 3)
    mined = api.post(f"/projects/{pid}/negatives/mine",
                     json={"anchors": {"item_ids": anchors}, "k": 3, "enqueue": True})
    assert mined.status_code == 201, mined.text
    run_id = mined.json()["run_id"]
    assert mined.json()["enqueued"] > 0

    page.goto(f"{server['url']}/projects/{pid}/verify")
    set_annotator(page, who)
    page.reload()  # the name stays in the browser
    assert page.locator("#annotator").input_value() == who
    page.wait_for_selector("#task[data-task-id]:not([data-task-id=''])")
    page.wait_for_selector("#first-image:not([hidden])")  # digits have no text: the image shows
    screenshot(page, "verify-negative")
    first = page.locator("#task").get_attribute("data-task-id")
    page.keyboard.press("n")
    page.wait_for_function(
        "(id) => document.getElementById('verified-count').textContent === '1'", arg=first
    )

    def run():
        runs = api.get(f"/projects/{pid}/negatives/runs").json()["runs"]
        return next((r for r in runs if r["run_id"] == run_id and r["verified"] >= 1), None)

    found = wait_until(run, timeout=10)
    assert found["negatives"] >= 1 and found["false_negatives"] == 0


def test_accept_a_routed_pseudo_label_by_keyboard(server, page, trained_demo):
    api, pid, who = server["api"], server["demo_id"], "e2e-confirmer"
    report = api.get(f"/projects/{pid}/pseudo-labels/precision").json()["checkpoints"][0]
    assert report["active"] and report["routed"] > 0, report

    page.goto(f"{server['url']}/projects/{pid}/verify?mode=pseudo")
    set_annotator(page, who)
    page.reload()  # the name stays in the browser
    assert page.locator("#annotator").input_value() == who
    page.wait_for_selector("#task[data-task-id]:not([data-task-id=''])")
    page.wait_for_selector("#first-image:not([hidden])")
    label = page.locator("#label").text_content()
    assert page.locator("#question").text_content().strip() != ""
    screenshot(page, "verify-pseudo")
    page.keyboard.press("y")
    page.wait_for_function("() => document.getElementById('verified-count').textContent === '1'")

    def accepted():
        rows = api.get(f"/projects/{pid}/pseudo-labels/precision").json()["checkpoints"]
        return rows[0]["accepted"] == 1

    wait_until(accepted, timeout=10)
    mine = api.get(f"/projects/{pid}/annotations", params={"annotator": who}).json()["rows"]
    assert [r["annotation"]["labels"] for r in mine] == [[label]]
    assert mine[0]["annotation"]["source"] == "human"
