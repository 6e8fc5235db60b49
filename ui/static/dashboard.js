// The dashboard: reads GET /projects/{id}/dashboard and draws it; polls every 2 s while a job
// is queued or running (live progress), every 15 s otherwise or while the tab is hidden.

import { createApi } from "./api.js";
import { barsWithLine, lineChart } from "./charts.js";
import { ago, bindAnnotator, bindKeys, h, say } from "./common.js";

const root = document.getElementById("dashboard-app");
const api = createApi(root.dataset.apiBase);
const pid = root.dataset.projectId;
const $ = (id) => document.getElementById(id);
const [FAST_MS, SLOW_MS] = [2000, 15000];
const pct = (x) => (x == null ? "–" : `${(100 * x).toFixed(1)}%`);
const num = (x, digits = 0) => (x == null ? "–" : Number(x).toFixed(digits));
let timer = null;

function counts(c, disagreements) {
  $("count-items").textContent = String(c.items);
  $("count-labeled").textContent = String(c.labeled);
  $("count-pseudo").textContent = String(c.pseudo_labeled);
  $("count-unlabeled").textContent = String(c.unlabeled);
  $("count-disagree").textContent = disagreements == null ? "no model" : String(disagreements);
}

function overTime({ bucket_seconds: width, buckets }) {
  const target = $("labels-over-time");
  if (!buckets.length) {
    target.replaceChildren(h("p", { class: "muted", text: "No human labels yet." }));
    $("time-caption").textContent = "";
    return;
  }
  const when = (iso) => new Date(iso).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  barsWithLine(target, {
    title: "Human labels per bucket (bars) and in total (line)",
    names: buckets.map((b) => when(b.start)),
    values: buckets.map((b) => b.labels),
    cumulative: buckets.map((b) => b.cumulative),
  });
  const last = buckets[buckets.length - 1];
  const unit = width >= 3600 ? `${width / 3600} h` : `${width / 60} min`;
  $("time-caption").textContent = `Bars: labels per ${unit} (left axis); line: ${last.cumulative} in total (right axis).`;
}

function curve(points) {
  const target = $("learning-curve");
  const usable = points.filter((p) => p.accuracy != null);
  if (!usable.length) {
    target.replaceChildren(h("p", { class: "muted", text: "No checkpoint yet: train a model to see the curve." }));
    $("curve-caption").textContent = "";
    return;
  }
  lineChart(target, {
    title: "Validation accuracy against the labels each checkpoint learned from",
    xLabel: "labels",
    format: (y) => `${Math.round(100 * y)}%`,
    points: usable.map((p) => ({
      x: p.n_labeled, y: p.accuracy, active: p.active,
      title: `v${p.version}: ${pct(p.accuracy)} with ${p.n_labeled} labels (+${p.n_pseudo} pseudo)`,
    })),
  });
  const active = usable.find((p) => p.active) ?? usable[usable.length - 1];
  $("curve-caption").textContent =
    `Active v${active.version}: accuracy ${pct(active.accuracy)}, macro-F1 ${num(active.macro_f1, 3)} with ${active.n_labeled} labels.`;
}

function balance(rows) {
  const max = Math.max(1, ...rows.map((r) => r.human + r.imported + r.pseudo));
  $("class-balance").replaceChildren(
    ...rows.map((r) => {
      const total = r.human + r.imported + r.pseudo;
      const part = (kind) => h("span", { class: `seg ${kind}`, style: null, "data-width": r[kind] / max });
      const bar = h("div", { class: "bar-track", title: `${r.label}: ${r.human} human, ${r.imported} imported, ${r.pseudo} pseudo` },
        part("human"), part("imported"), part("pseudo"));
      return h("div", { class: "bar-row" }, h("span", { class: "bar-name", text: r.label }), bar, h("span", { class: "bar-total num", text: String(total) }));
    }),
  );
  // Widths are set through the CSSOM (the page's CSP forbids inline style attributes).
  for (const seg of document.querySelectorAll("#class-balance .seg")) seg.style.width = `${100 * Number(seg.dataset.width)}%`;
}

function jobs(list) {
  $("jobs").replaceChildren(
    ...(list.length ? list.map((j) => h("tr", { "data-job-id": j.id },
      h("td", { text: `#${j.id}` }), h("td", { text: j.kind }),
      h("td", {}, h("span", { class: `badge ${j.status}`, text: j.status })),
      h("td", {}, h("progress", { max: 1, value: j.progress, "aria-label": `Job ${j.id} progress` }), h("span", { class: "muted", text: ` ${Math.round(100 * j.progress)}%` })),
      h("td", { class: "muted", text: j.error ?? j.message ?? (j.finished_at ? `finished ${ago(j.finished_at)}` : "") }),
    )) : [h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No jobs yet." }))]),
  );
}

function annotators(list, agreement) {
  const byName = new Map(agreement.by_annotator.map((a) => [a.annotator, a]));
  $("annotators").replaceChildren(
    ...(list.length ? list.map((a) => h("tr", {},
      h("th", { scope: "row", text: a.annotator }), h("td", { class: "num", text: String(a.labels) }),
      h("td", { class: "num", text: num(a.labels_per_hour) }), h("td", { class: "num", text: num(a.median_seconds_per_label, 1) }),
      h("td", { class: "num", text: byName.has(a.annotator) ? `${pct(byName.get(a.annotator).agreement)} of ${byName.get(a.annotator).n_items}` : "–" }),
      h("td", { title: a.last_at, text: ago(a.last_at) }),
    )) : [h("tr", {}, h("td", { colspan: 6, class: "muted", text: "Nobody has labeled yet." }))]),
  );
  $("agreement-summary").textContent = agreement.n_items
    ? `${agreement.n_items} items labeled by two or more annotators; pairwise agreement ${pct(agreement.pairwise_agreement)}.`
    : "No item has been labeled by two annotators yet.";
  $("agreement-pairs").replaceChildren(
    ...agreement.pairs.map((p) => h("tr", {},
      h("td", { text: `${p.a} · ${p.b}` }), h("td", { class: "num", text: String(p.n_items) }),
      h("td", { class: "num", text: pct(p.agreement) }), h("td", { class: "num", text: num(p.kappa, 2) }))),
  );
}

async function refresh() {
  clearTimeout(timer);
  let busy = false;
  try {
    const data = await api.dashboard(pid);
    counts(data.counts, data.model_disagreements);
    overTime(data.labels_over_time);
    curve(data.learning_curve);
    balance(data.class_balance);
    jobs(data.jobs);
    annotators(data.annotators, data.agreement);
    busy = data.jobs.some((j) => j.status === "queued" || j.status === "running");
    root.dataset.updatedAt = new Date().toISOString();
    say(busy ? "A job is running: refreshing every 2 s." : "");
  } catch (err) {
    say(err.detail ?? String(err), "error");
  }
  timer = setTimeout(refresh, busy && !document.hidden ? FAST_MS : SLOW_MS);
}

// A background tab polls slowly; coming back refreshes at once.
document.addEventListener("visibilitychange", () => !document.hidden && refresh());

bindKeys({ r: refresh });
bindAnnotator();
refresh();
