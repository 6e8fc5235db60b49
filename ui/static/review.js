// The review page: current labels with filters kept in the URL (?label=&source=&annotator=
// &disagreement=), relabel in place with a select or the number keys on the selected row.

import { createApi } from "./api.js";
import { ago, bindAnnotator, bindKeys, h, imageSrc, readAnnotator, say } from "./common.js";

const root = document.getElementById("review-app");
const pid = root.dataset.projectId;
const labels = JSON.parse(root.dataset.labels);
const multilabel = root.dataset.task === "multilabel";
const api = createApi(root.dataset.apiBase);
const tbody = document.getElementById("review-rows");
const more = document.getElementById("more");
const FILTERS = ["label", "source", "annotator", "disagreement"];
const PAGE = 50;
const TEXT_CHARS = 280;
const keyOf = new Map(
  [...document.querySelectorAll("#row-keys kbd")].map((k, i) => [k.textContent, i]),
);
// Digit labels use their own keys; otherwise 1..9, 0 by position (as on the label page).
const labelForKey = (key) => {
  if (labels.every((l) => /^\d$/.test(l)) && new Set(labels).size === labels.length) {
    return labels.includes(key) ? labels.indexOf(key) : undefined;
  }
  return keyOf.get(key);
};

const params = new URLSearchParams(window.location.search);
const filters = Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? ""]));
for (const name of FILTERS) document.querySelector(`#filters [name="${name}"]`).value = filters[name];
let cursor = null;
let active = -1; // index of the selected row

function rows() {
  return [...tbody.querySelectorAll("tr")];
}

function select(index, focus = true) {
  const all = rows();
  if (!all.length) return;
  active = Math.max(0, Math.min(index, all.length - 1));
  all.forEach((row, i) => {
    row.classList.toggle("active", i === active);
    row.tabIndex = i === active ? 0 : -1;
    row.setAttribute("aria-selected", String(i === active));
  });
  if (focus) all[active].focus();
}

function itemCell(item) {
  const name = item.external_id ?? String(item.id);
  const cell = h("td", { class: "item-cell" }, h("div", { class: "item-id", text: name }));
  if (item.image) cell.append(h("img", { class: "thumb", alt: `Image of item ${name}`, src: imageSrc(item.image) }));
  if (item.text) {
    const text = item.text.length > TEXT_CHARS ? `${item.text.slice(0, TEXT_CHARS)}…` : item.text;
    cell.append(h("div", { class: "item-snippet", title: item.text.slice(0, 2000), text }));
  }
  return cell;
}

function modelCell(row) {
  if (!row.prediction) return h("td", { class: "muted", text: "no model" });
  const predicted = row.prediction.labels ? row.prediction.labels.join(", ") || "none" : row.prediction.label;
  return h(
    "td",
    {},
    h("span", { text: `${predicted} ` }),
    h("span", { class: "muted", text: `${(100 * row.prediction.confidence).toFixed(0)}%` }),
    row.disagrees ? h("span", { class: "badge warn", text: "disagrees" }) : null,
  );
}

function relabelCell(row, tr) {
  const current = row.annotation.labels;
  if (multilabel) {
    const boxes = labels.map((label, i) =>
      h("label", { class: "check" },
        h("input", { type: "checkbox", value: label, checked: current.includes(label), "data-index": i }),
        label),
    );
    const save = h("button", { type: "button", class: "small", text: "Save",
      onclick: () => relabel(tr, row, boxes.map((b) => b.firstChild).filter((c) => c.checked).map((c) => c.value)) });
    return h("td", { class: "relabel" }, ...boxes, save);
  }
  const choice = h("select", { "aria-label": `New label for item ${row.item.external_id}` },
    labels.map((label) => h("option", { value: label, selected: current[0] === label, text: label })));
  const apply = h("button", { type: "button", class: "small", text: "Relabel",
    onclick: () => relabel(tr, row, [choice.value]) });
  return h("td", { class: "relabel" }, choice, apply);
}

function renderRow(row) {
  const tr = h("tr", { "data-annotation-id": row.annotation.id, "data-item-id": row.item.id, tabindex: -1 });
  const a = row.annotation;
  tr.append(
    itemCell(row.item),
    h("td", {}, a.labels.map((l) => h("span", { class: "chip", text: l }))),
    h("td", {}, h("span", { class: `badge ${a.source}`, text: a.source })),
    h("td", { text: a.annotator ?? "–" }),
    h("td", { title: a.created_at, text: ago(a.created_at) }),
    modelCell(row),
    relabelCell(row, tr),
  );
  tr.addEventListener("focus", () => {
    const index = rows().indexOf(tr);
    if (index !== active) select(index, false);
  });
  tr.addEventListener("click", () => select(rows().indexOf(tr), false));
  return tr;
}

async function relabel(tr, row, chosen) {
  const same = chosen.length === row.annotation.labels.length && chosen.every((l) => row.annotation.labels.includes(l));
  if (same) return say(`Item ${row.item.external_id} already has that label.`);
  const body = multilabel ? { labels: chosen } : { label: chosen[0] };
  try {
    const fresh = await api.relabel(pid, row.annotation.id, { ...body, annotator: readAnnotator() });
    const replacement = renderRow(fresh);
    replacement.classList.add("fresh");
    tr.replaceWith(replacement);
    select(rows().indexOf(replacement));
    say(`Relabeled item ${fresh.item.external_id} as ${chosen.join(", ") || "nothing"}.`);
  } catch (err) {
    say(`Item ${row.item.external_id}: ${err.detail ?? String(err)}`, "error");
  }
}

async function load(append = false) {
  try {
    const page = await api.review(pid, { ...filters, cursor: append ? cursor : null, limit: PAGE });
    if (!append) tbody.replaceChildren();
    tbody.append(...page.rows.map(renderRow));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    const shown = rows().length;
    const model = page.model_version == null ? "no model yet" : `model v${page.model_version}`;
    document.getElementById("summary").textContent =
      `${page.total} labeled item${page.total === 1 ? "" : "s"} match; showing ${shown} · ${model}`;
    if (!shown) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No labels match these filters." })));
    else if (!append) select(0, false);
  } catch (err) {
    say(err.detail ?? String(err), "error");
  }
}

function keyOnRow(key) {
  const tr = rows()[active];
  const index = labelForKey(key);
  if (!tr || index === undefined || !tr.dataset.annotationId) return;
  if (multilabel) {
    const box = tr.querySelector(`input[data-index="${index}"]`);
    box.checked = !box.checked;
  } else {
    tr.querySelector("select").value = labels[index];
    tr.querySelector(".relabel button").click();
  }
}

more.addEventListener("click", () => load(true));
const keys = {
  j: () => select(active + 1),
  ArrowDown: () => select(active + 1),
  k: () => select(active - 1),
  ArrowUp: () => select(active - 1),
  "/": () => document.getElementById("filter-label").focus(),
  m: () => cursor && load(true),
  Enter: (e) => {
    if (!multilabel || !e.target.matches?.("tr")) return false;
    e.target.querySelector(".relabel button")?.click();
    return true;
  },
};
for (const key of ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]) keys[key] = () => keyOnRow(key);
bindKeys(keys);
bindAnnotator();
load();
