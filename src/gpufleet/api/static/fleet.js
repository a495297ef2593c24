// The fleet now and over time: desired versus actual workers with the controller's reasons,
// throughput, backlog and cost, each as a chart and as a table.

import {chart} from "./charts.js";
import {clock, el, money, number, table, time} from "./dom.js";

const count = (v) => String(Math.round(v * 10) / 10);  // axis ticks: 0, 0.5, 1 workers
const WINDOWS = [[900, "15 minutes"], [3600, "1 hour"], [21600, "6 hours"], [86400, "24 hours"]];

// The fleet's size over time, summed over the tenant's models: at each decision, every
// model's latest desired and actual count (a model keeps its size until it decides again).
function sizes(decisions, until) {
  const latest = new Map();
  const desired = [], actual = [], markers = [];
  for (const d of decisions) {
    latest.set(d.model, d);
    const sum = (k) => [...latest.values()].reduce((s, m) => s + m[k], 0);
    desired.push([d.at, sum("desired")]);
    actual.push([d.at, sum("actual")]);
    markers.push({t: d.at, v: sum("desired"), title: `${clock(d.at)} ${d.model}: desired ` +
      `${d.desired}, actual ${d.actual}. ${d.reasons.join("; ") || "no reason recorded"}`});
  }
  for (const line of [desired, actual]) if (line.length) line.push([until, line.at(-1)[1]]);
  return {desired, actual, markers};
}

function windowPicker(current, navigate) {
  const select = el("select", {id: "window", "data-focus": "window"},
    WINDOWS.map(([s, label]) => el("option", {value: s, selected: s === current}, label)));
  return el("form", {class: "filters", "aria-label": "Time window", onsubmit: (event) => {
    event.preventDefault();
    navigate(`#/fleet?window=${select.value}`);
  }}, el("label", {for: "window"}, "Window", select),
  el("button", {type: "submit", "data-focus": "show-window"}, "Show"));
}

export async function render({api, params, navigate}) {
  const windowS = Number(params.get("window")) || 900;
  const [now, history] = await Promise.all([
    api("/v1/fleet"), api(`/v1/fleet/history?window_s=${windowS}`)]);
  const {since, until, bucket_s: bucket, decisions, series} = history;
  const {desired, actual, markers} = sizes(decisions, until);
  let spent = 0;
  const cost = series.map((p) => [p.at + bucket, (spent += p.cost)]);
  const busy = series.filter((p) => p.done || p.failed || p.backlog || p.cost);
  const workersNow = Object.entries(now.workers).map(([s, n]) => `${n} ${s}`).join(", ");
  return el("section", {"aria-labelledby": "fleet-title"},
    el("h2", {id: "fleet-title"}, "Fleet"),
    el("p", {}, `Live workers serving your open work: ${workersNow || "none"}.`),
    table("Your models with open work", [
      {label: "Model", cell: (m) => el("code", {}, m.model)},
      {label: "Open jobs", numeric: true, cell: (m) => m.jobs},
      {label: "Pending items", numeric: true, cell: (m) => m.pending},
    ], Object.entries(now.models).map(([model, m]) => ({model, ...m})),
    {empty: "no open work."}),
    windowPicker(windowS, navigate),
    el("div", {class: "charts"},
      chart({title: "Workers: desired (solid) and actual (dashed)", x0: since, x1: until,
             series: [{name: "desired", kind: "step", points: desired},
                      {name: "actual", kind: "step", points: actual}],
             markers, format: count,
             summary: decisions.length
               ? `${decisions.length} decisions; now desired ${desired.at(-1)[1]}, ` +
                 `actual ${actual.at(-1)[1]}.`
               : "No decisions in this window."}),
      chart({title: "Throughput (items/s)", x0: since, x1: until,
             series: [{name: "items/s", kind: "bar", width_s: bucket,
                       points: series.map((p) => [p.at, p.items_per_s])}],
             format: (v) => number(v, v < 10 ? 1 : 0),
             summary: `${series.reduce((s, p) => s + p.done + p.failed, 0)} items finished.`}),
      chart({title: "Backlog (pending items)", x0: since, x1: until,
             series: [{name: "pending", kind: "line",
                       points: series.map((p) => [p.at + bucket, p.backlog])}],
             format: count,
             summary: `Now ${series.at(-1)?.backlog ?? 0} pending.`}),
      chart({title: "Cost in this window (cumulative)", x0: since, x1: until,
             series: [{name: "cost", kind: "line", points: cost}], format: money,
             summary: `${money(spent)} in this window.`})),
    el("details", {}, el("summary", {"data-focus": "decisions-table"},
                         "The controller's decisions as a table"),
      table("Decisions on your models, newest first", [
        {label: "Time", cell: (d) => time(d.at)},
        {label: "Model", cell: (d) => el("code", {}, d.model)},
        {label: "Desired", numeric: true, cell: (d) => d.desired},
        {label: "Actual", numeric: true, cell: (d) => d.actual},
        {label: "Reasons", cell: (d) => d.reasons.join("; ")},
      ], [...decisions].reverse().slice(0, 50), {empty: "none in this window."})),
    el("details", {}, el("summary", {"data-focus": "series-table"},
                         "Throughput, backlog and cost as a table"),
      table(`Your work per ${bucket} s`, [
        {label: "From", cell: (p) => time(p.at)},
        {label: "Done", numeric: true, cell: (p) => p.done},
        {label: "Failed", numeric: true, cell: (p) => p.failed},
        {label: "Items/s", numeric: true, cell: (p) => number(p.items_per_s, 2)},
        {label: "Backlog", numeric: true, cell: (p) => p.backlog},
        {label: "Cost", numeric: true, cell: (p) => money(p.cost)},
      ], busy.reverse(), {empty: "no work in this window."})));
}
