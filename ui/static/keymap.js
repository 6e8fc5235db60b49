// Keyboard map as data, and the labeling page's pure state transitions (no DOM, no fetch):
// reduce(state, action) -> { state, effect }; label.js performs the effect.

export const LABEL_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];

export const KEYMAP = Object.freeze({
  ...Object.fromEntries(LABEL_KEYS.map((key, i) => [key, `label:${i}`])),
  Enter: "accept",
  a: "accept",
  s: "skip",
  u: "undo",
  "?": "help",
  Escape: "close-help",
});

/** How many leased items the page keeps in hand (the current one plus the next). */
export const PREFETCH = 2;
const DONE_MEMORY = 500;
const TYPING = "input, textarea, select, [contenteditable]:not([contenteditable='false'])";

/** True while focus is in a field where keys type text (datasette's isInputFocused). */
export function isTyping(target) {
  return Boolean(target && typeof target.closest === "function" && target.closest(TYPING));
}

/** The action a keydown asks for, or null when the page should leave the key alone.
 * `labelKeys` maps a key to a label index (the page's buttons carry data-key); without it,
 * keys 1..9, 0 pick labels by position. */
export function actionFor(event, { helpOpen = false, labelKeys = null } = {}) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return null;
  if (isTyping(event.target)) return null;
  const labelIndex = labelKeys ? labelKeys[event.key] : undefined;
  const action =
    labelIndex !== undefined ? `label:${labelIndex}` : labelKeys && /^[0-9]$/.test(event.key)
      ? null
      : KEYMAP[event.key] ?? null;
  if (action === "close-help" && !helpOpen) return null;
  if (helpOpen) return action === "help" || action === "close-help" ? action : null;
  if (event.repeat) return null; // holding a key must not label a run of items
  // Enter on a focused button or link already activates it.
  if (event.key === "Enter" && event.target?.closest?.("button, a[href], summary")) return null;
  return action;
}

export function initialState({ labels, task }) {
  return {
    labels: [...labels],
    multilabel: task === "multilabel",
    queue: [], // leased entries from /next; queue[0] is on screen
    done: [], // lease ids already answered here (a late /next may still return them)
    selected: [], // multilabel: label indices toggled on for queue[0]
    submitted: 0,
    help: false,
    exhausted: false, // the server said nothing is left: stop asking until "retry"
    drained: false, // the last /next could not fill the queue: ask again only when it is empty
    problem: null, // why loading stopped, when it was an error
  };
}

export const current = (state) => state.queue[0] ?? null;

/** True when the page should ask /next for more items. */
export const needsMore = (state) =>
  !state.exhausted && (state.queue.length === 0 || (state.queue.length < PREFETCH && !state.drained));

/** The labels "accept" would submit for the current item, or null. */
export function acceptLabels(state) {
  const entry = current(state);
  if (!entry) return null;
  if (state.multilabel && state.selected.length) {
    return [...state.selected].sort((a, b) => a - b).map((i) => state.labels[i]);
  }
  return entry.suggestion ? [entry.suggestion.label] : null;
}

function advance(state) {
  const entry = current(state);
  return {
    ...state,
    queue: state.queue.slice(1),
    done: [...state.done, entry.lease_id].slice(-DONE_MEMORY),
    selected: [],
  };
}

function answer(state, labels) {
  const entry = current(state);
  return { state: advance(state), effect: { type: "annotate", entry, labels } };
}

function merge(state, items) {
  const seenLeases = new Set([...state.done, ...state.queue.map((e) => e.lease_id)]);
  const seenItems = new Set(state.queue.map((e) => e.item.id));
  const fresh = items.filter((e) => !seenLeases.has(e.lease_id) && !seenItems.has(e.item.id));
  const queue = [...state.queue, ...fresh];
  return { ...state, queue, exhausted: false, problem: null, drained: items.length < PREFETCH };
}

export function reduce(state, action) {
  const { type, ...payload } = typeof action === "string" ? { type: action } : action;
  const none = (next) => ({ state: next, effect: null });
  if (type.startsWith("label:")) {
    const index = Number(type.slice("label:".length));
    if (!current(state) || !(index >= 0 && index < state.labels.length)) return none(state);
    if (!state.multilabel) return answer(state, [state.labels[index]]);
    const selected = state.selected.includes(index)
      ? state.selected.filter((i) => i !== index)
      : [...state.selected, index];
    return none({ ...state, selected });
  }
  switch (type) {
    case "accept": {
      const labels = acceptLabels(state);
      return labels ? answer(state, labels) : none(state);
    }
    case "skip": {
      const entry = current(state);
      return entry ? { state: advance(state), effect: { type: "skip", entry } } : none(state);
    }
    case "undo": // label.js knows which annotation was last and undoes it on the server
      return { state, effect: { type: "undo" } };
    case "undone": // the label was retracted: the session counter goes back
      return none({ ...state, submitted: Math.max(0, state.submitted - 1) });
    case "help":
      return none({ ...state, help: !state.help });
    case "close-help":
      return none({ ...state, help: false });
    case "loaded":
      return none(merge(state, payload.items ?? []));
    case "exhausted":
      return none({ ...state, exhausted: true, problem: null });
    case "stalled": // loading failed: stop until "retry"
      return none({ ...state, exhausted: true, problem: payload.problem ?? "error" });
    case "retry":
      return none({ ...state, exhausted: false, drained: false, problem: null });
    case "annotated":
      return none({ ...state, submitted: state.submitted + 1 });
    case "restore": // a save failed: put the item back on screen
      return none({
        ...state,
        queue: [payload.entry, ...state.queue.filter((e) => e.lease_id !== payload.entry.lease_id)],
        done: state.done.filter((id) => id !== payload.entry.lease_id),
        selected: [],
      });
    case "expire": {
      // Drop leases about to run out (a 5 s margin for the answer's round trip).
      const live = state.queue.filter((e) => !(Date.parse(e.expires_at) - 5000 <= payload.now));
      if (live.length === state.queue.length) return none(state);
      const kept = current(state) === live[0];
      return none({ ...state, queue: live, selected: kept ? state.selected : [] });
    }
    case "reset": // another annotator name: its leases differ
      return none({ ...state, queue: [], selected: [], exhausted: false, drained: false,
        problem: null });
    default:
      return none(state);
  }
}
