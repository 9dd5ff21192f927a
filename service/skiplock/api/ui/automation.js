// The dashboard's webhooks and schedules: what runs for the company without anyone
// clicking. It uses app.js's helpers ($, el, api, when, badge, report, state) and, like it,
// writes data into the page with textContent only. Deliveries and next runs change without
// an event on the company's stream, so both cards are read again every few seconds.
"use strict";

const AUTOMATION_REFRESH_MS = 3000;
const WEBHOOK_EVENTS = ["queued", "running", "progress", "done", "failed", "canceled"];
const DEFAULT_WEBHOOK_EVENTS = new Set(["done", "failed", "canceled"]);

const automation = {
  started: false,
  webhook: null, // the webhook whose deliveries are shown
  timer: null,
};

// ---------------------------------------------------------------------------------------
// Webhooks and their deliveries
// ---------------------------------------------------------------------------------------

async function loadWebhooks() {
  const { items } = await api("GET", "/webhooks");
  if (!items.some((hook) => hook.id === automation.webhook)) automation.webhook = items[0]?.id ?? null;
  $("wh-body").replaceChildren(...items.map(webhookRow));
  $("wh-empty").hidden = items.length > 0;
  await loadDeliveries();
}

function webhookRow(hook) {
  const remove = el("button", { type: "button", class: "quiet", text: "Delete" });
  remove.addEventListener("click", (event) => {
    event.stopPropagation();
    deleteWebhook(hook.id);
  });
  const events = hook.events.map((type) => type.replace("content_job.", "")).join(", ");
  const row = el("tr", { "data-id": hook.id },
    el("td", { class: "mono", text: hook.url, title: hook.url }),
    el("td", { text: events }),
    el("td", { text: when(hook.createdAt) }),
    el("td", {}, remove));
  row.classList.toggle("selected", hook.id === automation.webhook);
  row.addEventListener("click", () => {
    automation.webhook = hook.id;
    for (const other of $("wh-body").children) other.classList.toggle("selected", other === row);
    loadDeliveries().catch(report);
  });
  return row;
}

async function loadDeliveries() {
  const id = automation.webhook;
  $("wh-deliveries").hidden = id === null;
  if (id === null) return;
  const { items } = await api("GET", `/webhooks/${id}/deliveries?limit=20`);
  if (id !== automation.webhook) return; // another webhook was picked meanwhile
  $("wh-deliveries-of").textContent = id.slice(0, 8);
  $("wh-deliveries-body").replaceChildren(...items.map(deliveryRow));
  $("wh-deliveries-empty").hidden = items.length > 0;
}

function deliveryRow(delivery) {
  const last = delivery.lastError || (delivery.lastStatusCode ? `HTTP ${delivery.lastStatusCode}` : "—");
  return el("tr", { "data-id": delivery.id, "data-status": delivery.status },
    el("td", { text: when(delivery.createdAt) }),
    el("td", { text: delivery.type.replace("content_job.", "") }),
    el("td", {}, badge(delivery.status)),
    el("td", { text: String(delivery.attempts) }),
    el("td", { text: last, title: last }),
    el("td", { text: delivery.status === "pending" ? when(delivery.nextAttemptAt) : "—" }));
}

async function createWebhook(event) {
  event.preventDefault();
  const result = $("wh-result");
  result.className = "error";
  const events = WEBHOOK_EVENTS.filter((name) => $(`wh-event-${name}`).checked)
    .map((name) => `content_job.${name}`);
  try {
    const hook = await api("POST", "/webhooks", { url: $("wh-url").value.trim(), events });
    result.className = "ok";
    result.replaceChildren(
      "Webhook added. Its secret, shown only now (verify deliveries with it):",
      el("code", { class: "secret", id: "wh-secret", text: hook.secret }));
    $("wh-url").value = "";
    automation.webhook = hook.id;
    await loadWebhooks();
  } catch (error) {
    if (error.status === 401) return report(error);
    result.textContent = `${error.status || ""} ${error.message}`.trim();
  }
}

async function deleteWebhook(id) {
  try {
    await api("DELETE", `/webhooks/${id}`);
  } catch (error) {
    if (error.status !== 404) return report(error);
  }
  await loadWebhooks().catch(report);
}

// ---------------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------------

async function loadSchedules() {
  const { items } = await api("GET", "/schedules");
  $("sc-body").replaceChildren(...items.map(scheduleRow));
  $("sc-empty").hidden = items.length > 0;
}

function scheduleRow(schedule) {
  const remove = el("button", { type: "button", class: "quiet", text: "Delete" });
  remove.addEventListener("click", () => deleteSchedule(schedule.id));
  const rule = schedule.cron
    ? `${schedule.cron}${schedule.timezone === "UTC" ? "" : ` (${schedule.timezone})`}`
    : `every ${schedule.intervalSeconds} s`;
  return el("tr", { "data-id": schedule.id },
    el("td", { text: schedule.jobType }),
    el("td", { class: "mono", text: rule }),
    el("td", { class: "next-run", text: when(schedule.nextRunAt) }),
    el("td", {}, remove));
}

async function createSchedule(event) {
  event.preventDefault();
  const result = $("sc-result");
  result.className = "error";
  const body = { jobType: $("sc-type").value, timezone: $("sc-timezone").value.trim() || "UTC" };
  const cron = $("sc-cron").value.trim();
  const interval = $("sc-interval").value.trim();
  if (cron) body.cron = cron;
  if (interval) body.intervalSeconds = /^\d+$/.test(interval) ? Number(interval) : interval;
  try {
    body.input = JSON.parse($("sc-input").value || "{}");
  } catch (error) {
    result.textContent = `The input is not valid JSON: ${error.message}`;
    return;
  }
  try {
    const made = await api("POST", "/schedules", body);
    result.className = "ok";
    result.textContent = `Schedule added; first run ${when(made.nextRunAt)}`;
    await loadSchedules();
  } catch (error) {
    if (error.status === 401) return report(error);
    result.textContent = `${error.status || ""} ${error.message}`.trim();
  }
}

async function deleteSchedule(id) {
  try {
    await api("DELETE", `/schedules/${id}`);
  } catch (error) {
    if (error.status !== 404) return report(error);
  }
  await loadSchedules().catch(report);
}

// ---------------------------------------------------------------------------------------
// Start, with the rest of the dashboard
// ---------------------------------------------------------------------------------------

function fillScheduleTypes() {
  const select = $("sc-type");
  if (select.options.length || !state.types.length) return;
  select.replaceChildren(...state.types.map((type) => el("option", { text: type })));
}

function refreshAutomation() {
  fillScheduleTypes();
  if (document.hidden) return;
  loadWebhooks().catch(report);
  loadSchedules().catch(report);
}

function startAutomation() {
  if (automation.started) return;
  automation.started = true;
  refreshAutomation();
  automation.timer = setInterval(refreshAutomation, AUTOMATION_REFRESH_MS);
}

function bootAutomation() {
  $("wh-events").replaceChildren(...WEBHOOK_EVENTS.map((name) => {
    const box = el("input", { type: "checkbox", id: `wh-event-${name}` });
    box.checked = DEFAULT_WEBHOOK_EVENTS.has(name);
    return el("label", {}, box, name);
  }));
  $("wh-form").addEventListener("submit", createWebhook);
  $("sc-form").addEventListener("submit", createSchedule);
  document.addEventListener("skiplock:started", startAutomation);
  document.addEventListener("visibilitychange", () => automation.started && refreshAutomation());
  if (!$("board").hidden) startAutomation(); // app.js signed in before this script ran
}

bootAutomation();
