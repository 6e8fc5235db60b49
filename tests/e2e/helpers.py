"""Helpers of the browser tests: the digits' true labels (the oracle), a latency probe, polling."""

import time
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

# Runs in the page: time from a keydown to the next frame after #item shows another item with
# its image (if any) decoded.
LATENCY_PROBE = """() => {
  window.__latencies = [];
  const item = document.getElementById("item");
  const image = document.getElementById("item-image");
  let pressed = null;
  document.addEventListener("keydown", (e) => { pressed = e.timeStamp; }, true);
  new MutationObserver(async () => {
    if (pressed === null || !item.dataset.itemId) return;
    const t0 = pressed;
    pressed = null;
    if (!image.hidden && image.src) await image.decode().catch(() => {});
    requestAnimationFrame(() => window.__latencies.push(performance.now() - t0));
  }).observe(item, { attributes: true, attributeFilter: ["data-item-id"] });
}"""


@cache
def digit_targets() -> np.ndarray:
    """True class of each digits row (external id ``digits-<row>``)."""
    from sklearn.datasets import load_digits

    return load_digits().target


def true_label(external_id: str) -> str:
    """The oracle's label of a demo item."""
    return str(digit_targets()[int(external_id.rsplit("-", 1)[1])])


def wait_until(check: Callable[[], Any], timeout: float = 60.0, every: float = 0.25) -> Any:
    """Poll ``check`` until it returns something truthy; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(every)


def set_annotator(page: Any, name: str) -> None:
    """Type the annotator name into the topbar field and leave it with Enter."""
    field = page.locator("#annotator")
    field.focus()
    page.keyboard.press("Control+A")
    page.keyboard.type(name)
    page.keyboard.press("Enter")


def shown_item(page: Any) -> tuple[int, str]:
    """(item id, external id) of the item on screen, once one is shown."""
    page.wait_for_selector("#item[data-item-id]")
    item = page.locator("#item")
    return int(item.get_attribute("data-item-id")), item.get_attribute("data-external-id")


def wait_for_other_item(page: Any, item_id: int) -> tuple[int, str]:
    """Wait until the page shows an item other than ``item_id``."""
    page.wait_for_function(
        "(id) => { const d = document.getElementById('item').dataset;"
        " return d.itemId && d.itemId !== String(id); }",
        arg=item_id,
    )
    return shown_item(page)


def train_and_wait(
    api: Any, project_id: int, timeout: float = 120.0, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Start a training job through the API (default: supervised only) and wait for it to
    succeed."""
    body = body or {"semi_supervised": {"method": "none"}, "epochs": 10}
    response = api.post(f"/projects/{project_id}/train", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def finished() -> dict[str, Any] | None:
        job = api.get(f"/jobs/{job_id}").json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_until(finished, timeout=timeout)
    assert job["status"] == "succeeded", job
    return job


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (linear interpolation, as numpy's default)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def label_via_api(api: Any, project_id: int, annotator: str, n: int) -> list[int]:
    """Label ``n`` demo items served by /next with their true class; returns the item ids."""
    ids = []
    for _ in range(n):
        next_page = api.get(f"/projects/{project_id}/next", params={"annotator": annotator})
        served = next_page.json()["items"][0]
        body = {"item_id": served["item"]["id"], "label": true_label(served["item"]["external_id"]),
                "annotator": annotator, "lease_id": served["lease_id"]}
        response = api.post(f"/projects/{project_id}/annotations", json=body)
        assert response.status_code == 201, response.text
        ids.append(served["item"]["id"])
    return ids


def ensure_two_classes(api: Any, project_id: int) -> None:
    """Label demo items through the API until at least two classes have labels."""
    def classes() -> int:
        counts = api.get(f"/projects/{project_id}").json()["counts"]["by_label"]
        return sum(1 for n in counts.values() if n)

    while classes() < 2:
        label_via_api(api, project_id, "e2e-seed", 3)
