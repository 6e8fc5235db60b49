// Small SVG charts drawn with DOM calls (no library, no HTML strings): a bar chart with a
// cumulative line, and a line chart with points. Sizes are in SVG user units (viewBox).

const NS = "http://www.w3.org/2000/svg";
const [W, H] = [480, 200];
const PAD = { left: 40, right: 40, top: 12, bottom: 28 };

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** Round up to 1, 2 or 5 times a power of ten (a readable axis maximum). */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function frame(title) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart-svg" });
  root.append(svg("title", {}, title));
  return root;
}

function axisY(root, max, { right = false, format = String } = {}) {
  const x = right ? W - PAD.right : PAD.left;
  for (const f of [0, 0.5, 1]) {
    const y = PAD.top + (1 - f) * (H - PAD.top - PAD.bottom);
    if (!right) root.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid-line" }));
    root.append(svg("text", { x: right ? x + 4 : x - 4, y: y + 4, class: "tick", "text-anchor": right ? "start" : "end" }, format(f * max)));
  }
}

/** Bars of `values` and a line of `cumulative` (right axis); `names` label the first and last bar. */
export function barsWithLine(target, { names, values, cumulative, title }) {
  const root = frame(title);
  const [iw, ih] = [W - PAD.left - PAD.right, H - PAD.top - PAD.bottom];
  const maxBar = niceMax(Math.max(...values, 0));
  const maxLine = niceMax(Math.max(...cumulative, 0));
  axisY(root, maxBar);
  axisY(root, maxLine, { right: true });
  const step = iw / Math.max(values.length, 1);
  values.forEach((v, i) => {
    const bh = (v / maxBar) * ih;
    const width = Math.min(Math.max(step * 0.8, 1), 48);
    const bar = svg("rect", { x: PAD.left + (i + 0.5) * step - width / 2, y: PAD.top + ih - bh, width, height: bh, class: "bar" });
    bar.append(svg("title", {}, `${names[i]}: ${v}`));
    root.append(bar);
  });
  const points = cumulative.map((c, i) => `${PAD.left + (i + 0.5) * step},${PAD.top + ih - (c / maxLine) * ih}`);
  root.append(svg("polyline", { points: points.join(" "), class: "line" }));
  for (const p of points) {
    const [cx, cy] = p.split(",");
    root.append(svg("circle", { cx, cy, r: 2.5, class: "dot" }));
  }
  if (names.length) {
    root.append(svg("text", { x: PAD.left, y: H - 8, class: "tick" }, names[0]));
    root.append(svg("text", { x: W - PAD.right, y: H - 8, class: "tick", "text-anchor": "end" }, names[names.length - 1]));
  }
  target.replaceChildren(root);
}

/** A line through (x, y) points, y in [0, 1]; `active` marks one point. */
export function lineChart(target, { points, title, xLabel, format = (y) => y.toFixed(2) }) {
  const root = frame(title);
  const [iw, ih] = [W - PAD.left - PAD.right, H - PAD.top - PAD.bottom];
  const maxX = niceMax(Math.max(...points.map((p) => p.x), 1));
  axisY(root, 1, { format });
  const px = (x) => PAD.left + (x / maxX) * iw;
  const py = (y) => PAD.top + (1 - y) * ih;
  root.append(svg("polyline", { points: points.map((p) => `${px(p.x)},${py(p.y)}`).join(" "), class: "line" }));
  for (const p of points) {
    const dot = svg("circle", { cx: px(p.x), cy: py(p.y), r: p.active ? 5 : 3.5, class: p.active ? "dot active" : "dot" });
    dot.append(svg("title", {}, p.title));
    root.append(dot);
  }
  root.append(svg("text", { x: PAD.left, y: H - 8, class: "tick" }, "0"));
  root.append(svg("text", { x: W - PAD.right, y: H - 8, class: "tick", "text-anchor": "end" }, `${maxX} ${xLabel}`));
  target.replaceChildren(root);
}
