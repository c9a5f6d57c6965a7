// node-auth0 (the `auth0` npm package, v7) against the broker, as a team migrating from Auth0 would use
// it: `ManagementClient` with the broker's domain and the admin client's credentials (the SDK gets its
// own token at https://{domain}/oauth/token for https://{domain}/api/v2/).
//
// Driven by tests/integration/test_node_auth0.py: argv[2] is a JSON object
//   {domain, clientId, clientSecret, prefix, idp: {issuer, clientId, clientSecret}}
// and the script prints one JSON object with what each step returned. Any failure prints
// {"error": {...}} with the SDK's status code and body, and exits 1.
import { ManagementClient, ManagementError } from "auth0";

const config = JSON.parse(process.argv[2]);
const mgmt = new ManagementClient({
  domain: config.domain,
  clientId: config.clientId,
  clientSecret: config.clientSecret,
  maxRetries: 0, // a 429 or 5xx must show, not be retried away
});

// Every item of a paged answer, following the SDK's own next-page logic; `pages` counts the requests.
async function everyItem(page) {
  const items = [...page.data];
  let pages = 1;
  while (page.hasNextPage()) {
    page = await page.getNextPage();
    items.push(...page.data);
    pages += 1;
  }
  return { items, pages };
}

async function statusOf(promise) {
  try {
    await promise;
    return 200;
  } catch (error) {
    if (error instanceof ManagementError) return error.statusCode;
    throw error;
  }
}

async function main() {
  const out = {};
  const { idp, prefix } = config;

  // Connections: one from the IdP's discovery document, one with explicit endpoints.
  const discovered = await mgmt.connections.create({
    name: `${prefix}-disc`,
    strategy: "oidc",
    display_name: "Discovered IdP",
    options: {
      type: "back_channel",
      discovery_url: idp.issuer,
      client_id: idp.clientId,
      client_secret: idp.clientSecret,
      scope: "openid profile email",
    },
  });
  out.discoveredCreated = discovered;
  const explicit = await mgmt.connections.create({
    name: `${prefix}-explicit`,
    strategy: "oidc",
    options: {
      type: "front_channel",
      client_id: idp.clientId,
      issuer: idp.issuer,
      authorization_endpoint: `${idp.issuer}/auth`,
      jwks_uri: `${idp.issuer}/jwks`,
    },
  });
  out.explicitCreated = explicit;
  out.discoveredRead = await mgmt.connections.get(discovered.id);

  // PATCH replaces options as a whole; the broker keeps the stored client_secret when it is absent.
  const { client_secret: _secret, ...optionsWithoutSecret } = discovered.options;
  out.discoveredUpdated = await mgmt.connections.update(discovered.id, {
    display_name: "Renamed IdP",
    options: { ...optionsWithoutSecret, scope: "openid profile email offline_access" },
  });

  // Applications.
  const client = await mgmt.clients.create({
    name: `${prefix}-app`,
    app_type: "regular_web",
    callbacks: ["https://app.example.com/callback"],
  });
  out.clientCreated = client;
  out.clientRead = await mgmt.clients.get(client.client_id);
  out.clientUpdated = await mgmt.clients.update(client.client_id, {
    name: `${prefix}-app-renamed`,
    callbacks: ["https://app.example.com/callback", "https://app.example.com/other"],
  });
  const spare = await mgmt.clients.create({ name: `${prefix}-spare`, app_type: "non_interactive" });
  out.spareCreated = spare;

  // Enablement: v7's connections.clients API, then Auth0's deprecated `enabled_clients` list.
  await mgmt.connections.clients.update(discovered.id, [
    { client_id: client.client_id, status: true },
    { client_id: spare.client_id, status: true },
  ]);
  const enabledPage = await mgmt.connections.clients.get(discovered.id, { take: 1 });
  const enabled = await everyItem(enabledPage);
  out.enabledClients = enabled.items.map((item) => item.client_id);
  out.enabledClientsPages = enabled.pages;
  out.explicitEnabled = await mgmt.connections.update(explicit.id, { enabled_clients: [client.client_id] });

  // Paging: connections by checkpoint (from/take), clients by page/per_page with include_totals.
  const connections = await everyItem(await mgmt.connections.list({ take: 1 }));
  out.connectionNames = connections.items.map((item) => item.name);
  out.connectionPages = connections.pages;
  const byName = await mgmt.connections.list({ name: `${prefix}-explicit`, fields: "id,name", include_fields: true });
  out.connectionsByName = byName.data;
  const byStrategy = await everyItem(await mgmt.connections.list({ strategy: ["oidc", "samlp"], take: 100 }));
  out.oidcConnectionNames = byStrategy.items.map((item) => item.name);
  out.noSamlConnections = (await mgmt.connections.list({ strategy: ["samlp"] })).data.length;
  const firstClientPage = await mgmt.clients.list({ page: 0, per_page: 1, include_totals: true });
  out.clientsFirstPage = firstClientPage.response;
  const clients = await everyItem(firstClientPage);
  out.clientIds = clients.items.map((item) => item.client_id);
  out.clientPages = clients.pages;

  // Deletion: the objects are gone and a read answers 404.
  await mgmt.connections.delete(explicit.id);
  await mgmt.clients.delete(spare.client_id);
  out.deletedConnectionStatus = await statusOf(mgmt.connections.get(explicit.id));
  out.deletedClientStatus = await statusOf(mgmt.clients.get(spare.client_id));
  return out;
}

try {
  process.stdout.write(JSON.stringify(await main()));
} catch (error) {
  const detail = { name: error.name, message: error.message };
  if (error instanceof ManagementError) Object.assign(detail, { statusCode: error.statusCode, body: error.body });
  process.stdout.write(JSON.stringify({ error: detail }));
  process.exitCode = 1;
}
