// One job: its figures, its failures grouped by reason, its items (filtered by status and
// tag, with thumbnails and results through signed URLs), and Cancel.

import {
  duration, el, itemPath, money, number, progress, summary, table, time, words,
} from "./dom.js";
import {deadline} from "./jobs.js";
import {thumbnail} from "./thumbs.js";

const PAGE = 50;
const STATUSES = ["", "pending", "done", "failed", "cancelled", "skipped"];

function itemsPath(id, {status, tag, cursor, limit = PAGE}) {
  const query = new URLSearchParams({limit});
  if (status) query.set("status", status);
  if (tag) query.set("tag", tag);
  if (cursor) query.set("cursor", cursor);
  return `/v1/jobs/${encodeURIComponent(id)}/items?${query}`;
}

function filters(id, status, tag, navigate) {
  const select = el("select", {id: "f-status", name: "status"},
    STATUSES.map((s) => el("option", {value: s, selected: s === status}, s || "any")));
  const input = el("input", {id: "f-tag", name: "tag", value: tag, size: 18,
                             placeholder: "label or id"});
  return el("form", {class: "filters", "aria-label": "Filter items", onsubmit: (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (select.value) query.set("status", select.value);
    if (input.value.trim()) query.set("tag", input.value.trim());
    navigate(`#/jobs/${encodeURIComponent(id)}${query.size ? `?${query}` : ""}`);
  }},
  el("label", {for: "f-status"}, "Status", select),
  el("label", {for: "f-tag"}, "Tag", input),
  el("button", {type: "submit", "data-focus": "filter"}, "Filter"));
}

// The failures' reasons, most frequent first: what an operator reads first.
function reasons(failed) {
  const counts = new Map();
  for (const item of failed) {
    const reason = item.error || "(no reason)";
    counts.set(reason, (counts.get(reason) || 0) + 1);
  }
  const rows = [...counts].sort((a, b) => b[1] - a[1]).map(([reason, n]) => ({reason, n}));
  return table("Failures by reason (latest 100 failed items)", [
    {label: "Reason", cell: (r) => r.reason, cls: () => "error"},
    {label: "Items", numeric: true, cell: (r) => r.n},
  ], rows);
}

function cancelButton(job, ctx) {
  if (!ctx.submit || (job.state !== "queued" && job.state !== "running")) return null;
  return el("button", {class: "danger", "data-focus": "cancel", onclick: () => ctx.act(async () => {
    const yes = await ctx.confirm(`Cancel job ${job.job}?`,
      "Its pending items end cancelled and queued tasks are dropped; items already " +
      "running finish with their own outcome. This cannot be undone.", "Cancel job");
    if (!yes) return;
    await ctx.api(`/v1/jobs/${encodeURIComponent(job.job)}`, {method: "DELETE"});
    await ctx.refresh({said: `Job ${job.job} cancelled`});
  })}, "Cancel job…");
}

function showResult(ctx, item, box) {
  return el("button", {"data-focus": `result-${item.key}`, onclick: () => ctx.act(async () => {
    // The API answers with a redirect to a short-lived signed URL: the browser follows it.
    const text = await (await ctx.blob(`${itemPath(item)}/download`)).text();
    box.replaceChildren(el("h3", {}, `Result of ${item.key}`), el("pre", {}, text));
  })}, "Result");
}

export async function render(ctx) {
  const [id] = ctx.args;
  const status = ctx.params.get("status") || "";
  const tag = ctx.params.get("tag") || "";
  const cursor = ctx.params.get("cursor");
  const jobPath = `/v1/jobs/${encodeURIComponent(id)}`;
  const [job, page] = await Promise.all([
    ctx.api(jobPath), ctx.api(itemsPath(id, {status, tag, cursor}))]);
  const failed = job.failed
    ? (await ctx.api(itemsPath(id, {status: "failed", limit: 100}))).items : [];
  const resultBox = el("div", {"aria-live": "polite"});
  const itemRows = table(`Items${status ? ` (${status})` : ""}${tag ? ` tagged ${tag}` : ""}`, [
    {label: "Key", cell: (i) => el("code", {}, i.key)},
    {label: "Image", cell: (i) => thumbnail(ctx, i)},
    {label: "Status", cell: (i) => words(i.status),
     cls: (i) => `state state-${i.status === "done" ? "succeeded" : i.status}`},
    {label: "Top tags", cell: (i) => el("ul", {class: "tags"}, i.tags.slice(0, 3).map(
      (t) => el("li", {}, `${t.label} (${t.score.toFixed(2)})`)))},
    {label: "Reason", cell: (i) => i.error || "", cls: () => "error"},
    {label: "Attempts", numeric: true, cell: (i) => i.attempts},
    {label: "Finished", cell: (i) => time(i.finished_at)},
    {label: "Result", cell: (i) => (i.status === "pending" ? "" : showResult(ctx, i, resultBox))},
  ], page.items, {empty: "no items match."});
  const nextQuery = new URLSearchParams({...(status && {status}), ...(tag && {tag}),
                                         cursor: page.next || ""});
  const next = page.next ? el("a", {"data-focus": "next-items",
    href: `#/jobs/${encodeURIComponent(id)}?${nextQuery}`}, "Next items") : null;
  return el("section", {"aria-labelledby": "job-title"},
    el("p", {}, el("a", {href: "#/jobs"}, "← All jobs")),
    el("h2", {id: "job-title"}, "Job ", el("code", {}, job.job)),
    summary([
      ["State", el("span", {class: `state state-${job.state}`}, words(job.state))],
      ["Progress", progress(job)],
      ["Done / failed / total", `${job.done} / ${job.failed} / ${job.total}`],
      ["Cancelled", job.cancelled], ["Skipped", job.skipped || 0],
      ["Items/s", number(job.rate_per_s, 1)],
      ["ETA", duration(job.eta_s)], ["Deadline", deadline(job)],
      ["Cost so far", money(job.cost_so_far)], ["Model", el("code", {}, job.model)],
      ["Created", time(job.created_at)], ["Started", time(job.started_at)],
      ["Finished", time(job.finished_at)],
    ]),
    el("div", {class: "actions"}, cancelButton(job, ctx)),
    failed.length ? el("section", {"aria-labelledby": "failures-title"},
      el("h3", {id: "failures-title"}, `Failures (${job.failed})`), reasons(failed)) : null,
    el("h3", {}, "Items"), filters(id, status, tag, ctx.navigate), itemRows, next, resultBox);
}
