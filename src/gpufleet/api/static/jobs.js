// The jobs list: state, progress, rate, ETA, deadline and cost of the tenant's jobs.

import {duration, el, jobLink, money, number, progress, table, time, words} from "./dom.js";

const PAGE = 50;

export function deadline(job) {
  if (!job.deadline) return "–";
  const when = job.deadline_at ? new Date(job.deadline_at * 1000).toLocaleString() : "";
  return el("span", {class: `deadline-${job.deadline}`, title: `due ${when}`},
            words(job.deadline));
}

export async function render({api, params}) {
  const cursor = params.get("cursor");
  const query = new URLSearchParams({limit: PAGE});
  if (cursor) query.set("cursor", cursor);
  const page = await api(`/v1/jobs?${query}`);
  const open = page.jobs.filter((j) => j.state === "queued" || j.state === "running");
  const atRisk = page.jobs.filter((j) => j.deadline === "at_risk" || j.deadline === "missed");
  const rows = table("Jobs, newest first", [
    {label: "Job", cell: (j) => jobLink(j.job)},
    {label: "State", cell: (j) => words(j.state), cls: (j) => `state state-${j.state}`},
    {label: "Progress", cell: progress},
    {label: "Done", numeric: true, cell: (j) => j.done},
    {label: "Failed", numeric: true, cell: (j) => j.failed},
    {label: "Total", numeric: true, cell: (j) => j.total},
    {label: "Items/s", numeric: true, cell: (j) => number(j.rate_per_s, 1)},
    {label: "ETA", numeric: true, cell: (j) => duration(j.eta_s)},
    {label: "Deadline", cell: deadline},
    {label: "Cost", numeric: true, cell: (j) => money(j.cost_so_far)},
    {label: "Model", cell: (j) => el("code", {}, j.model)},
    {label: "Created", cell: (j) => time(j.created_at)},
  ], page.jobs, {empty: "none yet. Submit one with POST /v1/jobs or gpufleet submit."});
  const more = [];
  if (cursor) more.push(el("a", {href: "#/jobs", "data-focus": "newest"}, "Newest jobs"));
  if (page.next) {
    more.push(el("a", {href: `#/jobs?cursor=${encodeURIComponent(page.next)}`,
                       "data-focus": "older"}, "Older jobs"));
  }
  return el("section", {"aria-labelledby": "jobs-title"},
    el("h2", {id: "jobs-title"}, "Jobs"),
    el("p", {class: "muted"}, `${open.length} open on this page; ` +
       `${atRisk.length} at risk of missing or past their deadline.`),
    rows, el("p", {class: "actions"}, more));
}
