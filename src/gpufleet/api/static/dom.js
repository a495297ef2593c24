// Small DOM helpers and formatters shared by the views. Text always goes in as text
// (textContent), never as HTML: job ids, keys and errors come from users.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A table with a caption, column headers (scope=col) and, in each row, a row header
// (scope=row) from the first column: what a screen reader announces with every cell.
export function table(caption, columns, rows, {empty = "None."} = {}) {
  if (!rows.length) return el("p", {class: "muted"}, `${caption}: ${empty}`);
  const head = el("tr", {}, columns.map((c) =>
    el("th", {scope: "col", class: c.numeric ? "n" : null}, c.label)));
  const body = rows.map((row) => el("tr", {}, columns.map((c, i) => {
    const value = c.cell(row);
    const cls = [c.numeric ? "n" : "", c.cls ? c.cls(row) : ""].join(" ").trim() || null;
    return i === 0 ? el("th", {scope: "row", class: cls}, value)
      : el("td", {class: cls}, value);
  })));
  return el("table", {}, el("caption", {}, caption), el("thead", {}, head),
            el("tbody", {}, body));
}

export function summary(pairs) {
  return el("dl", {class: "summary"},
            pairs.map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))));
}

export function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function time(epoch_s) {
  if (epoch_s === null || epoch_s === undefined) return "–";
  const at = new Date(epoch_s * 1000);
  return el("time", {datetime: at.toISOString()}, at.toLocaleString());
}

export function clock(epoch_s) {
  return new Date(epoch_s * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

export function ago(epoch_s) {
  const at = new Date(epoch_s * 1000);
  return el("time", {datetime: at.toISOString(), title: at.toLocaleString()},
            `${duration(Math.max(0, Date.now() / 1000 - epoch_s))} ago`);
}

export function number(n, digits = 0) {
  return n === null || n === undefined ? "–" : Number(n).toFixed(digits);
}

export function money(n) {
  return n === null || n === undefined ? "–" : `$${Number(n).toFixed(4)}`;
}

export function words(name) {
  return name ? name.replaceAll("_", " ") : "–";
}

// A job's progress as a native <progress> (announced as a percentage) and its figure.
export function progress(job) {
  const ended = job.done + job.failed + (job.cancelled || 0) + (job.skipped || 0);
  const pct = job.total ? Math.floor((100 * ended) / job.total) : 0;
  return el("span", {}, el("progress", {max: job.total || 1, value: ended,
                                        "aria-label": `${job.job}: ${pct}% finished`}),
            el("span", {class: "pct"}, `${pct}%`));
}

export function jobLink(id) {
  return el("a", {href: `#/jobs/${encodeURIComponent(id)}`, class: "id",
                  "data-focus": `job-${id}`}, id);
}

// An item's path in the API: its key's slashes kept, everything else escaped.
export function itemPath(item) {
  const key = item.key.split("/").map(encodeURIComponent).join("/");
  return `/v1/items/${encodeURIComponent(item.job)}/${key}`;
}
