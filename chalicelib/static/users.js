// Admin console: the Users view (SPEC §9). Search with GET /api/v2/users (the q subset of
// chalicelib/users.py: email, user_id, identities.connection, blocked:true joined with AND); a
// user's detail with block / unblock (PATCH {"blocked": ...}), delete (two clicks), the live
// sessions with revoke one (DELETE /api/v2/sessions/{id}) or all (DELETE
// /api/v2/users/{id}/sessions), and the user's newest log events (GET /api/v2/users/{id}/logs).
// Every text from the API goes in with textContent.
"use strict";

(() => {
  const { t, dateTime, number } = window.ConsoleI18n;
  const { el, status } = window.ConsoleDom;
  const $ = (id) => document.getElementById(id);

  const PAGE_SIZE = 25;
  const RECENT_EVENTS = 10;
  const CONFIRM_MS = 6000;

  let api = null;
  let loaded = false;
  let query = "";
  let page = 0;
  let current = null; // the user shown in the detail panel
  let listRun = 0;
  let disarm = null;

  const path = (userId) => "api/v2/users/" + encodeURIComponent(userId);

  function connectionOf(user) {
    const identity = (user.identities || [])[0];
    return (identity && identity.connection) || "";
  }

  function nameOf(user) {
    return user.name || user.email || user.user_id;
  }

  function statusOf(user) {
    return user.blocked ? t("user.blocked") : t("user.active");
  }

  // ---- search -----------------------------------------------------------------------------------

  function quoted(value) {
    return '"' + value.replace(/["\\]/g, (c) => "\\" + c) + '"';
  }

  // Text without a field name is an email address; a query is passed on as typed.
  function queryFromForm() {
    const text = $("users-q").value.trim();
    const terms = [];
    if (text) terms.push(text.includes(":") ? text : "email:" + quoted(text));
    if ($("users-blocked").checked) terms.push("blocked:true");
    return terms.join(" AND ");
  }

  function renderList(users, total) {
    const body = $("users-table").querySelector("tbody");
    body.replaceChildren();
    if (!users.length) {
      body.append(el("tr", {}, el("td", { colspan: "7", text: t("users.none") })));
      $("users-range").textContent = "";
    } else {
      for (const user of users) {
        const who = el("td", {}, el("span", { class: "strong", text: nameOf(user) }));
        if (user.email && user.email !== nameOf(user)) who.append(el("br"), el("span", { text: user.email }));
        body.append(el("tr", { "data-user-id": user.user_id },
          who,
          el("td", {}, el("code", { text: user.user_id })),
          el("td", { text: connectionOf(user) }),
          el("td", { text: user.last_login ? dateTime(user.last_login) : "" }),
          el("td", { text: number(user.logins_count || 0) }),
          el("td", { "data-status": user.blocked ? "blocked" : "active", text: statusOf(user) }),
          el("td", { class: "actions-cell" }, el("button", { type: "button", class: "secondary",
            text: t("users.open"), "aria-label": t("users.open_label", { user: nameOf(user) }),
            onclick: () => openUser(user.user_id) }))));
      }
      const first = page * PAGE_SIZE + 1;
      $("users-range").textContent = t("users.range",
        { first, last: page * PAGE_SIZE + users.length, total: typeof total === "number" ? total : "?" });
    }
    $("users-prev").disabled = page === 0;
    $("users-next").disabled = users.length < PAGE_SIZE
      || (typeof total === "number" && (page + 1) * PAGE_SIZE >= total);
  }

  async function loadList() {
    if (!api) return;
    const run = ++listRun;
    const params = new URLSearchParams({ page: String(page), per_page: String(PAGE_SIZE),
      include_totals: "true", search_engine: "v3" });
    if (query) params.set("q", query);
    status("users-status", "info", t("loading"));
    try {
      const body = await api("GET", "api/v2/users?" + params);
      if (run !== listRun) return;
      const users = Array.isArray(body) ? body : (body && body.users) || [];
      renderList(users, Array.isArray(body) ? null : body && body.total);
      status("users-status", "", "");
    } catch (error) {
      if (run !== listRun) return;
      renderList([], 0);
      status("users-status", "error", t("users.failed", { message: error.message }));
    }
  }

  function search(event) {
    if (event) event.preventDefault();
    query = queryFromForm();
    page = 0;
    loadList();
  }

  // ---- one user ---------------------------------------------------------------------------------

  function field(name, value) {
    return [el("dt", { text: t("user.field." + name) }), el("dd", { "data-field": name, text: value })];
  }

  function renderUser() {
    const user = current;
    $("user-detail-title").textContent = nameOf(user);
    $("user-detail-fields").replaceChildren(
      ...field("user_id", user.user_id),
      ...field("email", user.email || ""),
      ...field("name", user.name || ""),
      ...field("connection", connectionOf(user)),
      ...field("created_at", user.created_at ? dateTime(user.created_at) : ""),
      ...field("last_login", user.last_login ? dateTime(user.last_login) : ""),
      ...field("logins_count", number(user.logins_count || 0)),
      ...field("status", statusOf(user)));
    $("user-block").textContent = user.blocked ? t("user.unblock") : t("user.block");
    disarmDelete();
  }

  async function openUser(userId) {
    try {
      current = await api("GET", path(userId));
    } catch (error) {
      status("users-status", "error", t("user.read_failed", { message: error.message }));
      return;
    }
    renderUser();
    status("user-status", "", "");
    const panel = $("user-detail");
    panel.hidden = false;
    panel.focus();
    await Promise.all([loadSessions(), loadUserLogs()]);
  }

  function closeUser() {
    current = null;
    disarmDelete();
    $("user-detail").hidden = true;
    $("user-detail-fields").replaceChildren();
    $("sessions-table").querySelector("tbody").replaceChildren();
    $("user-logs-table").querySelector("tbody").replaceChildren();
    for (const id of ["user-status", "sessions-status", "user-logs-status"]) status(id, "", "");
  }

  async function toggleBlock() {
    if (!current) return;
    const blocked = !current.blocked;
    try {
      current = await api("PATCH", path(current.user_id), { blocked });
      renderUser();
      status("user-status", "ok", t(blocked ? "user.blocked_done" : "user.unblocked_done",
        { user: nameOf(current) }));
      await Promise.all([loadList(), loadSessions()]);
    } catch (error) {
      status("user-status", "error", t("user.failed", { message: error.message }));
    }
  }

  function disarmDelete() {
    if (disarm) clearTimeout(disarm);
    disarm = null;
    const button = $("user-delete");
    button.textContent = t("user.delete");
    button.className = "secondary";
    button.removeAttribute("aria-label");
  }

  async function deleteUser() {
    if (!current) return;
    const button = $("user-delete");
    if (!disarm) {
      // First click arms the button; a second one within a few seconds deletes.
      button.textContent = t("user.confirm_delete");
      button.className = "danger";
      button.setAttribute("aria-label", t("user.confirm_delete_label", { user: nameOf(current) }));
      disarm = setTimeout(disarmDelete, CONFIRM_MS);
      return;
    }
    const user = current;
    disarmDelete();
    try {
      await api("DELETE", path(user.user_id));
      closeUser();
      await loadList();
      status("users-status", "ok", t("user.deleted", { user: nameOf(user) }));
      $("users-q").focus(); // the panel that had the focus is gone
    } catch (error) {
      status("user-status", "error", t("user.failed", { message: error.message }));
    }
  }

  // ---- a user's sessions ------------------------------------------------------------------------

  async function loadSessions() {
    if (!current) return;
    const userId = current.user_id;
    const body = $("sessions-table").querySelector("tbody");
    try {
      const found = (await api("GET", path(userId) + "/sessions")).sessions || [];
      if (!current || current.user_id !== userId) return;
      body.replaceChildren();
      if (!found.length) body.append(el("tr", {}, el("td", { colspan: "6", text: t("sessions.none") })));
      for (const session of found) {
        body.append(el("tr", { "data-session-id": session.id },
          el("td", {}, el("code", { text: session.id })),
          el("td", { text: dateTime(session.authenticated_at || session.created_at) }),
          el("td", { text: dateTime(session.last_interacted_at || session.updated_at) }),
          el("td", { text: dateTime(session.expires_at) }),
          el("td", { text: (session.clients || []).map((c) => c.client_id).join(", ") }),
          el("td", { class: "actions-cell" }, el("button", { type: "button", class: "secondary",
            text: t("sessions.revoke"), "aria-label": t("sessions.revoke_label", { id: session.id }),
            onclick: () => revokeSession(session.id) }))));
      }
      $("sessions-revoke-all").disabled = !found.length;
    } catch (error) {
      body.replaceChildren();
      status("sessions-status", "error", t("sessions.failed", { message: error.message }));
    }
  }

  async function revokeSession(sessionId) {
    try {
      await api("DELETE", "api/v2/sessions/" + encodeURIComponent(sessionId));
      status("sessions-status", "ok", t("sessions.revoked", { id: sessionId }));
    } catch (error) {
      status("sessions-status", "error", t("sessions.revoke_failed", { message: error.message }));
    }
    await loadSessions();
  }

  async function revokeAll() {
    if (!current) return;
    try {
      await api("DELETE", path(current.user_id) + "/sessions");
      status("sessions-status", "ok", t("sessions.revoked_all", { user: nameOf(current) }));
    } catch (error) {
      status("sessions-status", "error", t("sessions.revoke_failed", { message: error.message }));
    }
    await loadSessions();
  }

  // ---- a user's recent events -------------------------------------------------------------------

  async function loadUserLogs() {
    if (!current) return;
    const userId = current.user_id;
    const body = $("user-logs-table").querySelector("tbody");
    const params = new URLSearchParams({ page: "0", per_page: String(RECENT_EVENTS) });
    try {
      const answer = await api("GET", path(userId) + "/logs?" + params);
      if (!current || current.user_id !== userId) return;
      const logs = Array.isArray(answer) ? answer : (answer && answer.logs) || [];
      body.replaceChildren();
      if (!logs.length) body.append(el("tr", {}, el("td", { colspan: "5", text: t("user_logs.none") })));
      for (const event of logs) body.append(window.ConsoleActivity.eventRow(event));
      status("user-logs-status", "", "");
    } catch (error) {
      body.replaceChildren();
      status("user-logs-status", "error", t("user_logs.failed", { message: error.message }));
    }
  }

  // ---- wiring -----------------------------------------------------------------------------------

  function reset() {
    api = null;
    loaded = false;
    query = "";
    page = 0;
    listRun += 1;
    closeUser();
    $("users-search").reset();
    $("users-table").querySelector("tbody").replaceChildren();
    $("users-range").textContent = "";
    status("users-status", "", "");
  }

  document.addEventListener("console:refresh", (event) => {
    api = event.detail && event.detail.api;
  });
  document.addEventListener("console:signout", reset);
  document.addEventListener("console:view", (event) => {
    if (event.detail.name !== "users" || loaded || !api) return;
    loaded = true;
    search();
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("users-search").addEventListener("submit", search);
    $("users-prev").addEventListener("click", () => { page = Math.max(0, page - 1); loadList(); });
    $("users-next").addEventListener("click", () => { page += 1; loadList(); });
    $("user-block").addEventListener("click", toggleBlock);
    $("user-delete").addEventListener("click", deleteUser);
    $("user-close").addEventListener("click", closeUser);
    $("sessions-revoke-all").addEventListener("click", revokeAll);
    $("user-logs-all").addEventListener("click", () => {
      if (current) {
        document.dispatchEvent(new CustomEvent("console:user-activity", { detail: { user_id: current.user_id } }));
      }
    });
  });
})();
