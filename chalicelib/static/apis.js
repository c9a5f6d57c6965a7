// Admin console: the APIs (resource servers) list. Plain JavaScript, no build step.
// admin.js owns sign-in and the access token; on each refresh it hands over its listAll, so the
// token never leaves admin.js's closure. Every text from the API goes in with textContent.
"use strict";

(() => {
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }

  function render(servers) {
    const body = document.querySelector("#apis-table tbody");
    body.replaceChildren();
    for (const server of servers) {
      const row = document.createElement("tr");
      cell(row, server.name || "");
      cell(row, server.identifier || "");
      cell(row, (server.scopes || []).map((scope) => scope.value).join(" "));
      body.appendChild(row);
    }
  }

  function status(kind, text) {
    const element = document.getElementById("apis-status");
    element.replaceChildren();
    if (!text) return;
    const span = document.createElement("span");
    span.className = kind;
    span.textContent = text;
    element.appendChild(span);
  }

  document.addEventListener("console:refresh", async (event) => {
    const listAll = event.detail && event.detail.listAll;
    if (typeof listAll !== "function") return;
    try {
      const servers = await listAll("api/v2/resource-servers", "resource_servers");
      render(servers);
      status("info", servers.length ? "" : window.ConsoleI18n.t("apis.none"));
    } catch (error) {
      render([]);
      status("error", error.message);
    }
  });
})();
