// The labeling page: renders leased items from /next and sends answers to the JSON API.
// Item data is only ever written with textContent / attributes, never as HTML.

import { ApiError, createApi, uuid } from "./api.js";
import { imageSrc, readAnnotator, saveAnnotator } from "./common.js";
import * as km from "./keymap.js";

const UNDO_MEMORY = 50;
const root = document.getElementById("label-app");
if (root?.dataset.projectId) start(root);

function start(root) {
  const pid = root.dataset.projectId;
  const labels = JSON.parse(root.dataset.labels);
  const api = createApi(root.dataset.apiBase);
  const camel = (id) => id.replace(/-(\w)/g, (_, c) => c.toUpperCase());
  // Every element with an id, by camel-cased id: "item-heading" -> el.itemHeading.
  const el = Object.fromEntries([...document.querySelectorAll("[id]")].map((n) => [camel(n.id), n]));
  const buttons = [...root.querySelectorAll(".label-button")];
  let state = km.initialState({ labels, task: root.dataset.task });
  let [shownLease, fetching, generation, counting] = [undefined, false, 0, null];
  let total = Number(el.totalCount.textContent) || 0;
  let annotator = readAnnotator();
  const history = []; // { entry, annotationId } of this session's saved labels, newest last
  el.annotator.value = annotator === "anonymous" ? "" : annotator;
  // One request at a time: an answer lands before the next /next (which then cannot return
  // the lease just answered), and writes never race each other on the server.
  let chain = Promise.resolve();
  const serial = (call) => (chain = chain.then(call, call));

  function dispatch(action) {
    const result = km.reduce(state, action);
    state = result.state;
    render();
    if (result.effect) perform(result.effect);
    fetchMore();
  }

  function say(message, kind = "info") {
    el.status.textContent = message;
    el.status.classList.toggle("error", kind === "error");
  }

  // Keeps PREFETCH items leased so that a key press shows the next one at once.
  async function fetchMore() {
    if (fetching || !km.needsMore(state)) return;
    fetching = true;
    const [gen, before] = [generation, state.queue.length];
    let action;
    try {
      const ask = (n) => api.next(pid, annotator, n);
      // At the pool's tail /next?n=2 can answer 409 while one item is left: ask for one.
      const askOne = (err) => (isExhausted(err) ? ask(1) : Promise.reject(err));
      const data = await serial(() => ask(km.PREFETCH).catch(askOne));
      action = { type: "loaded", items: data.items };
      predecode(data.items);
    } catch (err) {
      if (!isExhausted(err)) say(err.detail ?? String(err), "error");
      action = isExhausted(err) ? "exhausted" : { type: "stalled", problem: err.detail ?? String(err) };
    }
    fetching = false;
    if (gen !== generation) return fetchMore(); // the annotator changed meanwhile
    state = km.reduce(state, action).state;
    render();
    // A late answer may only repeat leases already answered here: ask again a bit later.
    if (state.queue.length > before) fetchMore();
    else if (km.needsMore(state)) setTimeout(fetchMore, 1500);
  }

  async function perform({ type, entry, labels: chosen }) {
    if (type === "undo") return undoLast();
    const name = entry.item.external_id ?? entry.item.id;
    try {
      if (type === "skip") {
        await serial(() => api.skip(pid, entry.lease_id));
        return say(`Skipped item ${name}.`);
      }
      const body = { item_id: entry.item.id, annotator, lease_id: entry.lease_id };
      if (state.multilabel) body.labels = chosen;
      else body.label = chosen[0];
      const key = uuid(); // one Idempotency-Key for the call and its retry
      const saved = await serial(() => api.annotate(pid, body, key));
      history.push({ entry, annotationId: saved.id });
      history.splice(0, history.length - UNDO_MEMORY);
      dispatch({ type: "annotated" });
      say(`Saved item ${name} as ${chosen.join(", ")}.`);
      refreshCounts();
    } catch (err) {
      say(`Item ${name}: ${err.detail ?? String(err)}`, "error");
      // Not saved (network or server failure): show the item again. A 409 label_conflict
      // or another client error is final and only reported.
      const lost = !(err instanceof ApiError) || err.status === 0 || err.status >= 500;
      if (type === "annotate" && lost) dispatch({ type: "restore", entry });
    }
  }

  // Retract the session's last label (after any save still in flight) and put the item back
  // on screen under the lease the server hands back.
  function undoLast() {
    return serial(async () => {
      const last = history.pop();
      if (!last) return say("Nothing to undo in this session.");
      const name = last.entry.item.external_id ?? last.entry.item.id;
      try {
        const undone = await api.undo(pid, last.annotationId, annotator);
        dispatch("undone");
        if (undone.lease) {
          const { lease_id, expires_at } = undone.lease;
          dispatch({ type: "restore", entry: { ...last.entry, lease_id, expires_at } });
        }
        say(`Undid the label of item ${name}.`);
        refreshCounts();
      } catch (err) {
        say(`Undo of item ${name}: ${err.detail ?? String(err)}`, "error");
        render();
      }
    });
  }

  function refreshCounts() {
    counting ??= serial(() => api.project(pid))
      .then((project) => {
        total = project.counts.items;
        el.labeledCount.textContent = String(project.counts.labeled);
        el.totalCount.textContent = String(total);
        el.modelVersion.textContent = describeModel(project.active_model);
        render();
      })
      .catch((err) => say(err.detail ?? String(err), "error"))
      .finally(() => (counting = null));
  }

  function render() {
    const entry = km.current(state);
    if (!entry || entry.lease_id !== shownLease) {
      shownLease = entry?.lease_id;
      if (entry) showItem(entry);
      else showEmpty();
    }
    const suggested = entry?.suggestion ? labels.indexOf(entry.suggestion.label) : -1;
    buttons.forEach((button, i) => {
      button.disabled = !entry;
      button.classList.toggle("suggested", i === suggested);
      if (state.multilabel) button.setAttribute("aria-pressed", String(state.selected.includes(i)));
    });
    el.accept.disabled = !km.acceptLabels(state);
    el.acceptText.textContent =
      state.multilabel && state.selected.length ? "Submit labels" : "Accept suggestion";
    el.skip.disabled = !entry;
    el.undo.disabled = history.length === 0;
    el.sessionCount.textContent = String(state.submitted);
    if (state.help && !el.help.open) el.help.showModal();
    if (!state.help && el.help.open) el.help.close();
  }

  function showItem({ item, acquisition: acq, suggestion }) {
    const name = item.external_id ?? item.id;
    el.item.setAttribute("aria-busy", "false");
    el.item.dataset.itemId = String(item.id);
    el.item.dataset.externalId = String(name);
    el.retry.hidden = true;
    el.itemHeading.textContent = `Item ${name}`;
    el.itemText.textContent = item.text || "(no text)";
    el.itemText.classList.toggle("muted", !item.text);
    el.itemText.hidden = !item.text && Boolean(item.image);
    el.itemImage.hidden = !item.image;
    el.itemImage.classList.remove("small", "pixelated");
    if (!item.image) el.itemImage.removeAttribute("src");
    else [el.itemImage.alt, el.itemImage.src] = [`Image of item ${name}`, imageSrc(item.image)];
    showMeta(item.meta);
    el.suggestion.hidden = !suggestion;
    if (suggestion) {
      el.suggestionLabel.textContent = suggestion.label;
      el.suggestionConfidence.textContent = `(${(100 * suggestion.confidence).toFixed(1)}% confident)`;
    }
    el.acqStrategy.textContent = acq.strategy;
    el.acqScore.textContent = acq.score == null ? "–" : Number(acq.score).toFixed(4);
    el.acqRank.textContent = String(acq.rank);
    el.acqModel.textContent = acq.model_version == null ? "none (cold start)" : `v${acq.model_version}`;
  }

  function showEmpty() {
    let [heading, note] = ["Loading the next item…", ""];
    if (state.problem) [heading, note] = ["Could not load the next item", state.problem];
    else if (state.exhausted && total === 0) {
      [heading, note] = ["This project has no items yet", "Import items through the API."];
    } else if (state.exhausted) {
      heading = "All items are labeled";
      note = "Nothing is left in your queue (items leased to others or skipped by you are hidden).";
    }
    el.item.setAttribute("aria-busy", String(!state.exhausted));
    delete el.item.dataset.itemId;
    delete el.item.dataset.externalId;
    el.itemHeading.textContent = heading;
    el.itemText.textContent = note;
    el.itemText.classList.add("muted");
    el.itemText.hidden = !note;
    el.retry.hidden = !state.exhausted;
    el.itemImage.hidden = el.itemMeta.hidden = el.suggestion.hidden = true;
    for (const node of [el.acqStrategy, el.acqScore, el.acqRank, el.acqModel]) node.textContent = "–";
  }

  function showMeta(meta) {
    const entries = Object.entries(meta ?? {}).slice(0, 12);
    el.itemMeta.replaceChildren();
    for (const [key, value] of entries) {
      const [dt, dd] = [document.createElement("dt"), document.createElement("dd")];
      const text = typeof value === "string" ? value : JSON.stringify(value);
      dt.textContent = key;
      dd.textContent = text.length > 200 ? `${text.slice(0, 200)}…` : text;
      el.itemMeta.append(dt, dd);
    }
    el.itemMeta.hidden = entries.length === 0;
  }

  function changeAnnotator() {
    const name = el.annotator.value.trim() || "anonymous";
    if (name === annotator) return;
    annotator = saveAnnotator(name);
    history.length = 0; // undo is per annotator
    generation += 1;
    // Give back what the old name holds so that others need not wait for the leases to expire.
    for (const entry of state.queue) serial(() => api.skip(pid, entry.lease_id)).catch(() => {});
    say(`Labeling as ${name}.`);
    dispatch("reset");
  }

  // Buttons dispatch the same actions as keys; focus then returns to the item so that
  // Enter keeps meaning "accept" instead of clicking the last button again.
  const click = (action) => () => {
    dispatch(action);
    if (action !== "help") el.item.focus({ preventScroll: true });
  };
  buttons.forEach((b) => b.addEventListener("click", click(`label:${b.dataset.index}`)));
  const labelKeys = Object.fromEntries(
    buttons.filter((b) => b.dataset.key).map((b) => [b.dataset.key, Number(b.dataset.index)]),
  );
  el.accept.addEventListener("click", click("accept"));
  el.skip.addEventListener("click", click("skip"));
  el.undo.addEventListener("click", click("undo"));
  el.helpButton.addEventListener("click", click("help"));
  el.retry.addEventListener("click", () => (say(""), refreshCounts(), dispatch("retry")));
  el.help.addEventListener("close", () => state.help && dispatch("close-help"));
  el.itemImage.addEventListener("load", () => {
    el.itemImage.classList.toggle("small", el.itemImage.naturalWidth < 256);
    el.itemImage.classList.toggle("pixelated", el.itemImage.naturalWidth <= 64);
  });
  el.annotator.addEventListener("change", changeAnnotator);
  el.annotator.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape") el.annotator.blur();
  });
  document.addEventListener("keydown", (e) => {
    const action = km.actionFor(e, { helpOpen: state.help, labelKeys });
    if (!action) return;
    e.preventDefault();
    dispatch(action);
  });
  // A lease held too long (an idle tab) is dropped here; the server serves its item again.
  setInterval(() => dispatch({ type: "expire", now: Date.now() }), 15000);

  render();
  refreshCounts();
  fetchMore();
}

// Decode prefetched images now, so that showing one later costs no decode on the key press.
function predecode(items) {
  for (const { item } of items) {
    if (!item.image) continue;
    const image = new Image();
    image.src = imageSrc(item.image);
    image.decode().catch(() => {}); // a broken image shows as broken when its turn comes
  }
}

const isExhausted = (err) => err instanceof ApiError && err.code === "pool_exhausted";

function describeModel(model) {
  if (!model) return "none yet";
  const metrics = model.metrics ?? {};
  const shown = [["accuracy", "accuracy"], ["macro_f1", "macro-F1"]]
    .filter(([key]) => typeof metrics[key] === "number")
    .map(([key, name]) => `${name} ${(100 * metrics[key]).toFixed(1)}%`);
  return [`v${model.version}`, ...shown].join(" · ");
}
