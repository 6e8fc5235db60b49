// What every page shares: the annotator name kept in the browser (until logins land), the
// "?" help dialog, and one keydown listener that leaves keys alone while the user types.

import { isTyping } from "./keymap.js";

export const ANNOTATOR_KEY = "quarry.annotator";

/** The annotator name stored in this browser, or "anonymous". */
export function readAnnotator() {
  try {
    return localStorage.getItem(ANNOTATOR_KEY) || "anonymous";
  } catch {
    return "anonymous"; // storage disabled
  }
}

/** Store the annotator name (an empty name means "anonymous"); returns the name in use. */
export function saveAnnotator(name) {
  const clean = name.trim() || "anonymous";
  try {
    localStorage.setItem(ANNOTATOR_KEY, clean);
  } catch {
    // storage disabled: the name lasts for this page only
  }
  return clean;
}

/** Fill the topbar's annotator field and call onChange(name) when the user changes it. */
export function bindAnnotator(onChange = () => {}) {
  const input = document.getElementById("annotator");
  if (!input) return;
  const name = readAnnotator();
  input.value = name === "anonymous" ? "" : name;
  input.addEventListener("change", () => onChange(saveAnnotator(input.value)));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape") input.blur();
  });
}

/** Wire the help dialog (button, "?", Esc) and route other keys to handlers[key](event); a
 * handler that returns false declines the key (the browser's default then applies).
 * Keys are ignored with modifiers, while typing in a field and while the help is open. */
export function bindKeys(handlers) {
  const help = document.getElementById("help");
  const toggleHelp = () => (help.open ? help.close() : help.showModal());
  document.getElementById("help-button")?.addEventListener("click", toggleHelp);
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || isTyping(e.target)) return;
    if (e.key === "?") {
      e.preventDefault();
      toggleHelp();
      return;
    }
    if (help.open) return; // the dialog handles Esc itself
    const handler = handlers[e.key];
    if (handler && !e.repeat && handler(e) !== false) e.preventDefault();
  });
}

/** Show a message in the page's live status line. */
export function say(message, kind = "info") {
  const status = document.getElementById("status");
  status.textContent = message;
  status.classList.toggle("error", kind === "error");
}

/** Create an element with attributes and children (strings become text nodes, never HTML). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/** A data: URL for an item's image (base64 PNG/JPEG or a data URL already). */
export function imageSrc(image) {
  if (/^data:image\/[\w.+-]+;base64,/i.test(image)) return image;
  const data = image.replace(/\s+/g, "");
  return `data:${data.startsWith("/9j/") ? "image/jpeg" : "image/png"};base64,${data}`;
}

/** "3 min ago"-style text for an ISO time. */
export function ago(iso, now = Date.now()) {
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}
