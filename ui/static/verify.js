// Verify mode: serve mined negatives under leases and record "negative" / "false_negative".
// The JSON API is the only backend; keys n / y, ignored while a text input has focus.

import { createApi } from "./api.js";
import { bindAnnotator, bindKeys, readAnnotator, say } from "./common.js";

const root = document.getElementById("verify-app");
const pid = root.dataset.projectId;
const api = createApi(root.dataset.apiBase);
const el = Object.fromEntries(
  ["task", "question", "pair", "label", "anchor", "negative", "score", "confirm", "reject", "verified-count"].map(
    (id) => [id.replace(/-(\w)/g, (_, c) => c.toUpperCase()), document.getElementById(id)],
  ),
);
let current = null;
let busy = false;
let verified = 0;

const describe = (item) => item.text ?? `item ${item.external_id ?? item.item_id}`;

function show(task) {
  current = task;
  el.pair.hidden = !task;
  el.confirm.disabled = el.reject.disabled = !task;
  el.task.dataset.tripletId = task ? String(task.triplet_id) : "";
  if (!task) return;
  el.question.textContent = task.question;
  el.label.textContent = task.label;
  el.anchor.textContent = describe(task.anchor);
  el.negative.textContent = describe(task.negative);
  el.score.textContent = task.anchor_negative_score.toFixed(3);
}

async function next() {
  el.task.setAttribute("aria-busy", "true");
  try {
    const body = await api.verifyNext(pid, readAnnotator());
    show(body.items[0] ?? null);
    say("");
  } catch (err) {
    show(null);
    const empty = err.code === "pool_exhausted";
    el.question.textContent = empty ? "Nothing left to verify." : "Could not load the next negative.";
    if (empty) say("Mine negatives with enqueue: true (POST /negatives/mine) to queue more.");
    else say(err.detail ?? String(err), "error");
  } finally {
    el.task.setAttribute("aria-busy", "false");
  }
}

async function decide(verdict) {
  if (!current || busy) return;
  busy = true;
  const task = current;
  try {
    await api.verdict(pid, task.triplet_id, { verdict, annotator: readAnnotator() });
    verified += 1;
    el.verifiedCount.textContent = String(verified);
    await next();
    say(verdict === "negative" ? `Confirmed the negative of “${task.label}”.` : `Labeled the item “${task.label}” (false negative).`);
  } catch (err) {
    say(err.detail ?? String(err), "error");
  } finally {
    busy = false;
  }
}

for (const button of document.querySelectorAll("[data-verdict]")) {
  button.addEventListener("click", () => decide(button.dataset.verdict));
}
bindKeys({ n: () => decide("negative"), y: () => decide("false_negative") });
bindAnnotator(() => next());
next();
