// Admin console: the Activity view (SPEC §9). Log events newest first from GET /api/v2/logs with
// filters that build its q (type:, connection:, client_id:, user_id:, date:[A TO B] joined with
// AND), page by page; an event's detail from GET /api/v2/logs/{id}; and the chart of logins and
// failed logins per hour and connection over the last 24 hours or 7 days (chart.js). Every text
// from the API goes in with textContent.
"use strict";

(() => {
  const { t, count, number, dateTime } = window.ConsoleI18n;
  const { el, status } = window.ConsoleDom;
  const chart = window.ConsoleChart;
  const $ = (id) => document.getElementById(id);

  const TYPES = ["s", "f", "seacft", "feacft", "sertft", "fertft", "seccft", "feccft", "slo", "flo",
    "sapi", "fapi", "limit_wc", "sgtr", "fgtr", "sbcl", "fbcl", "stx", "ftx"];
  const FIELDS = ["log_id", "date", "type", "description", "connection", "connection_id", "client_id",
    "client_name", "ip", "user_agent", "user_id", "user_name", "strategy", "strategy_type", "hostname"];
  const PAGE_SIZE = 50;
  const MAX_OFFSET = 1000; // Auth0's logs paging stops at page * per_page = 1000: so does the API
  // The chart reads the period's s and f events (the q subset has no OR: one query per type), at
  // most CHART_PAGES pages of CHART_PAGE_SIZE each, newest first, and says so when it stopped there.
  const CHART_PAGE_SIZE = 100;
  const CHART_PAGES = 10;
  const WEEK_HOURS = 7 * 24;

  let api = null;
  let listAll = null;
  let loaded = false;
  let query = "";
  let page = 0;
  let chartData = null; // {events, truncatedAt, now}
  let chartRun = 0;
  let eventsRun = 0;

  // ---- the q of GET /api/v2/logs ----------------------------------------------------------------

  function quoted(value) {
    return '"' + value.replace(/["\\]/g, (c) => "\\" + c) + '"';
  }

  function term(field, value) {
    return /^[A-Za-z0-9_.@|][A-Za-z0-9_.@|-]*$/.test(value) ? field + ":" + value : field + ":" + quoted(value);
  }

  function queryFromFilters() {
    const terms = [];
    const type = $("f-type").value;
    const connection = $("f-connection").value.trim();
    const client = $("f-client").value.trim();
    const user = $("f-user").value.trim();
    const from = $("f-from").value;
    const to = $("f-to").value;
    if (type) terms.push("type:" + type);
    if (connection) terms.push(term("connection", connection));
    if (client) terms.push(term("client_id", client));
    if (user) terms.push("user_id:" + quoted(user));
    if (from || to) {
      if (from && to && from > to) return null;
      // Days, both included; "*" leaves an end open.
      terms.push("date:[" + (from || "*") + " TO " + (to || "*") + "]");
    }
    return terms.join(" AND ");
  }

  // ---- the events table ---------------------------------------------------------------------------

  function typeCell(event) {
    const known = TYPES.includes(event.type);
    return el("td", {}, el("code", { text: event.type || "" }),
      document.createTextNode(known ? " " + t("type." + event.type) : ""));
  }

  function eventRow(event, withActions) {
    const when = el("time", { datetime: event.date || "", text: dateTime(event.date) });
    const row = el("tr", { "data-log-id": event.log_id || "" },
      el("td", {}, when),
      typeCell(event),
      el("td", { text: event.description || "" }),
      el("td", { text: event.connection || "" }),
      el("td", { text: event.client_name || event.client_id || "" }),
    );
    if (withActions) {
      row.append(el("td", { text: event.user_name || event.user_id || "" }));
      row.append(el("td", { class: "actions-cell" },
        el("button", { type: "button", class: "secondary", text: t("events.details"),
          "aria-label": t("events.details_label", { date: dateTime(event.date) }),
          onclick: () => showDetail(event.log_id) })));
    }
    return row;
  }

  function renderEvents(logs, total) {
    const body = $("events-table").querySelector("tbody");
    body.replaceChildren();
    if (!logs.length) {
      body.append(el("tr", {}, el("td", { colspan: "7", text: t("events.none") })));
      $("events-range").textContent = "";
    } else {
      for (const event of logs) body.append(eventRow(event, true));
      const first = page * PAGE_SIZE + 1;
      const last = page * PAGE_SIZE + logs.length;
      $("events-range").textContent = typeof total === "number"
        ? t("events.range", { first, last, total }) : t("events.range_open", { first, last });
    }
    const end = Math.min(typeof total === "number" ? total : Infinity, MAX_OFFSET);
    $("events-prev").disabled = page === 0;
    $("events-next").disabled = logs.length < PAGE_SIZE || (page + 1) * PAGE_SIZE >= end;
  }

  async function loadEvents() {
    if (!api) return;
    const run = ++eventsRun;
    const params = new URLSearchParams({ page: String(page), per_page: String(PAGE_SIZE),
      include_totals: "true" });
    if (query) params.set("q", query);
    status("events-status", "info", t("loading"));
    try {
      const body = await api("GET", "api/v2/logs?" + params);
      if (run !== eventsRun) return; // a newer request is on its way
      const logs = Array.isArray(body) ? body : (body && body.logs) || [];
      renderEvents(logs, Array.isArray(body) ? null : body && body.total);
      status("events-status", "", "");
    } catch (error) {
      if (run !== eventsRun) return;
      renderEvents([], 0);
      status("events-status", "error", t("events.failed", { message: error.message }));
    }
  }

  function applyFilters(event) {
    if (event) event.preventDefault();
    const built = queryFromFilters();
    if (built === null) {
      status("events-status", "error", t("events.bad_range"));
      $("f-from").focus();
      return;
    }
    query = built;
    page = 0;
    $("event-detail").hidden = true;
    loadEvents();
  }

  function clearFilters() {
    $("events-filters").reset();
    applyFilters();
  }

  // ---- one event --------------------------------------------------------------------------------

  function fieldLabel(field) {
    const key = "event.field." + field;
    const label = t(key);
    return label === key ? field : label; // a field this console does not know: its own name
  }

  async function showDetail(logId) {
    const panel = $("event-detail");
    try {
      const event = await api("GET", "api/v2/logs/" + encodeURIComponent(logId));
      $("event-detail-title").textContent = t("event.title", { id: event.log_id || logId });
      const list = $("event-detail-fields");
      list.replaceChildren();
      const others = Object.keys(event).filter((k) => !FIELDS.includes(k) && k !== "details").sort();
      for (const field of [...FIELDS, ...others]) {
        if (event[field] === undefined || event[field] === null || event[field] === "") continue;
        const value = typeof event[field] === "object" ? JSON.stringify(event[field]) : String(event[field]);
        list.append(el("dt", { text: fieldLabel(field) }),
          el("dd", { "data-field": field }, el("code", { text: value })));
      }
      $("event-detail-json").textContent = JSON.stringify(event.details || {}, null, 2);
      panel.hidden = false;
      panel.focus();
    } catch (error) {
      status("events-status", "error", t("event.failed", { message: error.message }));
    }
  }

  // ---- the chart ----------------------------------------------------------------------------------

  // The events of one type since ``since`` (an ISO 8601 time), newest first, page by page.
  async function readKind(type, since) {
    const events = [];
    for (let index = 0; index < CHART_PAGES; index += 1) {
      const params = new URLSearchParams({ q: "type:" + type + " AND date:[" + since + " TO *]",
        page: String(index), per_page: String(CHART_PAGE_SIZE) });
      const body = await api("GET", "api/v2/logs?" + params);
      const logs = Array.isArray(body) ? body : (body && body.logs) || [];
      events.push(...logs);
      if (logs.length < CHART_PAGE_SIZE) return { events, complete: true };
    }
    return { events, complete: false };
  }

  async function loadChart() {
    if (!api) return;
    const run = ++chartRun;
    const now = Date.now();
    const since = new Date(chart.hourStarts(now, WEEK_HOURS)[0]).toISOString();
    status("chart-status", "info", t("chart.loading"));
    try {
      const [logins, failures] = await Promise.all([readKind("s", since), readKind("f", since)]);
      if (run !== chartRun) return;
      // Newest first: when a kind stopped at the page limit, hours before its oldest event read
      // may miss events.
      const cuts = [logins, failures].filter((kind) => !kind.complete && kind.events.length)
        .map((kind) => Date.parse(kind.events[kind.events.length - 1].date));
      chartData = { events: [...logins.events, ...failures.events], now,
        truncatedAt: cuts.length ? Math.max(...cuts) : null };
      drawChart();
    } catch (error) {
      if (run !== chartRun) return;
      chartData = null;
      drawChart();
      status("chart-status", "error", t("chart.failed", { message: error.message }));
    }
  }

  function period() {
    const checked = document.querySelector('input[name="chart-period"]:checked');
    return checked && checked.value === "week" ? "week" : "day";
  }

  function drawChart() {
    const totals = $("chart-totals").querySelector("tbody");
    const hourly = $("chart-hourly-table").querySelector("tbody");
    totals.replaceChildren();
    hourly.replaceChildren();
    if (!chartData) {
      $("chart-figures").replaceChildren();
      return;
    }
    const kind = period();
    const starts = chart.hourStarts(chartData.now, kind === "week" ? WEEK_HOURS : 24);
    const rows = chart.tally(chartData.events, starts);
    const periodText = t(kind === "week" ? "chart.week" : "chart.day");
    chart.render($("chart-figures"), rows, starts, periodText);
    let logins = 0;
    let failures = 0;
    for (const row of rows) {
      logins += row.total.s;
      failures += row.total.f;
      totals.append(el("tr", { "data-connection": row.connection },
        el("th", { scope: "row", text: chart.connectionName(row) }),
        el("td", { "data-type": "s", text: number(row.total.s) }),
        el("td", { "data-type": "f", text: number(row.total.f) })));
      starts.forEach((start, slot) => {
        if (!row.s[slot] && !row.f[slot]) return;
        hourly.append(el("tr", { "data-connection": row.connection, "data-hour": new Date(start).toISOString() },
          el("th", { scope: "row", text: chart.connectionName(row) }),
          el("td", {}, el("time", { datetime: new Date(start).toISOString(), text: chart.longHour(start) })),
          el("td", { "data-type": "s", text: number(row.s[slot]) }),
          el("td", { "data-type": "f", text: number(row.f[slot]) })));
      });
    }
    let text = rows.length ? t("chart.shown", { logins: count("count.logins", logins),
      failures: count("count.failures", failures), connections: count("count.connections", rows.length) })
      : t("chart.empty");
    if (chartData.truncatedAt !== null && chartData.truncatedAt > starts[0]) {
      text += " " + t("chart.truncated", { count: number(CHART_PAGES * CHART_PAGE_SIZE),
        date: dateTime(chartData.truncatedAt) });
    }
    status("chart-status", "info", text);
    $("chart-status").dataset.truncated = chartData.truncatedAt !== null && chartData.truncatedAt > starts[0]
      ? "true" : "false";
  }

  // ---- filters' choices -------------------------------------------------------------------------

  function fillTypes() {
    const select = $("f-type");
    for (const type of TYPES) select.append(el("option", { value: type, text: type + " – " + t("type." + type) }));
  }

  async function loadChoices() {
    try {
      const [connections, clients] = await Promise.all([
        listAll("api/v2/connections", "connections"), listAll("api/v2/clients", "clients")]);
      $("f-connection-list").replaceChildren(...connections.map((c) => el("option", { value: c.name })));
      $("f-client-list").replaceChildren(...clients.map((c) => el("option", { value: c.client_id, label: c.name })));
    } catch (error) {
      // The filters still take typed values; the lists are a convenience.
    }
  }

  // users.js shows a user's recent events with the same cells (without the user and the actions).
  window.ConsoleActivity = Object.freeze({ eventRow: (event) => eventRow(event, false) });

  // ---- wiring -----------------------------------------------------------------------------------

  function reset() {
    api = null;
    listAll = null;
    loaded = false;
    chartData = null;
    query = "";
    page = 0;
    chartRun += 1;
    eventsRun += 1;
    $("events-filters").reset();
    $("events-table").querySelector("tbody").replaceChildren();
    $("events-range").textContent = "";
    $("event-detail").hidden = true;
    $("event-detail-fields").replaceChildren();
    $("event-detail-json").textContent = "";
    $("f-connection-list").replaceChildren();
    $("f-client-list").replaceChildren();
    drawChart();
    for (const id of ["events-status", "chart-status"]) status(id, "", "");
  }

  document.addEventListener("console:refresh", (event) => {
    api = event.detail && event.detail.api;
    listAll = event.detail && event.detail.listAll;
  });
  document.addEventListener("console:signout", reset);
  document.addEventListener("console:view", (event) => {
    if (event.detail.name !== "activity" || loaded || !api) return;
    loaded = true;
    loadChoices();
    loadChart();
    applyFilters();
  });
  // From the Users view: this user's events.
  document.addEventListener("console:user-activity", (event) => {
    $("events-filters").reset();
    $("f-user").value = event.detail.user_id;
    if (loaded) applyFilters();
    window.location.hash = "#activity";
  });

  document.addEventListener("DOMContentLoaded", () => {
    fillTypes();
    $("events-filters").addEventListener("submit", applyFilters);
    $("events-clear").addEventListener("click", clearFilters);
    $("events-prev").addEventListener("click", () => { page = Math.max(0, page - 1); loadEvents(); });
    $("events-next").addEventListener("click", () => { page += 1; loadEvents(); });
    $("event-detail-close").addEventListener("click", () => { $("event-detail").hidden = true; });
    $("chart-refresh").addEventListener("click", loadChart);
    for (const radio of document.querySelectorAll('input[name="chart-period"]')) {
      radio.addEventListener("change", drawChart);
    }
  });
})();
