// Verify mode: serve mined negatives under leases and record "negative" / "false_negative".
// The JSON API is the only backend; keys n / y, ignored while a text input has focus.

const root = document.getElementById("verify-app");
const base = root.dataset.apiBase;
const pid = root.dataset.projectId;
const ANNOTATOR_KEY = "quarry.annotator";
const KEYS = { n: "negative", y: "false_negative" };
const el = Object.fromEntries(
  ["status", "task", "question", "label", "anchor", "negative", "score", "annotator"].map(
    (id) => [id, document.getElementById(id)],
  ),
);
let current = null;

function annotator() {
  return el.annotator.value.trim() || localStorage.getItem(ANNOTATOR_KEY) || "anonymous";
}

async function call(url, init = {}) {
  const response = await fetch(url, {
    ...init,
    headers: { Accept: "application/json", "Content-Type": "application/json" },
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw Object.assign(new Error(data.detail || response.status), data);
  return data;
}

async function next() {
  el.task.setAttribute("aria-busy", "true");
  const query = new URLSearchParams({ annotator: annotator(), n: "1" });
  try {
    const body = await call(`${base}/projects/${pid}/negatives/verify/next?${query}`);
    current = body.items[0];
    el.question.textContent = current.question;
    el.label.textContent = current.label;
    el.anchor.textContent = current.anchor.text ?? current.anchor.external_id;
    el.negative.textContent = current.negative.text ?? current.negative.external_id;
    el.score.textContent = current.anchor_negative_score.toFixed(3);
    el.status.textContent = "";
  } catch (err) {
    current = null;
    el.question.textContent = err.code === "pool_exhausted" ? "Nothing left to verify." : "";
    el.status.textContent = err.code === "pool_exhausted" ? "" : err.message;
  } finally {
    el.task.setAttribute("aria-busy", "false");
  }
}

async function decide(verdict) {
  if (!current) return;
  const url = `${base}/projects/${pid}/negatives/${current.triplet_id}/verdict`;
  try {
    await call(url, { method: "POST", body: JSON.stringify({ verdict, annotator: annotator() }) });
    await next();
  } catch (err) {
    el.status.textContent = err.message;
  }
}

el.annotator.value = localStorage.getItem(ANNOTATOR_KEY) || "";
el.annotator.addEventListener("change", () => {
  localStorage.setItem(ANNOTATOR_KEY, el.annotator.value.trim());
  next();
});
for (const button of document.querySelectorAll("[data-verdict]")) {
  button.addEventListener("click", () => decide(button.dataset.verdict));
}
document.addEventListener("keydown", (event) => {
  if (event.target.closest("input, textarea, select, [contenteditable]")) return;
  const verdict = KEYS[event.key];
  if (verdict) {
    event.preventDefault();
    decide(verdict);
  }
});
next();
