// Admin console for the identity broker: plain JavaScript, no build step, no dependency.
// The management client's credentials and its access token live in this closure only: never in
// web storage, cookies or the URL. Every text from the API is inserted with
// textContent (never as HTML). All URLs are relative: the page works under any path prefix.
"use strict";

(() => {
  let token = null;
  let tokenExpiresAt = 0;
  let credentials = null; // {client_id, client_secret}: to renew the token while the page lives
  let connections = [];
  let applications = [];
  let editing = null; // the connection being edited, or null when creating
  let brokerIssuer = ""; // from the discovery document: the base of each connection's callback URL

  const $ = (id) => document.getElementById(id);
  const { t } = window.ConsoleI18n;

  class ApiFailure extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- small DOM helpers --------------------------------------------------------------------

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function status(id, kind, text) {
    const target = $(id);
    target.replaceChildren();
    if (!text) return;
    const mark = kind === "ok" ? "✓ " : kind === "error" ? "✗ " : "";
    const span = el("span", { class: kind });
    if (mark) span.append(el("span", { "aria-hidden": "true", text: mark }));
    span.append(document.createTextNode(text));
    target.append(span);
  }

  // The views in activity.js and users.js build their DOM with the same two helpers.
  window.ConsoleDom = Object.freeze({ el, status });

  // ---- the Management API -------------------------------------------------------------------

  async function fetchToken() {
    const discovery = await fetch(".well-known/openid-configuration", { credentials: "omit" });
    if (!discovery.ok) throw new ApiFailure(discovery.status, t("signin.no_discovery"));
    const issuer = (await discovery.json()).issuer;
    brokerIssuer = issuer;
    const response = await fetch("oauth/token", {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        grant_type: "client_credentials",
        client_id: credentials.client_id,
        client_secret: credentials.client_secret,
        audience: issuer + "api/v2/",
      }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new ApiFailure(response.status, body.error_description || body.error || t("signin.failed"));
    }
    token = body.access_token;
    tokenExpiresAt = Date.now() + (body.expires_in || 3600) * 1000 - 60000;
    return body;
  }

  async function api(method, path, body) {
    if (!token || Date.now() > tokenExpiresAt) await fetchToken();
    const headers = { Authorization: "Bearer " + token };
    const init = { method, headers, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    if (response.status !== 204) data = await response.json().catch(() => null);
    if (!response.ok) {
      const message = (data && (data.message || data.error_description)) || response.statusText;
      throw new ApiFailure(response.status, message);
    }
    return data;
  }

  // Every item of a list route: checkpoint paging (take=100, then from=<last id>) until no "next",
  // so a tenant with more than one page (the API's default is 50) shows everything. Bounded.
  async function listAll(path, key) {
    const items = [];
    let from = null;
    for (let pages = 0; pages < 1000; pages += 1) {
      const query = "take=100" + (from ? "&from=" + encodeURIComponent(from) : "");
      const body = await api("GET", path + "?" + query);
      items.push(...(body[key] || []));
      if (!body.next) return items;
      from = body.next;
    }
    return items;
  }

  // ---- sign in / out ------------------------------------------------------------------------

  async function signIn(event) {
    event.preventDefault();
    const idField = $("signin-client-id");
    const secretField = $("signin-client-secret");
    credentials = { client_id: idField.value.trim(), client_secret: secretField.value };
    secretField.value = ""; // nothing secret stays in the DOM
    status("signin-status", "info", t("signin.busy"));
    try {
      const grant = await fetchToken();
      status("signin-status", "", "");
      $("signin").hidden = true;
      $("console").hidden = false;
      $("signout").hidden = false;
      $("signed-in-as").textContent = t("signin.as",
        { client: credentials.client_id, scopes: grant.scope || t("signin.no_scopes") });
      const loading = refreshAll(); // hands listAll and api to the views first, synchronously
      showView(viewFromHash());
      await loading;
    } catch (error) {
      credentials = null;
      token = null;
      status("signin-status", "error", error.message);
    }
  }

  function signOut() {
    token = null;
    credentials = null;
    connections = [];
    applications = [];
    $("console").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("signin-client-id").value = "";
    $("secret-once-value").textContent = "";
    $("secret-once").hidden = true;
    // The views drop what they show (users, events): nothing read with the token stays on screen.
    document.dispatchEvent(new CustomEvent("console:signout"));
    status("signin-status", "info", t("signout.done"));
    $("signin-client-id").focus();
  }

  async function refreshAll() {
    // Other console scripts (apis.js, activity.js, users.js) get listAll and api, never the token.
    document.dispatchEvent(new CustomEvent("console:refresh", { detail: { listAll, api } }));
    await Promise.all([loadApplications(), loadConnections()]);
  }

  // ---- views: connections and applications, activity, users (the URL's #fragment) -------------

  const VIEWS = ["setup", "activity", "users"];

  function viewFromHash() {
    const name = window.location.hash.replace(/^#/, "");
    return VIEWS.includes(name) ? name : "setup";
  }

  function showView(name) {
    for (const view of VIEWS) {
      $("view-" + view).hidden = view !== name;
      const link = document.querySelector('#views-nav a[data-view="' + view + '"]');
      if (view === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    // activity.js and users.js load their data the first time their view shows.
    if (credentials) document.dispatchEvent(new CustomEvent("console:view", { detail: { name } }));
  }

  // ---- connections --------------------------------------------------------------------------

  const builtin = (app) => app && app.client_metadata && app.client_metadata.broker_builtin === "try";

  async function loadConnections() {
    try {
      connections = await listAll("api/v2/connections", "connections");
      renderConnections();
    } catch (error) {
      status("connections-status", "error", t("connections.list_failed", { message: error.message }));
    }
  }

  function renderConnections() {
    const body = $("connections-table").querySelector("tbody");
    body.replaceChildren();
    if (!connections.length) {
      body.append(el("tr", {}, el("td", { colspan: "7", text: t("connections.none") })));
      return;
    }
    const appNames = new Map(applications.map((a) => [a.client_id, a]));
    for (const connection of connections) {
      const options = connection.options || {};
      const enabled = (connection.enabled_clients || []).filter((id) => !builtin(appNames.get(id)));
      const label = connection.display_name || connection.name;
      const actions = el("td", { class: "actions-cell" },
        el("button", { type: "button", class: "secondary", text: t("connections.edit"),
          "aria-label": t("connections.edit_label", { name: label }), onclick: () => openEdit(connection) }),
        el("button", { type: "button", class: "secondary", text: t("connections.applications"),
          "aria-label": t("connections.applications_label", { name: label }),
          onclick: () => openEnable(connection) }),
        el("button", { type: "button", class: "secondary", text: t("connections.try"),
          "aria-label": t("connections.try_label", { name: label }), "data-action": "try",
          onclick: () => tryConnection(connection) }),
        deleteButton(connection, label));
      body.append(el("tr", { "data-connection": connection.name },
        el("td", {}, el("code", { text: connection.name })),
        el("td", { text: label }),
        el("td", { text: options.type ? t("connections.type." + options.type) : "" }),
        el("td", {}, el("code", { text: options.issuer || "" })),
        el("td", { text: connection.show_as_button ? t("yes") : t("no") }),
        el("td", { text: String(enabled.length) }),
        actions));
    }
  }

  function deleteButton(connection, label) {
    let armed = false;
    const button = el("button", { type: "button", class: "secondary", text: t("connections.delete"),
      "aria-label": t("connections.delete_label", { name: label }) });
    button.addEventListener("click", async () => {
      if (!armed) {
        armed = true;
        button.textContent = t("connections.confirm_delete");
        button.className = "danger";
        button.setAttribute("aria-label", t("connections.confirm_delete_label", { name: label }));
        setTimeout(() => {
          armed = false;
          button.textContent = t("connections.delete");
          button.className = "secondary";
          button.setAttribute("aria-label", t("connections.delete_label", { name: label }));
        }, 6000);
        return;
      }
      try {
        await api("DELETE", "api/v2/connections/" + encodeURIComponent(connection.id));
        status("connections-status", "ok", t("connections.deleted", { name: connection.name }));
        await loadConnections();
      } catch (error) {
        status("connections-status", "error", t("connections.delete_failed", { message: error.message }));
      }
    });
    return button;
  }

  // ---- each connection's own URLs at the IdP: its callback (redirect URI) and, for OIDC, its
  // back-channel logout URL (where the IdP sends logout tokens). Both read-only, with a Copy button.

  const CONNECTION_URLS = [
    // [id prefix, the read-only option, its path before the name, label, hint, Copy button's name]
    ["c-callback", "callback_url", "login/callback/", "connection.callback", "connection.callback_help",
      null],
    ["c-logout", "backchannel_logout_url", "login/backchannel-logout/", "connection.logout_url",
      "connection.logout_url_help", "connection.copy_logout_url"],
  ];

  function connectionUrl(connection, option, path) {
    // The API gives the option; older brokers did not: build it the same way.
    const given = connection && connection.options && connection.options[option];
    if (given) return given;
    const name = connection ? connection.name : $("c-name").value.trim();
    return name && brokerIssuer ? brokerIssuer + path + name : "";
  }

  function urlBox([prefix, , , labelKey, helpKey, copyKey]) {
    const copy = el("button", { type: "button", class: "secondary", id: prefix + "-copy",
      text: t("connection.copy"), onclick: () => copyUrl(prefix) });
    // Two Copy buttons: the second one's accessible name says which URL it copies.
    if (copyKey) copy.setAttribute("aria-label", t(copyKey));
    return el("div", { id: prefix, class: "field" },
      el("label", { for: prefix + "-url", text: t(labelKey) }),
      el("input", { id: prefix + "-url", type: "text", readonly: "", spellcheck: "false",
        "aria-describedby": prefix + "-help" }),
      copy,
      el("p", { id: prefix + "-help", class: "help", text: t(helpKey) }),
      el("p", { id: prefix + "-status", class: "status", role: "status", "aria-live": "polite" }));
  }

  function showConnectionUrls(connection) {
    let after = $("connection-form-title");
    for (const spec of CONNECTION_URLS) {
      const [prefix, option, path] = spec;
      if (!$(prefix)) after.after(urlBox(spec));
      after = $(prefix);
      $(prefix + "-url").value = connectionUrl(connection, option, path);
      status(prefix + "-status", "", "");
    }
    // Back-channel logout from the IdP is OpenID Connect's (every connection today; new ones too).
    $("c-logout").hidden = !!connection && connection.strategy !== "oidc";
  }

  async function copyUrl(prefix) {
    const input = $(prefix + "-url");
    if (!input.value) return;
    try {
      await navigator.clipboard.writeText(input.value);
      status(prefix + "-status", "ok", t("connection.copied"));
    } catch (error) {
      input.select(); // no clipboard permission: leave it selected for Ctrl+C
      status(prefix + "-status", "info", t("connection.selected"));
    }
  }

  // ---- the upstream token vault and the token exchange (options.token_storage,
  // token_retention_days, token_exchange_clients) -----------------------------------------------

  function renderExchangeClients(selected) {
    const list = $("c-exchange-list");
    list.replaceChildren();
    const chosen = new Set(selected);
    const apps = applications.filter((a) => !builtin(a));
    const rows = apps.map((a) => [a.client_id, a.name + " (" + a.client_id + ")"]);
    // An id the application list lacks (deleted since) stays visible, so it can be unticked.
    const known = new Set(apps.map((a) => a.client_id));
    for (const clientId of selected) {
      if (!known.has(clientId)) rows.push([clientId, t("connection.exchange.unknown", { client: clientId })]);
    }
    if (!rows.length) list.append(el("p", { text: t("connection.exchange.none") }));
    rows.forEach(([clientId, text], index) => {
      const box = el("input", { type: "checkbox", id: "c-exchange-" + index, value: clientId });
      box.checked = chosen.has(clientId);
      list.append(el("label", { for: box.id }, box, document.createTextNode(text)));
    });
  }

  function exchangeClients() {
    return [...$("c-exchange-list").querySelectorAll("input[type=checkbox]")]
      .filter((box) => box.checked).map((box) => box.value);
  }

  function showVault(options) {
    $("c-token-vault").checked = options.token_storage === "vault";
    const days = options.token_retention_days;
    $("c-token-retention").value = days === undefined || days === null ? "" : String(days);
    renderExchangeClients(options.token_exchange_clients || []);
  }

  function openCreate() {
    editing = null;
    const form = $("connection-form");
    form.reset();
    $("connection-form-title").textContent = t("connection.form.new");
    $("connection-submit").textContent = t("connection.form.create");
    $("c-name").disabled = false;
    $("c-client-secret").required = false;
    status("connection-status", "", "");
    showConnectionUrls(null);
    showVault({});
    form.hidden = false;
    $("c-name").focus();
  }

  function openEdit(connection) {
    editing = connection;
    const options = connection.options || {};
    const form = $("connection-form");
    form.reset();
    $("connection-form-title").textContent = t("connection.form.edit", { name: connection.name });
    $("connection-submit").textContent = t("connection.form.save");
    $("c-name").value = connection.name;
    $("c-name").disabled = true;
    $("c-display-name").value = connection.display_name || "";
    $("c-discovery-url").value = options.discovery_url || options.issuer || "";
    $("c-client-id").value = options.client_id || "";
    $("c-type").value = options.type || "front_channel";
    $("c-auth-method").value = options.token_endpoint_auth_method || "client_secret_post";
    $("c-scope").value = options.scope || "openid profile email";
    $("c-domains").value = (options.domain_aliases || []).join(", ");
    $("c-icon-url").value = options.icon_url || "";
    $("c-show-as-button").checked = !!connection.show_as_button;
    status("connection-status", "", "");
    showConnectionUrls(connection);
    showVault(options);
    form.hidden = false;
    $("c-display-name").focus();
  }

  function formOptions(base) {
    // PATCH replaces options as a whole: start from what is stored (minus what discovery fills
    // in, the read-only document and the read-only URLs the API adds), then apply the form.
    const options = Object.assign({}, base || {});
    delete options.oidc_metadata;
    delete options.scopes;
    for (const [, option] of CONNECTION_URLS) delete options[option];
    const discovery = $("c-discovery-url").value.trim();
    if (!base || base.discovery_url || discovery !== base.issuer) {
      // Discovery fills the endpoints in again (and is checked live).
      for (const key of ["issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
        "userinfo_endpoint", "end_session_endpoint"]) delete options[key];
      options.discovery_url = discovery;
    }
    options.client_id = $("c-client-id").value.trim();
    options.type = $("c-type").value;
    options.token_endpoint_auth_method = $("c-auth-method").value;
    const scope = $("c-scope").value.trim();
    if (scope) options.scope = scope; else delete options.scope;
    const domains = $("c-domains").value.split(/[\s,]+/).map((d) => d.trim()).filter(Boolean);
    if (domains.length) options.domain_aliases = domains; else delete options.domain_aliases;
    const icon = $("c-icon-url").value.trim();
    if (icon) options.icon_url = icon; else delete options.icon_url;
    const secret = $("c-client-secret").value;
    if (secret) options.client_secret = secret; else delete options.client_secret;
    // The vault: absent means none, 30 days and no application (the API checks each value).
    if ($("c-token-vault").checked) options.token_storage = "vault"; else delete options.token_storage;
    const days = $("c-token-retention").value.trim();
    if (days) options.token_retention_days = Number(days); else delete options.token_retention_days;
    const exchange = exchangeClients();
    if (exchange.length) options.token_exchange_clients = exchange;
    else delete options.token_exchange_clients;
    return options;
  }

  async function saveConnection(event) {
    event.preventDefault();
    const displayName = $("c-display-name").value.trim();
    const button = $("connection-submit");
    button.disabled = true;
    status("connection-status", "info", t("connection.checking"));
    try {
      let saved;
      if (editing) {
        const body = { show_as_button: $("c-show-as-button").checked,
          options: formOptions(editing.options) };
        if (displayName) body.display_name = displayName;
        saved = await api("PATCH", "api/v2/connections/" + encodeURIComponent(editing.id), body);
      } else {
        const body = { name: $("c-name").value.trim(), strategy: "oidc",
          show_as_button: $("c-show-as-button").checked, options: formOptions(null) };
        if (displayName) body.display_name = displayName;
        saved = await api("POST", "api/v2/connections", body);
      }
      $("c-client-secret").value = "";
      const issuer = (saved.options && saved.options.issuer) || "";
      status("connection-status", "ok", t("connection.passed", { name: saved.name, issuer }));
      editing = saved;
      $("connection-form-title").textContent = t("connection.form.edit", { name: saved.name });
      $("connection-submit").textContent = t("connection.form.save");
      $("c-name").disabled = true;
      showConnectionUrls(saved);
      showVault(saved.options || {});
      await loadConnections();
    } catch (error) {
      status("connection-status", "error", error.message);
    } finally {
      button.disabled = false;
    }
  }

  function openEnable(connection) {
    const form = $("enable-form");
    form.dataset.connectionId = connection.id;
    $("enable-title").textContent = t("enable.title_of", { name: connection.display_name || connection.name });
    const list = $("enable-list");
    list.replaceChildren();
    const enabled = new Set(connection.enabled_clients || []);
    const apps = applications.filter((a) => !builtin(a) && a.app_type !== "non_interactive");
    if (!apps.length) list.append(el("p", { text: t("enable.none") }));
    for (const app of apps) {
      const id = "enable-" + app.client_id;
      const box = el("input", { type: "checkbox", id, value: app.client_id });
      box.checked = enabled.has(app.client_id);
      list.append(el("label", { for: id }, box, document.createTextNode(app.name + " (" + app.client_id + ")")));
    }
    status("enable-status", "", "");
    form.hidden = false;
    const first = list.querySelector("input");
    (first || $("enable-cancel")).focus();
  }

  async function saveEnable(event) {
    event.preventDefault();
    const form = $("enable-form");
    const connection = connections.find((c) => c.id === form.dataset.connectionId);
    const before = new Set((connection && connection.enabled_clients) || []);
    // Only what changed; enabling and disabling go in separate calls (each 1 to 50 items).
    const changes = [...$("enable-list").querySelectorAll("input[type=checkbox]")]
      .filter((box) => box.checked !== before.has(box.value))
      .map((box) => ({ client_id: box.value, status: box.checked }));
    try {
      for (const wanted of [true, false]) {
        const items = changes.filter((item) => item.status === wanted);
        for (let i = 0; i < items.length; i += 50) {
          await api("PATCH", "api/v2/connections/" + encodeURIComponent(form.dataset.connectionId) +
            "/clients", items.slice(i, i + 50));
        }
      }
      status("enable-status", "ok", changes.length ? t("enable.saved") : t("enable.nothing"));
      await loadConnections();
    } catch (error) {
      status("enable-status", "error", error.message);
    }
  }

  async function tryConnection(connection) {
    const target = $("try-status");
    status("try-status", "info", t("try.preparing", { name: connection.name }));
    try {
      const { url } = await api("GET", "api/v2/connections/" + encodeURIComponent(connection.id) + "/try");
      window.open(url, "_blank", "noopener");
      status("try-status", "ok", t("try.opened", { name: connection.name }));
      target.firstChild.append(el("a", { href: url, target: "_blank", rel: "noopener",
        text: t("try.link") }));
    } catch (error) {
      status("try-status", "error", t("try.failed", { message: error.message }));
    }
  }

  // ---- applications -------------------------------------------------------------------------

  async function loadApplications() {
    try {
      applications = await listAll("api/v2/clients", "clients");
      renderApplications();
    } catch (error) {
      status("applications-status", "error", t("applications.list_failed", { message: error.message }));
    }
  }

  function renderApplications() {
    const body = $("applications-table").querySelector("tbody");
    body.replaceChildren();
    const shown = applications.filter((a) => !builtin(a));
    if (!shown.length) {
      body.append(el("tr", {}, el("td", { colspan: "4", text: t("applications.none") })));
      return;
    }
    for (const app of shown) {
      const callbacks = el("td");
      for (const url of app.callbacks || []) callbacks.append(el("div", {}, el("code", { text: url })));
      body.append(el("tr", {},
        el("td", { text: app.name }),
        el("td", {}, el("code", { text: app.client_id })),
        el("td", { text: app.app_type }),
        callbacks));
    }
  }

  async function createApplication(event) {
    event.preventDefault();
    const body = {
      name: $("a-name").value.trim(),
      app_type: $("a-type").value,
    };
    const callbacks = $("a-callbacks").value.split("\n").map((u) => u.trim()).filter(Boolean);
    if (callbacks.length) body.callbacks = callbacks;
    try {
      const created = await api("POST", "api/v2/clients", body);
      $("application-form").reset();
      $("application-form").hidden = true;
      status("applications-status", "ok", t("applications.created", { name: created.name }));
      if (created.client_secret) {
        $("secret-once-client-id").textContent = created.client_id;
        $("secret-once-value").textContent = created.client_secret;
        $("secret-once").hidden = false;
        $("secret-once").focus();
      }
      await loadApplications();
      renderConnections();
      if (!$("connection-form").hidden) renderExchangeClients(exchangeClients());
    } catch (error) {
      status("application-status", "error", error.message);
    }
  }

  function forgetSecret() {
    $("secret-once-value").textContent = "";
    $("secret-once-client-id").textContent = "";
    $("secret-once").hidden = true;
    $("new-application").focus();
  }

  // ---- wiring -------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("new-connection").addEventListener("click", openCreate);
    $("c-name").addEventListener("input", () => { if (!editing) showConnectionUrls(null); });
    $("connection-form").addEventListener("submit", saveConnection);
    $("connection-cancel").addEventListener("click", () => {
      $("connection-form").hidden = true;
      $("new-connection").focus();
    });
    $("enable-form").addEventListener("submit", saveEnable);
    $("enable-cancel").addEventListener("click", () => {
      $("enable-form").hidden = true;
    });
    $("new-application").addEventListener("click", () => {
      $("application-form").hidden = false;
      status("application-status", "", "");
      $("a-name").focus();
    });
    $("application-form").addEventListener("submit", createApplication);
    $("application-cancel").addEventListener("click", () => {
      $("application-form").hidden = true;
    });
    $("secret-once-done").addEventListener("click", forgetSecret);
    window.addEventListener("hashchange", () => showView(viewFromHash()));
    $("signin-client-id").focus();
  });
})();
