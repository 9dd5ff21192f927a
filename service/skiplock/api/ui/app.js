// The skiplock dashboard: plain JavaScript, no build step, no dependency.
// Every piece of data reaches the page through textContent (never innerHTML), and outputs
// are previewed through <img> and <video> only, so nothing a job holds can run here.
"use strict";

const TERMINAL = new Set(["done", "failed", "canceled"]);
const STATUSES = ["queued", "running", "done", "failed", "canceled"];
const IMAGES = new Set(["image/svg+xml", "image/png", "image/jpeg", "image/gif", "image/webp"]);
const PAGE_SIZE = 50;
const MAX_ROWS = 200; // the first page grows with new jobs up to this, then reloads
const EVENT_TYPES = STATUSES.concat("progress").map((s) => `content_job.${s}`);
const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  company: null,
  token: null, // {token, expiresAt}: a stream token, for EventSource and <img>
  jobs: new Map(), // id -> job, shared by the list and the detail
  rows: new Map(), // id -> <tr> of the current page
  recent: new Map(), // id -> the company stream's latest events of that job
  cursors: [null], // the cursor of each page up to the current one
  nextCursor: null,
  pageLoad: 0,
  selected: null,
  types: [],
  schemas: {},
  counts: {}, // jobType -> status -> count, from the last /stats
  pendingBulk: null, // {action, body}: what the confirmation bar asks about
  companyStream: null,
  detailStream: null,
  timers: {},
};

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  node.append(...children); // strings become text nodes
  return node;
}

// Timestamps to microseconds, to order an event against a job read from the API.
function usec(text) {
  const fraction = /\.(\d+)Z$/.exec(text || "");
  return Date.parse(text) * 1000 + (fraction ? Number(fraction[1].padEnd(6, "0").slice(3, 6)) : 0);
}

function when(text) {
  if (!text) return "—";
  const options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
  return new Date(text).toLocaleString(undefined, options);
}

function bytes(size) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (size >= 1024 && i < units.length - 1) [size, i] = [size / 1024, i + 1];
  return `${i ? size.toFixed(1) : size} ${units[i]}`;
}

function badge(status) {
  return el("span", { class: `badge ${status}`, text: status });
}

function notice(message) {
  $("notice").textContent = message || "";
}

// Run later, once, however often asked meanwhile.
function debounce(name, ms, fn) {
  if (state.timers[name]) return;
  state.timers[name] = setTimeout(() => {
    state.timers[name] = null;
    fn();
  }, ms);
}

// ---------------------------------------------------------------------------------------
// The API
// ---------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const companyPath = (path) => `/companies/${encodeURIComponent(state.company)}${path}`;

const api = (method, path, body) => request(method, companyPath(path), body);

async function request(method, url, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.key}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "the server does not answer");
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data?.error?.message || `HTTP ${response.status}`);
  }
  return data;
}

// A key that stopped working (revoked) sends the person back to the sign-in form.
function report(error) {
  if (error.status === 401) signOut(error.message);
  else notice(error.message);
}

async function streamToken(fresh) {
  const held = state.token;
  if (!fresh && held && Date.parse(held.expiresAt) - Date.now() > 120_000) return held.token;
  state.token = await api("POST", "/stream-tokens");
  return state.token.token;
}

// An EventSource that survives errors: it reconnects by itself with ?lastEventId= of the
// last event it saw (the server replays what came after it, so nothing is lost) and a
// fresh stream token when the last attempt never opened (the token may have expired).
class LiveStream {
  constructor(path, handlers, { onState, onOpen, shouldStop } = {}) {
    Object.assign(this, { path, handlers, onState, onOpen, shouldStop });
    this.lastId = null;
    this.delay = 500;
    this.closed = false;
    this.onState?.("connecting");
    this.connect(false);
  }

  async connect(fresh) {
    if (this.closed) return;
    let token;
    try {
      token = await streamToken(fresh);
    } catch (error) {
      if (error.status === 401) return signOut(error.message);
      return this.retry(true);
    }
    if (this.closed) return;
    const query = new URLSearchParams({ token });
    if (this.lastId !== null) query.set("lastEventId", this.lastId);
    const source = new EventSource(`${companyPath(this.path)}?${query}`);
    const resuming = this.lastId !== null;
    let opened = false;
    this.source = source;
    source.onopen = () => {
      opened = true;
      this.delay = 500;
      this.onState?.("live");
      this.onOpen?.(resuming);
    };
    source.onerror = () => {
      source.close(); // reconnect ourselves, with the resume position in the URL
      if (this.closed || this.source !== source) return;
      if (this.shouldStop?.()) return this.close();
      this.retry(!opened);
    };
    for (const [type, handle] of Object.entries(this.handlers)) {
      source.addEventListener(type, (message) => {
        if (message.lastEventId) this.lastId = message.lastEventId;
        handle(JSON.parse(message.data), this);
      });
    }
  }

  retry(fresh) {
    this.onState?.("reconnecting");
    setTimeout(() => this.connect(fresh), this.delay);
    this.delay = Math.min(this.delay * 2, 5000);
  }

  close() {
    this.closed = true;
    this.source?.close();
  }
}

// ---------------------------------------------------------------------------------------
// Jobs: one object per job, updated in place by events
// ---------------------------------------------------------------------------------------

// An event changes a job only if it is not older than what we already hold.
function applyEvent(job, event) {
  if (usec(event.createdAt) < usec(job.updatedAt)) return false;
  job.status = event.status || job.status;
  if (event.progress !== undefined) job.progress = event.progress;
  if (event.assetId !== undefined) job.resultAssetId = event.assetId;
  if (event.errorMessage !== undefined) job.errorMessage = event.errorMessage;
  if (event.type === "content_job.queued" && event.reason === "retry") {
    Object.assign(job, { progress: null, errorMessage: null, resultAssetId: null });
  }
  job.updatedAt = event.createdAt;
  return true;
}

// A job read from the API, with the events that arrived while it was being read. What
// events change is kept from the copy we hold when that copy is the newer one.
const LIVE_FIELDS = ["status", "progress", "resultAssetId", "errorMessage", "updatedAt"];

function adopt(fetched) {
  const held = state.jobs.get(fetched.id);
  const newer = held && usec(held.updatedAt) > usec(fetched.updatedAt);
  const keep = newer ? Object.fromEntries(LIVE_FIELDS.map((name) => [name, held[name]])) : {};
  const job = Object.assign(held || {}, fetched, keep);
  for (const event of state.recent.get(job.id) || []) applyEvent(job, event);
  state.jobs.set(job.id, job);
  return job;
}

function remember(event) {
  const events = state.recent.get(event.jobId) || [];
  state.recent.delete(event.jobId); // re-inserted last: the map stays in age order
  state.recent.set(event.jobId, events.concat(event).slice(-10));
  if (state.recent.size > 5000) state.recent.delete(state.recent.keys().next().value);
}

function matchesFilters(job) {
  const status = $("filter-status").value;
  const type = $("filter-type").value;
  return (!status || job.status === status) && (!type || job.jobType === type);
}

// ---------------------------------------------------------------------------------------
// The list of jobs
// ---------------------------------------------------------------------------------------

function renderRow(job) {
  let row = state.rows.get(job.id);
  if (!row) {
    row = el("tr", { "data-id": job.id });
    row.addEventListener("click", () => openDetail(job.id));
    state.rows.set(job.id, row);
  }
  const progress = job.progress && !TERMINAL.has(job.status)
    ? el("progress", { max: "1", value: String(job.progress.fraction ?? 0) })
    : "";
  row.dataset.status = job.status;
  row.classList.toggle("selected", job.id === state.selected);
  row.replaceChildren(
    el("td", { text: when(job.createdAt) }),
    el("td", { text: job.jobType }),
    el("td", {}, badge(job.status)),
    el("td", {}, progress),
    el("td", {}, el("button", { type: "button", class: "link mono", text: job.id.slice(0, 8) })),
  );
  return row;
}

// Insert a new job's row where its createdAt puts it (newest first).
function insertRow(job) {
  const row = renderRow(job);
  const after = [...$("jobs-body").children].find(
    (other) => other !== row && usec(state.jobs.get(other.dataset.id).createdAt) < usec(job.createdAt),
  );
  $("jobs-body").insertBefore(row, after || null);
  $("jobs-empty").hidden = true;
}

async function loadPage() {
  const load = ++state.pageLoad;
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  const cursor = state.cursors[state.cursors.length - 1];
  if (cursor) query.set("cursor", cursor);
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  if ($("filter-type").value) query.set("jobType", $("filter-type").value);
  const page = await api("GET", `/content-jobs?${query}`);
  if (load !== state.pageLoad) return; // a later load has started meanwhile
  state.nextCursor = page.nextCursor;
  state.rows.clear();
  $("jobs-body").replaceChildren(...page.items.map((job) => renderRow(adopt(job))));
  $("jobs-empty").hidden = page.items.length > 0;
  $("newer").disabled = state.cursors.length === 1;
  $("older").disabled = !page.nextCursor;
  $("page").textContent = `page ${state.cursors.length}`;
}

function reload() {
  loadPage().catch(report);
  loadStats().catch(report);
}

// A job's first event carries its type: enough for its row, without asking the API.
function addNewJob(event) {
  const job = {
    id: event.jobId, jobType: event.jobType, status: event.status, progress: null,
    createdAt: event.createdAt, updatedAt: event.createdAt,
  };
  if (state.cursors.length > 1 || !matchesFilters(job)) return; // first page only
  if (state.rows.size >= MAX_ROWS) return debounce("page", 1000, () => loadPage().catch(report));
  state.jobs.set(job.id, job);
  insertRow(job);
}

function onCompanyEvent(event) {
  remember(event);
  const job = state.jobs.get(event.jobId);
  if (job) {
    if (applyEvent(job, event) && state.rows.has(job.id)) renderRow(job);
  } else if (event.type === "content_job.queued" && event.jobType) {
    addNewJob(event);
  }
  debounce("stats", 300, () => loadStats().catch(report));
}

// ---------------------------------------------------------------------------------------
// Counts per type and status
// ---------------------------------------------------------------------------------------

async function loadStats() {
  const { items } = await api("GET", "/stats");
  const counts = {};
  const paused = new Set();
  for (const item of items) {
    counts[item.jobType] ??= {};
    counts[item.jobType][item.status] = item.count;
    if (item.paused) paused.add(item.jobType);
  }
  state.counts = counts;
  const row = (label, byStatus, className = "") => {
    const cells = STATUSES.map((s) => el("td", { class: byStatus[s] ? s : "zero", text: byStatus[s] || "·" }));
    const total = STATUSES.reduce((sum, s) => sum + (byStatus[s] || 0), 0);
    const name = el("th", { text: label }, paused.has(label) && className !== "total" ? badge("paused") : "");
    return el("tr", { class: className, "data-type": label }, name, ...cells, el("td", { text: total }));
  };
  const totals = {};
  for (const byStatus of Object.values(counts)) {
    for (const [s, n] of Object.entries(byStatus)) totals[s] = (totals[s] || 0) + n;
  }
  const types = Object.keys(counts).sort();
  $("stats-body").replaceChildren(...types.map((t) => row(t, counts[t])), row("all", totals, "total"));
  fillTypes(types);
  showPaused([...paused].sort());
}

// Paused types, read-only: pausing is an operator's action (`skiplock jobs pause|resume`,
// or the paused_job_types table), never an API key's, so the page shows how to resume.
function showPaused(types) {
  $("paused-note").hidden = types.length === 0;
  if (!types.length) return;
  const type = types.length === 1 ? types[0] : "TYPE";
  $("paused-types").textContent = types.join(", ");
  $("resume-all").textContent = `skiplock jobs resume ${type}`;
  $("resume-mine").textContent = `skiplock jobs resume ${type} --company ${state.company}`;
}

// ---------------------------------------------------------------------------------------
// Bulk cancel and retry of the jobs the filters select, after a confirmation with the count
// ---------------------------------------------------------------------------------------

const BULK = {
  cancel: { statuses: ["queued", "running"], verb: "Cancel", done: "Canceled" },
  retry: { statuses: ["failed", "canceled"], verb: "Retry", done: "Queued again" },
};

function askBulk(action) {
  const { statuses: allowed, verb } = BULK[action];
  const status = $("filter-status").value;
  const type = $("filter-type").value;
  const statuses = status ? allowed.filter((s) => s === status) : allowed;
  const types = type ? [type] : Object.keys(state.counts);
  const count = types.reduce(
    (sum, t) => sum + statuses.reduce((n, s) => n + (state.counts[t]?.[s] || 0), 0), 0);
  const what = `${statuses.join(" or ") || allowed.join(" or ")} ${type ? `${type} ` : ""}job`;
  $("bulk-result").textContent = "";
  if (!statuses.length || count === 0) {
    $("bulk-confirm").hidden = true;
    $("bulk-result").textContent = `No ${what}s to ${verb.toLowerCase()}.`;
    return;
  }
  state.pendingBulk = { action, body: { status: statuses, ...(type ? { jobType: type } : {}) } };
  $("bulk-question").textContent = `${verb} ${count} ${what}${count === 1 ? "" : "s"}?`;
  $("bulk-confirm").hidden = false;
}

async function runBulk() {
  const pending = state.pendingBulk;
  state.pendingBulk = null;
  $("bulk-confirm").hidden = true;
  if (!pending) return;
  try {
    const { count } = await api("POST", `/content-jobs/${pending.action}`, pending.body);
    $("bulk-result").textContent = `${BULK[pending.action].done}: ${count} job${count === 1 ? "" : "s"}.`;
    reload();
  } catch (error) {
    if (error.status === 401) return report(error);
    $("bulk-result").textContent = error.message;
  }
}

function fillTypes(more) {
  const select = $("filter-type");
  const known = new Set([...select.options].map((o) => o.value));
  for (const type of more) if (!known.has(type)) select.append(el("option", { text: type }));
}

// ---------------------------------------------------------------------------------------
// One job: its fields, live progress, error, output and timeline
// ---------------------------------------------------------------------------------------

const describe = {
  "content_job.queued": (e) => (e.reason ? `queued again (${e.reason}, after attempt ${e.attempt})` : "queued"),
  "content_job.running": (e) => `running (attempt ${e.attempt})`,
  "content_job.progress": (e) => `progress ${Math.round((e.progress?.fraction || 0) * 100)}%` +
    (e.progress?.message ? `: ${e.progress.message}` : ""),
  "content_job.done": (e) => (e.assetId ? `done, output ${e.assetId.slice(0, 8)}` : "done"),
  "content_job.failed": (e) => `failed: ${e.errorMessage || ""}`,
  "content_job.canceled": () => "canceled",
};

function addTimeline(time, text, replaceProgress = false) {
  const list = $("d-timeline");
  const item = el("li", { class: replaceProgress ? "progress" : "" },
    el("time", { text: when(time) }), el("span", { text }));
  const last = list.lastElementChild;
  if (replaceProgress && last?.classList.contains("progress")) last.replaceWith(item);
  else list.append(item);
}

function renderDetail(job) {
  const fields = [
    ["type", job.jobType], ["status", badge(job.status)],
    ["attempts", `${job.attempts} of ${job.maxAttempts}`], ["created", when(job.createdAt)],
    ["started", when(job.startedAt)], ["finished", when(job.finishedAt)],
  ];
  if (job.sourceTaskId) fields.push(["source task", job.sourceTaskId]);
  $("d-fields").replaceChildren(...fields.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  const fraction = job.status === "done" ? 1 : job.progress?.fraction;
  $("d-progress-row").hidden = fraction === undefined && job.status !== "running";
  $("d-progress").value = fraction || 0;
  const message = TERMINAL.has(job.status) ? "" : job.progress?.message;
  $("d-progress-text").textContent = `${Math.round((fraction || 0) * 100)}%${message ? ` · ${message}` : ""}`;
  $("d-error").textContent = job.errorMessage || "";
  $("d-cancel").hidden = TERMINAL.has(job.status);
  $("d-retry").hidden = !["failed", "canceled"].includes(job.status);
  $("d-input").textContent = JSON.stringify(job.input ?? {}, null, 2);
  if (job.status === "done" && job.resultAssetId) showPreview(job.resultAssetId);
}

// The output: an image or a video through its own tag (src: asset /content with a stream
// token; served as an attachment with CSP sandbox, so an SVG is only ever an image), and
// always a download link.
async function showPreview(assetId) {
  const box = $("d-preview");
  if (box.dataset.asset === assetId) return;
  box.dataset.asset = assetId;
  try {
    const asset = await api("GET", `/assets/${assetId}`);
    const token = await streamToken(false);
    const src = `${companyPath(`/assets/${assetId}/content`)}?token=${encodeURIComponent(token)}`;
    const name = asset.originalFilename || assetId;
    let view = "";
    if (IMAGES.has(asset.contentType)) view = el("img", { src, alt: name });
    else if (asset.contentType.startsWith("video/")) view = el("video", { src, controls: "" });
    const link = el("a", { href: src, download: name, text: `Download ${name}` });
    const about = ` · ${asset.contentType}, ${bytes(asset.byteSize)}`;
    if (box.dataset.asset === assetId) box.replaceChildren(view, el("p", { class: "small" }, link, about));
  } catch (error) {
    delete box.dataset.asset;
    box.replaceChildren(el("p", { class: "error", text: `output: ${error.message}` }));
  }
}

function openDetail(id) {
  state.detailStream?.close();
  state.selected = id;
  for (const [rowId, row] of state.rows) row.classList.toggle("selected", rowId === id);
  $("detail").hidden = false;
  $("detail").scrollIntoView({ block: "nearest" });
  $("d-id").textContent = id;
  for (const name of ["d-fields", "d-timeline", "d-preview", "d-action-error", "d-error"]) $(name).replaceChildren();
  delete $("d-preview").dataset.asset;
  let job = null;
  const handlers = {
    status(snapshot) {
      const first = job === null;
      job = adopt(snapshot);
      if (first) {
        addTimeline(job.createdAt, "created");
        if (job.startedAt) addTimeline(job.startedAt, `started (attempt ${job.attempts})`);
        if (TERMINAL.has(job.status)) addTimeline(job.finishedAt, job.status);
      }
      renderDetail(job);
      if (state.rows.has(job.id)) renderRow(job);
    },
  };
  for (const type of EVENT_TYPES) {
    handlers[type] = (event) => {
      addTimeline(event.createdAt, describe[type](event), type === "content_job.progress");
      if (job && applyEvent(job, event)) {
        renderDetail(job);
        if (state.rows.has(job.id)) renderRow(job);
      }
    };
  }
  // The job stream ends after the job's terminal event: then there is nothing to resume.
  state.detailStream = new LiveStream(`/content-jobs/${id}/events`, handlers, {
    shouldStop: () => job !== null && TERMINAL.has(job.status),
  });
}

function closeDetail() {
  state.detailStream?.close();
  state.selected = null;
  $("detail").hidden = true;
  for (const row of state.rows.values()) row.classList.remove("selected");
}

async function act(action) {
  $("d-action-error").textContent = "";
  try {
    const job = adopt(await api("POST", `/content-jobs/${state.selected}/${action}`));
    if (state.rows.has(job.id)) renderRow(job);
    if (action === "retry") openDetail(job.id); // its stream had ended; follow it again
    else renderDetail(job);
  } catch (error) {
    if (error.status === 401) return report(error);
    $("d-action-error").textContent = error.message;
  }
}

// ---------------------------------------------------------------------------------------
// Submitting a job: the types and their input schemas come from /openapi.json
// ---------------------------------------------------------------------------------------

function skeleton(schema) {
  if (schema.examples?.length) return schema.examples[0];
  const blank = { string: "", integer: 0, number: 0, boolean: false, array: [], object: {} };
  const input = {};
  for (const name of schema.required || []) {
    const property = schema.properties?.[name] || {};
    input[name] = property.default ?? property.enum?.[0] ?? blank[property.type] ?? null;
  }
  return input;
}

async function loadTypes() {
  const spec = await (await fetch("/openapi.json")).json();
  const schemas = spec.components.schemas;
  state.types = Object.keys(schemas.SubmitJob.discriminator.mapping).sort();
  for (const type of state.types) state.schemas[type] = schemas[`Input.${type}`] || {};
  $("submit-type").replaceChildren(...state.types.map((t) => el("option", { text: t })));
  if (state.types.includes("diagram")) $("submit-type").value = "diagram";
  fillTypes(state.types);
  showSchema();
}

function showSchema() {
  const schema = state.schemas[$("submit-type").value] || {};
  $("submit-schema").textContent = JSON.stringify(schema, null, 2);
  $("submit-input").value = JSON.stringify(skeleton(schema), null, 2);
}

async function submitJob(event) {
  event.preventDefault();
  const result = $("submit-result");
  result.className = "error";
  let input;
  try {
    input = JSON.parse($("submit-input").value || "{}");
  } catch (error) {
    result.textContent = `The input is not valid JSON: ${error.message}`;
    return;
  }
  try {
    const accepted = await api("POST", "/content-jobs", { jobType: $("submit-type").value, input });
    result.className = "ok";
    result.textContent = `Queued job ${accepted.jobId}`;
    openDetail(accepted.jobId);
  } catch (error) {
    if (error.status === 401) return report(error);
    result.textContent = `${error.status || ""} ${error.message}`.trim();
  }
}

// ---------------------------------------------------------------------------------------
// Signing in and out; start
// ---------------------------------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem("skiplock.apiKey");
  sessionStorage.removeItem("skiplock.companyId");
  if (message) sessionStorage.setItem("skiplock.notice", message);
  location.reload();
}

async function signIn(event) {
  event.preventDefault();
  state.key = $("login-key").value.trim();
  try {
    // A key does not spell its company: the server names it.
    state.company = (await request("GET", "/whoami")).companyId;
  } catch (error) {
    $("login-error").textContent = error.message;
    return;
  }
  sessionStorage.setItem("skiplock.apiKey", state.key);
  sessionStorage.setItem("skiplock.companyId", state.company);
  start();
}

function showConnection(status) {
  $("conn").dataset.state = status;
  $("conn").textContent = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…" }[status];
}

function start() {
  $("login").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  $("company").textContent = state.company;
  document.dispatchEvent(new Event("skiplock:started")); // automation.js: webhooks, schedules
  loadTypes().catch((error) => notice(`job types: ${error.message}`));
  const handlers = { reset: () => reload() };
  for (const type of EVENT_TYPES) handlers[type] = onCompanyEvent;
  state.companyStream = new LiveStream("/events", handlers, {
    onState: showConnection,
    // A fresh stream starts at "now": read the list once it is open, so nothing falls
    // between. A resumed one replays what it missed: only the counts are read again.
    onOpen: (resuming) => {
      notice("");
      if (resuming) loadStats().catch(report);
      else reload();
    },
  });
}

function boot() {
  $("login-form").addEventListener("submit", signIn);
  $("signout").addEventListener("click", () => signOut());
  $("submit-form").addEventListener("submit", submitJob);
  $("submit-type").addEventListener("change", showSchema);
  $("d-close").addEventListener("click", closeDetail);
  $("d-cancel").addEventListener("click", () => act("cancel"));
  $("d-retry").addEventListener("click", () => act("retry"));
  $("bulk-cancel").addEventListener("click", () => askBulk("cancel"));
  $("bulk-retry").addEventListener("click", () => askBulk("retry"));
  $("bulk-yes").addEventListener("click", runBulk);
  $("bulk-no").addEventListener("click", () => {
    state.pendingBulk = null;
    $("bulk-confirm").hidden = true;
  });
  for (const id of ["filter-status", "filter-type"]) {
    $(id).addEventListener("change", () => {
      state.pendingBulk = null; // a confirmation asked about the old filters
      $("bulk-confirm").hidden = true;
      state.cursors = [null];
      loadPage().catch(report);
    });
  }
  $("older").addEventListener("click", () => {
    state.cursors.push(state.nextCursor);
    loadPage().catch(report);
  });
  $("newer").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    loadPage().catch(report);
  });
  state.key = sessionStorage.getItem("skiplock.apiKey");
  state.company = sessionStorage.getItem("skiplock.companyId");
  $("login-error").textContent = sessionStorage.getItem("skiplock.notice") || "";
  sessionStorage.removeItem("skiplock.notice");
  if (state.key && state.company) start();
  else $("login").hidden = false;
}

boot();
