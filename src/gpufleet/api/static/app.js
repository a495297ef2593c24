// The dashboard's shell: the API key, calls to the API, hash routes, and the refresh loop.
// Each view is a module with render(ctx) -> Node; this file knows nothing of their content.

import {el} from "./dom.js";
import * as jobs from "./jobs.js";
import * as job from "./job.js";
import * as workers from "./workers.js";
import * as fleet from "./fleet.js";
import * as dlq from "./dlq.js";

const REFRESH_MS = 5000;
const KEY = "gpufleet-key";  // sessionStorage: the key leaves with the tab
const ROUTES = [
  [/^\/jobs\/(.+)$/, job, "#/jobs"],
  [/^\/jobs$/, jobs, "#/jobs"],
  [/^\/workers$/, workers, "#/workers"],
  [/^\/fleet$/, fleet, "#/fleet"],
  [/^\/dlq$/, dlq, "#/dlq"],
];

const main = document.getElementById("main");
const statusBox = document.getElementById("status");
const updated = document.getElementById("updated");
const errorBox = document.getElementById("errors");
const keyInput = document.getElementById("key");
let who = null;  // the key's tenant and scopes (GET /v1/key), asked once per key
let generation = 0;  // a render that finishes after a newer one started is thrown away

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${detail}`);
    this.status = status;
  }
}

async function api(path, {method = "GET"} = {}) {
  const response = await fetch(path, {method, headers: {
    "Authorization": `Bearer ${sessionStorage.getItem(KEY) || ""}`}});
  const body = await response.json().catch(() => ({detail: response.statusText}));
  if (!response.ok) throw new ApiError(response.status, body.detail || "error");
  return body;
}

// Bytes through the API with the key (a same-origin redirect to a signed URL keeps it).
async function blob(path) {
  const response = await fetch(path, {headers: {
    "Authorization": `Bearer ${sessionStorage.getItem(KEY) || ""}`}});
  if (!response.ok) throw new ApiError(response.status, response.statusText);
  return response.blob();
}

function announce(text) {
  statusBox.textContent = text;
}

function showError(text) {
  errorBox.textContent = text;
}

function describe(e) {
  return e instanceof ApiError ? e.message : `Error: ${e.message || e}`;
}

// Run what a button does; a refusal (403 for a read-only key, 409 for a finished job)
// is shown, not thrown where no one would see it.
async function act(action) {
  try {
    await action();
  } catch (e) {
    showError(describe(e));
  }
}

const dialog = document.getElementById("confirm");

// A modal question (native <dialog>: focus moves in, Esc closes, focus returns).
function confirm(title, text, yes) {
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-yes").textContent = yes;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener(
    "close", () => resolve(dialog.returnValue === "yes"), {once: true}));
}

async function whoAmI() {
  if (who === null) {
    who = await api("/v1/key");
    document.getElementById("tenant").textContent =
      `tenant ${who.tenant} · ${who.scopes.join(", ")}`;
  }
  return who;
}

function route() {
  const [path, query] = (location.hash.slice(1) || "/jobs").split("?");
  for (const [pattern, view, nav] of ROUTES) {
    const match = path.match(pattern);
    if (match) return {view, nav, args: match.slice(1).map(decodeURIComponent),
                       params: new URLSearchParams(query || "")};
  }
  return {view: jobs, nav: "#/jobs", args: [], params: new URLSearchParams()};
}

function markNav(nav) {
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// Render the current route into <main>. A refresh keeps focus where it was (by the
// element's data-focus name), so keyboard users are not thrown back to the top.
// said: what an action did, to announce.
async function render({moved = false, said = null} = {}) {
  const mine = ++generation;
  const {view, nav, args, params} = route();
  markNav(nav);
  if (!sessionStorage.getItem(KEY)) {
    main.replaceChildren(el("h2", {}, "Sign in"),
      el("p", {}, "Enter an API key above (gpufleet keys create --tenant NAME --scope read). " +
         "What you see is that key's tenant's: its jobs, the workers of its models, " +
         "and, with an admin key, its dead letters."));
    updated.textContent = "";
    return;
  }
  const focused = document.activeElement?.dataset?.focus;
  const opened = [...main.querySelectorAll("details[open] > summary[data-focus]")]
    .map((summary) => summary.dataset.focus);
  try {
    const {tenant, scopes} = await whoAmI();
    const ctx = {api, blob, args, params, confirm, act, refresh: render, navigate,
                 tenant, admin: scopes.includes("admin"), submit: scopes.includes("submit")};
    const node = await view.render(ctx);
    if (mine !== generation) return;
    main.replaceChildren(node);
    main.dataset.route = location.hash || "#/jobs";  // what is shown (tests wait for it)
    for (const name of moved ? [] : opened) {
      main.querySelector(`summary[data-focus="${CSS.escape(name)}"]`)?.parentElement
        .setAttribute("open", "");
    }
    showError("");
    // The time of each refresh is shown, not announced (every 5 s would drown a screen
    // reader); what an action did is announced.
    updated.textContent = `Updated at ${new Date().toLocaleTimeString()}`;
    if (said) announce(said);
    if (moved) main.focus();
    else if (focused) main.querySelector(`[data-focus="${CSS.escape(focused)}"]`)?.focus();
  } catch (e) {
    if (mine !== generation) return;
    showError(describe(e));
    updated.textContent = "Refresh failed";
  }
}

function navigate(hash) {
  if (location.hash === hash) render({moved: true});
  else location.hash = hash;
}

function busy() {
  // Not while a dialog is open or someone is typing in a form: the refresh would undo it.
  const active = document.activeElement;
  return dialog.open || (active && main.contains(active) &&
                         ["INPUT", "SELECT", "TEXTAREA"].includes(active.tagName));
}

keyInput.value = sessionStorage.getItem(KEY) || "";
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(KEY, keyInput.value.trim());
  who = null;
  render({moved: true});
});
document.getElementById("forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  keyInput.value = "";
  who = null;
  document.getElementById("tenant").textContent = "";
  render();
});
window.addEventListener("hashchange", () => render({moved: true}));
setInterval(() => busy() || render(), REFRESH_MS);
render();
