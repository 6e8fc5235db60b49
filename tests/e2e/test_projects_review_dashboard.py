"""The projects page (create a project, import a file with a progress bar that follows the
import job), the review page (filters in the URL, relabel in place by keyboard) and the
dashboard (charts, annotators, a job's progress polled live)."""

import csv

import pytest

from app.datasets import load_digits_dataset
from tests.e2e.conftest import screenshot
from tests.e2e.helpers import set_annotator, true_label

pytestmark = pytest.mark.e2e
IMPORT_ROWS = 300  # above QUARRY_IMPORT_INLINE_MAX (256): the import runs as a job


def test_a_bad_project_shows_the_field_the_api_names(server, page):
    page.goto(f"{server['url']}/projects")
    page.keyboard.press("c")
    page.keyboard.type("e2e-bad")
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # binary
    page.keyboard.press("Tab")
    page.keyboard.type("x, y, z")  # three labels for a binary task
    page.locator("#create-form button[type=submit]").focus()
    page.keyboard.press("Enter")
    error = page.locator("#create-error")
    error.wait_for(state="visible")
    assert error.text_content() == "a binary project has exactly 2 labels"
    names = [p["name"] for p in server["api"].get("/projects").json()]
    assert "e2e-bad" not in names


def test_create_a_project_and_import_a_file(server, page, tmp_path):
    page.goto(f"{server['url']}/projects")
    page.keyboard.press("c")  # jumps to the form
    assert page.evaluate("() => document.activeElement.id") == "create-name"
    page.keyboard.type("digits-import")
    page.keyboard.press("Tab")  # task: multiclass is the default
    page.keyboard.press("Tab")
    page.keyboard.type(",".join(str(d) for d in range(10)))
    page.keyboard.press("Tab")
    page.keyboard.press("ArrowDown")  # modality: text -> image
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # "Create project"
    page.wait_for_url("**/projects?created=*")
    created = int(page.url.rsplit("=", 1)[1])
    project = server["api"].get(f"/projects/{created}").json()
    assert project["name"] == "digits-import" and project["modality"] == "image"
    assert project["labels"] == [str(d) for d in range(10)]

    digits = load_digits_dataset()
    path = tmp_path / "digits.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["external_id", "image", "label"])
        writer.writerows(
            (f"imp-{i}", digits.payloads[i], digits.targets[i]) for i in range(IMPORT_ROWS)
        )
    assert page.locator("#import-project").input_value() == str(created)
    page.locator("#import-file").set_input_files(str(path))
    page.locator("#import-ignore-labels").check()
    page.locator("#import-form button[type=submit]").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#import-progress-row:not([hidden])")
    page.wait_for_function(
        "() => document.getElementById('import-progress-text').textContent.startsWith('Imported')",
        timeout=90_000,
    )
    assert page.locator("#import-progress").evaluate("p => p.value") == 1
    screenshot(page, "projects-imported")
    counts = server["api"].get(f"/projects/{created}").json()["counts"]
    assert counts["items"] == IMPORT_ROWS and counts["labeled"] == 0
    jobs = server["api"].get(f"/projects/{created}/jobs").json()
    assert [j["status"] for j in jobs if j["kind"] == "import"] == ["succeeded"]
    page.wait_for_selector(f"tr[data-project-id='{created}']")  # listed after the reload


def test_review_filters_and_relabel_by_keyboard(server, page):
    api, pid, who = server["api"], server["demo_id"], "e2e-reviewer"
    served = api.get(f"/projects/{pid}/next", params={"annotator": who}).json()["items"][0]
    right = true_label(served["item"]["external_id"])
    wrong = str((int(right) + 1) % 10)
    body = {"item_id": served["item"]["id"], "label": wrong, "annotator": who,
            "lease_id": served["lease_id"]}
    assert api.post(f"/projects/{pid}/annotations", json=body).status_code == 201

    page.goto(f"{server['url']}/projects/{pid}/review?annotator={who}&source=human")
    set_annotator(page, who)
    assert page.locator("#filter-annotator").input_value() == who  # the URL holds the filters
    row = page.locator("#review-rows tr[data-annotation-id]")
    row.first.wait_for()
    assert row.count() == 1 and row.first.locator(".chip").text_content() == wrong
    row.first.focus()
    page.keyboard.press(right)  # relabel the selected row in place
    page.wait_for_function(
        "(label) => document.querySelector('#review-rows tr .chip')?.textContent === label",
        arg=right,
    )
    screenshot(page, "review-relabeled")
    rows = api.get(f"/projects/{pid}/annotations", params={"annotator": who}).json()["rows"]
    found = [(r["item"]["id"], r["annotation"]["labels"]) for r in rows]
    assert found == [(served["item"]["id"], [right])]


def test_dashboard_draws_labels_and_the_learning_curve(server, page, trained_demo):
    api, pid = server["api"], server["demo_id"]
    page.goto(f"{server['url']}/projects/{pid}/dashboard")
    page.wait_for_selector("#dashboard-app[data-updated-at]")
    counts = api.get(f"/projects/{pid}").json()["counts"]
    assert page.locator("#count-labeled").text_content() == str(counts["labeled"])
    assert page.locator("#count-pseudo").text_content() == str(counts["pseudo_labeled"])
    assert page.locator("#labels-over-time svg rect.bar").count() >= 1
    assert page.locator("#learning-curve svg circle.dot.active").count() == 1
    assert page.locator("#annotators tr th").count() >= 1
    job_row = page.locator(f"#jobs tr[data-job-id='{trained_demo['id']}']")
    assert job_row.locator(".badge.succeeded").count() == 1
    screenshot(page, "dashboard-trained")


def test_dashboard_follows_a_running_job_without_reload(server, page):
    api = server["api"]
    body = {"name": "e2e-dashboard-import", "labels": [str(d) for d in range(10)],
            "modality": "image"}
    project = api.post("/projects", json=body)
    assert project.status_code == 201, project.text
    pid = project.json()["id"]
    page.goto(f"{server['url']}/projects/{pid}/dashboard")
    page.wait_for_selector("#dashboard-app[data-updated-at]")
    assert page.locator("#jobs tr[data-job-id]").count() == 0
    digits = load_digits_dataset()
    records = [{"external_id": f"dash-{i}", "image": digits.payloads[i]}
               for i in range(IMPORT_ROWS)]
    queued = api.post(f"/projects/{pid}/items", json=records)
    assert queued.status_code == 202, queued.text  # above the inline maximum: a job
    job_id = queued.json()["job_id"]
    # no reload: the page's own polling brings the job in and follows it to the end
    row = page.locator(f"#jobs tr[data-job-id='{job_id}']")
    row.wait_for(timeout=30_000)
    assert row.locator("progress").count() == 1
    row.locator(".badge.succeeded").wait_for(timeout=60_000)
    assert row.locator("progress").evaluate("p => p.value") == 1
    page.wait_for_function(
        "(n) => document.getElementById('count-items').textContent === String(n)",
        arg=IMPORT_ROWS,
    )
    screenshot(page, "dashboard-live")


def test_review_filters_labels_the_model_contradicts(server, page, trained_demo):
    api, pid, who = server["api"], server["demo_id"], "e2e-contrarian"
    unlabeled = api.get(f"/projects/{pid}/items", params={"status": "unlabeled", "limit": 100})
    for brief in unlabeled.json()["items"]:  # an item the model gets right, labeled wrong
        item = api.get(f"/projects/{pid}/items/{brief['id']}").json()
        right = true_label(item["external_id"])
        if item["prediction"] and item["prediction"]["label"] == right:
            break
    else:
        pytest.fail("the model predicts no unlabeled item right among 100")
    body = {"item_id": item["id"], "label": str((int(right) + 1) % 10), "annotator": who}
    assert api.post(f"/projects/{pid}/annotations", json=body).status_code == 201

    page.goto(f"{server['url']}/projects/{pid}/review?disagreement=true")
    page.wait_for_selector("#review-rows tr[data-annotation-id]")
    total = api.get(f"/projects/{pid}/annotations", params={"disagreement": "true"}).json()["total"]
    assert total >= 1
    assert page.locator("#summary").text_content().startswith(f"{total} labeled item")
    rows = page.locator("#review-rows tr[data-annotation-id]")
    assert rows.count() == min(total, 50)
    assert rows.locator(".badge.warn").count() == rows.count()  # every row disagrees
    ids = rows.evaluate_all("rs => rs.map(r => Number(r.dataset.itemId))")
    assert item["id"] in ids
    assert page.locator("#filter-disagreement").input_value() == "true"
    screenshot(page, "review-disagreements")
