// The workers of the tenant's models: what each is doing, on what capacity, how busy its
// GPU is, how fast it goes, and when it was last heard from.

import {ago, duration, el, number, table, words} from "./dom.js";

export async function render({api}) {
  const {workers} = await api("/v1/workers");
  const live = workers.filter((w) => w.live);
  const gpu = live.filter((w) => w.gpu_util_pct !== null);
  const meanUtil = gpu.length ? gpu.reduce((s, w) => s + w.gpu_util_pct, 0) / gpu.length : null;
  return el("section", {"aria-labelledby": "workers-title"},
    el("h2", {id: "workers-title"}, "Workers"),
    el("p", {class: "muted"}, `${live.length} live of ${workers.length} heard from in the ` +
       "last 15 minutes" +
       (meanUtil === null ? "." : `; mean GPU utilisation ${meanUtil.toFixed(0)}%.`)),
    table("Workers of your models, newest first", [
      {label: "Worker", cell: (w) => el("code", {}, w.id)},
      {label: "State", cell: (w) => words(w.state) + (w.live ? "" : " (gone)"),
       cls: (w) => `state state-${w.state}`},
      {label: "Capacity", cell: (w) => w.capacity || "local"},
      {label: "GPUs", numeric: true, cell: (w) => w.gpus ?? "–"},
      {label: "GPU util.", numeric: true,
       cell: (w) => (w.gpu_util_pct === null ? "–" : `${number(w.gpu_util_pct)}%`)},
      {label: "GPU memory", numeric: true,
       cell: (w) => (w.gpu_memory_mb === null ? "–" : `${number(w.gpu_memory_mb)} MB`)},
      {label: "Items", numeric: true, cell: (w) => w.items ?? 0},
      {label: "Items/s", numeric: true, cell: (w) => number(w.items_per_s, 1)},
      {label: "Last heartbeat", cell: (w) => ago(w.last_seen)},
      {label: "Uptime", numeric: true, cell: (w) => duration(w.uptime_s)},
      {label: "Bootstrap", numeric: true, cell: (w) => duration(w.bootstrap_s)},
      {label: "Model", cell: (w) => el("code", {}, w.model)},
    ], workers, {empty: "none lately. Workers start when the controller sees a backlog."}));
}
