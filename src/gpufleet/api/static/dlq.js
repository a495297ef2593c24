// Dead letters: tasks that failed every try, with their last error, and Redrive.
// Both need an admin key (the API refuses others); without one the page says so.

import {el, jobLink, table, time} from "./dom.js";

export async function render(ctx) {
  const heading = el("h2", {id: "dlq-title"}, "Dead letters");
  if (!ctx.admin) {
    return el("section", {"aria-labelledby": "dlq-title"}, heading,
      el("p", {}, "Dead letters and their redrive need a key with the admin scope; " +
         "this key does not have it."));
  }
  const {dead_letters: letters} = await ctx.api("/v1/dlq");
  const redrive = letters.length ? el("button", {class: "primary", "data-focus": "redrive",
    onclick: () => ctx.act(async () => {
      const yes = await ctx.confirm("Redrive every dead letter?",
        `${letters.length} task(s) go back on their queues and their failed items are ` +
        "pending again, so their jobs run again.", "Redrive");
      if (!yes) return;
      const answer = await ctx.api("/v1/dlq/redrive", {method: "POST"});
      const shared = answer.left_shared.length ? `; left for an operator (queues shared ` +
        `with other tenants): ${answer.left_shared.join(", ")}` : "";
      await ctx.refresh({said: `Redriven ${answer.redriven} task(s)${shared}`});
    })}, "Redrive all…") : null;
  return el("section", {"aria-labelledby": "dlq-title"}, heading,
    table("Dead-lettered tasks of your jobs", [
      {label: "Task", cell: (d) => el("code", {}, d.id)},
      {label: "Job", cell: (d) => (d.job ? jobLink(d.job) : "–")},
      {label: "Items", numeric: true, cell: (d) => d.items},
      {label: "Tries", numeric: true, cell: (d) => d.receives},
      {label: "Last error", cell: (d) => d.error, cls: () => "error"},
      {label: "Died", cell: (d) => time(d.died_at)},
      {label: "Model", cell: (d) => el("code", {}, d.model)},
    ], letters, {empty: "none: every task finished or is still trying."}),
    el("div", {class: "actions"}, redrive));
}
