// Time-series charts drawn as SVG: no charting library, so nothing to fetch from a CDN.
// A chart is an image with a name and a one-line summary for screen readers; the view
// puts the same numbers in a table beside it. Markers (the controller's decisions) carry
// their reasons as <title>, shown on hover.

import {clock, el} from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 560, H = 190, LEFT = 48, RIGHT = 10, TOP = 10, BOTTOM = 24;
let counter = 0;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

// A top for the y axis that reads well: 1, 2 or 5 times a power of ten.
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function pathOf(points, x, y, step) {
  return points.map(([px, py], i) => {
    if (i === 0) return `M${x(px)},${y(py)}`;
    // A step holds the previous value until the next point (a desired size is kept).
    return step ? `H${x(px)}V${y(py)}` : `L${x(px)},${y(py)}`;
  }).join("");
}

/**
 * title: the figure's caption; x0, x1: the time window (epoch s); series: [{name, points:
 * [[t, v]], kind: "line" | "step" | "bar", width_s (bars)}]; markers: [{t, v, title}];
 * format: a value's text; summary: a sentence for assistive technology.
 */
export function chart({title, x0, x1, series, markers = [], format = String, summary}) {
  const id = `chart-${++counter}`;
  const values = series.flatMap((s) => s.points.map(([, v]) => v)).concat(markers.map((m) => m.v));
  const top = niceMax(Math.max(0, ...values));
  const x = (t) => LEFT + ((t - x0) / Math.max(1, x1 - x0)) * (W - LEFT - RIGHT);
  const y = (v) => H - BOTTOM - (v / top) * (H - TOP - BOTTOM);
  const axes = [0, top / 2, top].map((v) => [
    svg("line", {class: "axis", x1: LEFT, x2: W - RIGHT, y1: y(v), y2: y(v)}),
    svg("text", {x: LEFT - 4, y: y(v) + 4, "text-anchor": "end"}, format(v))]);
  const times = [x0, (x0 + x1) / 2, x1].map((t, i) => svg("text", {
    x: x(t), y: H - 6, "text-anchor": ["start", "middle", "end"][i]}, clock(t)));
  const drawn = series.map((s, i) => {
    if (s.kind === "bar") {
      const width = Math.max(1, x(x0 + s.width_s) - x(x0) - 1);
      return s.points.filter(([, v]) => v > 0).map(([t, v]) => svg("rect", {
        class: `bar ${s.cls || ""}`, x: x(t), y: y(v), width, height: y(0) - y(v)},
      svg("title", {}, `${clock(t)}: ${format(v)} ${s.name}`)));
    }
    return svg("path", {class: `s${i}`, d: pathOf(s.points, x, y, s.kind === "step")});
  });
  const dots = markers.map((m) => svg("circle", {class: "marker", cx: x(m.t), cy: y(m.v), r: 4},
                                      svg("title", {}, m.title)));
  const legend = el("ul", {class: "legend", "aria-hidden": "true"}, series.map((s, i) =>
    el("li", {}, el("span", {class: "swatch", style: `background: ${
      s.kind === "bar" ? (s.cls === "failed" ? "var(--bad)" : "var(--accent)")
        : ["var(--accent)", "var(--warn)"][i % 2]}`}), s.name)));
  return el("figure", {},
    el("figcaption", {id: `${id}-title`}, title),
    svg("svg", {class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
                "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-desc`},
        svg("desc", {id: `${id}-desc`}, summary || title), axes, times, drawn, dots),
    legend);
}
