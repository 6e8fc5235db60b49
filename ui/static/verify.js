// Verify mode: answer queued questions under leases with y / n (ignored while typing).
//   ?mode=negatives  mined negatives: n = a true negative, y = a false negative (same label)
//   ?mode=pseudo     routed pseudo-labels: y = accept, n = reject, a label key = reject and
//                    correct to that label
// Items without text show their image, read from the item endpoint.

import { createApi } from "./api.js";
import { bindAnnotator, bindKeys, imageSrc, readAnnotator, say } from "./common.js";

const root = document.getElementById("verify-app");
const pid = root.dataset.projectId;
const mode = root.dataset.mode;
const api = createApi(root.dataset.apiBase);
const $ = (id) => document.getElementById(id);
let current = null;
let busy = false;
let verified = 0;

const MODES = {
  negatives: {
    next: () => api.verifyNext(pid, readAnnotator()),
    id: (task) => task.triplet_id,
    send: (task, verdict) => api.verdict(pid, task.triplet_id, { verdict, annotator: readAnnotator() }),
    keys: { n: "negative", y: "false_negative" },
    empty: "Mine negatives with enqueue: true (POST /negatives/mine) to queue more.",
    show(task) {
      showItem("first", task.anchor);
      showItem("second", task.negative);
      $("score").textContent = task.anchor_negative_score.toFixed(3);
    },
    done: (task, verdict) =>
      verdict === "negative" ? `Confirmed the negative of “${task.label}”.` : `Labeled the item “${task.label}” (false negative).`,
  },
  pseudo: {
    next: () => api.pseudoNext(pid, readAnnotator()),
    id: (task) => task.review_id,
    send: (task, verdict, label) =>
      api.pseudoVerdict(pid, task.review_id, { verdict, annotator: readAnnotator(), ...(label ? { label } : {}) }),
    keys: { y: "accept", n: "reject" },
    empty: "Nothing routed: train with confirm_share above 0 to route pseudo-labels here.",
    show(task) {
      showItem("first", task.item);
      $("score").textContent = task.confidence == null ? "–" : `${(100 * task.confidence).toFixed(1)}%`;
      $("model-version").textContent = `v${task.model_version}`;
      $("method").textContent = task.method ?? "–";
    },
    done: (task, verdict, label) =>
      label ? `Corrected to “${label}”.` : verdict === "accept" ? `Accepted “${task.label}”.` : `Rejected “${task.label}”.`,
  },
};
const handler = MODES[mode];
const labelButtons = [...document.querySelectorAll("#labels .label-button")];

async function showItem(slot, item) {
  const [text, image] = [$(`${slot}-text`), $(`${slot}-image`)];
  const name = item.external_id ?? item.item_id;
  text.textContent = item.text ?? `Item ${name}`;
  image.hidden = true;
  if (item.text) return;
  try {
    const full = await api.item(pid, item.item_id);
    if (full.image && current) [image.src, image.alt, image.hidden] = [imageSrc(full.image), `Image of item ${name}`, false];
  } catch {
    // the text fallback stays
  }
}

function show(task) {
  current = task;
  $("pair").hidden = !task;
  for (const b of [$("confirm"), $("reject"), ...labelButtons]) b.disabled = !task;
  $("task").dataset.taskId = task ? String(handler.id(task)) : "";
  if (!task) return;
  $("question").textContent = task.question;
  $("label").textContent = task.label;
  labelButtons.forEach((b) => (b.disabled = b.dataset.label === task.label));
  handler.show(task);
}

let asked = 0; // a newer question (another annotator name) makes an older answer stale

async function next() {
  const mine = ++asked;
  $("task").setAttribute("aria-busy", "true");
  try {
    const body = await handler.next();
    if (mine !== asked) return;
    show(body.items[0] ?? null);
    say("");
  } catch (err) {
    if (mine !== asked) return;
    show(null);
    const empty = err.code === "pool_exhausted";
    $("question").textContent = empty ? "Nothing left to verify." : "Could not load the next question.";
    if (empty) say(handler.empty);
    else say(err.detail ?? String(err), "error");
  } finally {
    $("task").setAttribute("aria-busy", "false");
  }
}

async function decide(verdict, label = null) {
  if (!current || busy) return;
  busy = true;
  const task = current;
  try {
    await handler.send(task, verdict, label);
    verified += 1;
    $("verified-count").textContent = String(verified);
    await next();
    say(handler.done(task, verdict, label));
  } catch (err) {
    say(err.detail ?? String(err), "error");
  } finally {
    busy = false;
  }
}

for (const button of document.querySelectorAll("[data-verdict]")) {
  button.addEventListener("click", () => decide(button.dataset.verdict));
}
const keys = Object.fromEntries(Object.entries(handler.keys).map(([key, verdict]) => [key, () => decide(verdict)]));
for (const button of labelButtons) {
  button.addEventListener("click", () => decide("reject", button.dataset.label));
  if (button.dataset.key) keys[button.dataset.key] = () => !button.disabled && decide("reject", button.dataset.label);
}
keys.g = () => window.location.assign("?mode=negatives");
keys.p = () => window.location.assign("?mode=pseudo");
bindKeys(keys);
bindAnnotator(() => next());
next();
