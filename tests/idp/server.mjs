// A real upstream OpenID Provider for the broker's tests: panva's certified
// oidc-provider, on loopback only, configured from a JSON file.
//
// Environment:
//   PORT            port to listen on, 127.0.0.1 only (0 or unset = a free one)
//   IDP_CONFIG      path of a JSON config file (optional), keys:
//     clients               array of oidc-provider client metadata
//     accounts              { accountId: { claims... } }; "sub" is always the accountId
//     jwks                  private JWKS ({"keys": [...]}) to sign with; default: one fresh RSA key
//     pkce_required         bool, default false (PKCE is S256-only in oidc-provider 9)
//     claims                extra/overriding scope -> [claim names] map (merged over the defaults)
//     scopes                extra scope names to accept
//     conform_id_token_claims  bool, default false: false puts the scope's claims in the
//                           ID token for every response type (like most real IdPs);
//                           true keeps them for userinfo only unless response_type=id_token
//     ttl                   { AccessToken: seconds, IdToken: seconds, ... } overrides
//                           (AccessToken, IdToken, RefreshToken: changeable at run time,
//                           POST /test/ttl below)
//     provider_config       extra oidc-provider configuration (JSON), deep-merged last
//     allow_loopback_fetch  bool: let the IdP fetch loopback URLs (a client's jwks_uri on the
//                           broker under test, a back-channel logout POST to it), with
//                           LOOPBACK_FETCH_TIMEOUT_MS instead of oidc-provider's 2.5 s (the
//                           broker under test may be slow on a loaded machine); its SSRF guard
//                           stays on for other hosts
//     issuer                the public issuer URL (e.g. https://idp.test:8443 behind a TLS proxy
//                           that a browser reaches by a mapped name); default http://127.0.0.1:<port>
//     trust_proxy           bool: trust X-Forwarded-Proto/-Host from a reverse proxy in front
//                           (koa's app.proxy), so the URLs it builds are https ones
//   IDP_MAX_SECONDS hard lifetime limit in seconds (default 900)
//
// Prints exactly one line "READY http://127.0.0.1:<port>" (where it listens, also when
// `issuer` names another URL) on stdout once it is
// listening (everything else goes to stderr). Exits when stdin closes, on
// SIGTERM/SIGINT, or after IDP_MAX_SECONDS.
//
// Login (no devInteractions): GET /interaction/<uid> shows a form with a
// "login" text field (any account id from `accounts`; "username" is accepted
// too) and an ignored "password" field; consent is granted automatically.
// GET /interaction/<uid>/abort ends the request with access_denied.
//
// POST /test/redirect-uris (form: client_id, redirect_uri) registers one more
// exact redirect URI for a configured client, as an administrator does at a
// real IdP once a connection exists (the broker gives each connection its own
// callback URL). oidc-provider still compares redirect_uri exactly.
//
// POST /test/ttl (form: AccessToken, IdToken and/or RefreshToken = seconds, a
// positive integer) changes those lifetimes for the tokens issued from then on,
// as an administrator changes a token policy at a real IdP (tokens already
// issued keep theirs). Answers 204, or 400 for an unknown name or a bad value.
//
// Token grants (granted, refused, revoked), back-channel logout deliveries and
// ended sessions are logged on stderr ("test-idp: event ..."), with the grant
// type or client id, never a token.
// No page served here loads anything from outside the loopback address.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as querystring from 'node:querystring';

import Provider from 'oidc-provider';

// Keep stdout for the READY line only: oidc-provider prints notices with console.info.
for (const method of ['log', 'info', 'debug']) {
  console[method] = (...args) => console.error(...args);
}

function shutdown(reason, code = 0) {
  console.error(`test-idp: exiting (${reason})`);
  process.exit(code);
}

// ---- lifetime ---------------------------------------------------------------

const maxSeconds = Number(process.env.IDP_MAX_SECONDS ?? 900);
if (!Number.isFinite(maxSeconds) || maxSeconds <= 0) {
  console.error(`test-idp: bad IDP_MAX_SECONDS=${process.env.IDP_MAX_SECONDS}`);
  process.exit(2);
}
setTimeout(() => shutdown(`lifetime of ${maxSeconds}s reached`), maxSeconds * 1000).unref();
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGHUP', () => shutdown('SIGHUP'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('close', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();

// ---- configuration ----------------------------------------------------------

let cfg = {};
if (process.env.IDP_CONFIG) {
  try {
    cfg = JSON.parse(fs.readFileSync(process.env.IDP_CONFIG, 'utf8'));
  } catch (err) {
    console.error(`test-idp: cannot read IDP_CONFIG ${process.env.IDP_CONFIG}: ${err.message}`);
    process.exit(2);
  }
}

const KNOWN_KEYS = new Set([
  'clients', 'accounts', 'jwks', 'pkce_required', 'claims', 'scopes',
  'conform_id_token_claims', 'ttl', 'provider_config', 'allow_loopback_fetch', 'issuer', 'trust_proxy',
]);
for (const key of Object.keys(cfg)) {
  if (!KNOWN_KEYS.has(key)) {
    console.error(`test-idp: unknown config key ${JSON.stringify(key)}`);
    process.exit(2);
  }
}

const accounts = cfg.accounts ?? {
  alice: {
    sub: 'alice',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Liddell',
    given_name: 'Alice',
    family_name: 'Liddell',
  },
};
const clients = cfg.clients ?? [];

function generateJwks() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomBytes(8).toString('hex'), use: 'sig', alg: 'RS256' }] };
}
const jwks = cfg.jwks ?? generateJwks();

// Token lifetimes (seconds). Those in RUNTIME_TTLS are read when a token is
// issued, so POST /test/ttl changes them for every token issued afterwards.
const RUNTIME_TTLS = new Set(['AccessToken', 'IdToken', 'RefreshToken']);
const liveTtl = {
  AccessToken: 3600,
  AuthorizationCode: 60,
  IdToken: 3600,
  RefreshToken: 86400,
  Interaction: 3600,
  Session: 86400,
  Grant: 86400,
  ...(cfg.ttl ?? {}),
};
const LOOPBACK_FETCH_TIMEOUT_MS = 15000;

function ttlConfiguration() {
  const ttl = { ...liveTtl };
  for (const name of RUNTIME_TTLS) {
    // A regular function (oidc-provider refuses arrow and async ones here).
    ttl[name] = function runtimeTtl() { return liveTtl[name]; };
  }
  return ttl;
}

const defaultClaims = {
  openid: ['sub'],
  profile: [
    'name', 'family_name', 'given_name', 'middle_name', 'nickname', 'preferred_username',
    'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  email: ['email', 'email_verified'],
  address: ['address'],
  phone: ['phone_number', 'phone_number_verified'],
};

// ---- pages (local HTML only: no fonts or scripts from elsewhere) ------------

function esc(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;').replaceAll("'", '&#39;');
}

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:2em auto}label,input,button{display:block;margin:.4em 0}.error{color:#b00}</style>
</head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function loginPage({ uid, clientId, loginHint, error }) {
  return page('Sign-in', `<p>Sign in to continue to <strong id="client-id">${esc(clientId)}</strong>.</p>
${error ? `<p class="error" id="error" role="alert">${esc(error)}</p>` : ''}
<form id="login-form" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
<label for="login">Username</label>
<input id="login" name="login" type="text" required autofocus value="${esc(loginHint)}">
<label for="password">Password (not checked)</label>
<input id="password" name="password" type="password">
<button id="submit" class="login-submit" type="submit">Sign-in</button>
</form>
<p><a id="abort" href="/interaction/${esc(uid)}/abort">Cancel</a></p>`);
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = page('Error', Object.entries(out)
    .map(([key, value]) => `<p><strong>${esc(key)}</strong>: <span class="${esc(key)}">${esc(value)}</span></p>`)
    .join('\n'));
}

async function logoutSource(ctx, form) {
  ctx.type = 'html';
  ctx.body = page('Sign-out', `<p>Do you want to sign out from ${esc(ctx.host)}?</p>
${form}
<button id="logout-yes" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
<button id="logout-no" type="submit" form="op.logoutForm">No, stay signed in</button>`);
}

async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = page('Signed out', '<p id="signed-out">You have been signed out.</p>');
}

// ---- provider configuration ---------------------------------------------------

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function deepMerge(target, source) {
  for (const [key, value] of Object.entries(source)) {
    if (isPlainObject(value) && isPlainObject(target[key])) {
      deepMerge(target[key], value);
    } else {
      target[key] = value;
    }
  }
  return target;
}

function buildConfiguration() {
  const configuration = {
    clients,
    jwks,
    async findAccount(ctx, id) {
      if (!Object.hasOwn(accounts, id)) return undefined;
      return {
        accountId: id,
        async claims() {
          return { ...accounts[id], sub: id };
        },
      };
    },
    claims: { ...defaultClaims, ...(cfg.claims ?? {}) },
    scopes: ['openid', 'offline_access', ...(cfg.scopes ?? [])],
    conformIdTokenClaims: Boolean(cfg.conform_id_token_claims ?? false),
    responseTypes: ['code', 'id_token', 'code id_token', 'none'],
    pkce: { required: () => Boolean(cfg.pkce_required ?? false) },
    enabledJWA: {
      idTokenSigningAlgValues: ['RS256', 'PS256', 'ES256', 'Ed25519', 'EdDSA', 'HS256'],
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    renderError,
    // Quiet "you SHOULD change" notices and keep artifacts short-lived.
    ttl: ttlConfiguration(),
    clientBasedCORS: () => true,
  };
  if (cfg.allow_loopback_fetch) {
    // Tests only: let the IdP fetch a client's jwks_uri served by the broker on 127.0.0.1.
    // oidc-provider's SSRF guard (a dispatcher refusing special-use addresses) stays on for
    // every other host.
    configuration.fetch = (url, options) => {
      const host = new URL(url).hostname;
      if (host === '127.0.0.1' || host === 'localhost' || host === '[::1]') {
        delete options.dispatcher;
        options.signal = AbortSignal.timeout(LOOPBACK_FETCH_TIMEOUT_MS);
      }
      return globalThis.fetch(url, options);
    };
  }
  if (cfg.provider_config !== undefined) {
    if (!isPlainObject(cfg.provider_config)) {
      throw new TypeError('provider_config must be an object');
    }
    deepMerge(configuration, cfg.provider_config);
  }
  return configuration;
}

// ---- interactions (login form + automatic consent) ----------------------------

function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks = [];
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > limit) {
        reject(new Error('request body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function autoConsent(provider, req, res, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  if (missing.rar) {
    for (const detail of missing.rar) grant.addRar(detail);
  }
  const savedGrantId = await grant.save();
  const result = grantId ? { consent: {} } : { consent: { grantId: savedGrantId } };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

async function handleInteraction(provider, req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Error', '<p class="error">interaction mismatch</p>'));
    return;
  }
  const { prompt, params } = details;

  if (action === 'abort' && req.method === 'GET') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }

  if (action === 'login' && req.method === 'POST') {
    if (prompt.name !== 'login') {
      sendHtml(res, 400, page('Error', '<p class="error">not at the login step</p>'));
      return;
    }
    const body = querystring.parse(await readBody(req));
    const login = String(body.login || body.username || '').trim();
    if (login && Object.hasOwn(accounts, login)) {
      await provider.interactionFinished(req, res, {
        login: { accountId: login },
      }, { mergeWithLastSubmission: false });
      return;
    }
    sendHtml(res, 200, loginPage({
      uid, clientId: params.client_id, loginHint: login, error: `Unknown user: ${login}`,
    }));
    return;
  }

  if (action === undefined && req.method === 'GET') {
    switch (prompt.name) {
      case 'login':
        sendHtml(res, 200, loginPage({
          uid, clientId: params.client_id, loginHint: params.login_hint,
        }));
        return;
      case 'consent':
        await autoConsent(provider, req, res, details);
        return;
      default:
        sendHtml(res, 501, page('Error', `<p class="error">prompt ${esc(prompt.name)} not implemented</p>`));
        return;
    }
  }

  res.statusCode = 405;
  res.end();
}

// ---- server -------------------------------------------------------------------

async function registerRedirectUri(req, res) {
  const body = querystring.parse(await readBody(req));
  const client = await provider.Client.find(String(body.client_id || ''));
  const uri = String(body.redirect_uri || '');
  if (!client || !/^https?:\/\/[^\s]+$/.test(uri)) {
    res.statusCode = 400;
    res.end();
    return;
  }
  if (!client.redirectUris.includes(uri)) client.redirectUris.push(uri);
  res.statusCode = 204;
  res.end();
}

async function changeTtl(req, res) {
  const body = querystring.parse(await readBody(req));
  const changes = {};
  for (const [name, raw] of Object.entries(body)) {
    const seconds = Number(raw);
    if (!RUNTIME_TTLS.has(name) || typeof raw !== 'string' || !/^[1-9][0-9]{0,8}$/.test(raw)) {
      res.statusCode = 400;
      res.end();
      return;
    }
    changes[name] = seconds;
  }
  Object.assign(liveTtl, changes);
  console.error(`test-idp: ttl now ${JSON.stringify(changes)}`);
  res.statusCode = 204;
  res.end();
}

const INTERACTION_PATH = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?\/?$/;

let provider;
let app;

const server = http.createServer((req, res) => {
  res.on('finish', () => {
    console.error(`test-idp: ${req.method} ${req.url.split('?')[0]} -> ${res.statusCode}`);
  });
  if (!app) {
    res.statusCode = 503;
    res.end();
    return;
  }
  const { pathname } = new URL(req.url, 'http://127.0.0.1');
  if (pathname === '/test/redirect-uris' && req.method === 'POST') {
    registerRedirectUri(req, res).catch((err) => {
      console.error(`test-idp: redirect uri registration failed: ${err.stack || err}`);
      res.statusCode = 500;
      res.end();
    });
    return;
  }
  if (pathname === '/test/ttl' && req.method === 'POST') {
    changeTtl(req, res).catch((err) => {
      console.error(`test-idp: ttl change failed: ${err.stack || err}`);
      res.statusCode = 500;
      res.end();
    });
    return;
  }
  const match = INTERACTION_PATH.exec(pathname);
  if (!match) {
    app(req, res);
    return;
  }
  handleInteraction(provider, req, res, match[1], match[2]).catch((err) => {
    console.error(`test-idp: interaction error: ${err.stack || err}`);
    if (!res.headersSent) {
      const status = err.statusCode || err.status || 500;
      sendHtml(res, status, page('Error', `<p class="error" id="error">${esc(err.name)}: ${esc(err.error_description || err.message)}</p>`));
    } else {
      res.end();
    }
  });
});

server.on('error', (err) => {
  console.error(`test-idp: server error: ${err.stack || err}`);
  process.exit(1);
});

const requestedPort = Number(process.env.PORT ?? 0);
server.listen(requestedPort, '127.0.0.1', async () => {
  try {
    const { port } = server.address();
    const listening = `http://127.0.0.1:${port}`;
    provider = new Provider(cfg.issuer ?? listening, buildConfiguration());
    if (cfg.trust_proxy) provider.proxy = true;

    // Test clients are web clients on http://127.0.0.1; oidc-provider refuses
    // http/localhost redirect_uris for web clients using the implicit flow
    // (id_token / code id_token). Allow them; everything else stays checked.
    const { invalidate: originalInvalidate } = provider.Client.Schema.prototype;
    provider.Client.Schema.prototype.invalidate = function invalidate(message, code) {
      if (code === 'implicit-force-https' || code === 'implicit-forbid-localhost') return;
      originalInvalidate.call(this, message, code);
    };

    provider.on('server_error', (ctx, err) => console.error(`test-idp: server_error: ${err.stack || err}`));
    // What tests read from the log: grants by type (granted, refused, revoked), back-channel
    // logout deliveries, ended sessions (never a token).
    provider.on('grant.success', (ctx) => {
      console.error(`test-idp: event grant.success ${ctx.oidc?.params?.grant_type}`);
    });
    provider.on('grant.error', (ctx, err) => {
      console.error(`test-idp: event grant.error ${ctx.oidc?.params?.grant_type} ${err.error}: ${err.error_description}`);
    });
    provider.on('backchannel.success', (ctx, client) => {
      console.error(`test-idp: event backchannel.success ${client.clientId}`);
    });
    provider.on('backchannel.error', (ctx, err, client) => {
      console.error(`test-idp: event backchannel.error ${client.clientId}: ${err.message}`);
    });
    provider.on('end_session.success', () => console.error('test-idp: event end_session.success'));
    provider.on('grant.revoked', () => console.error('test-idp: event grant.revoked'));

    // Validate the static clients now, so a bad one fails the start, not a test.
    for (const client of clients) {
      await provider.Client.find(String(client.client_id));
    }

    app = provider.callback();
    process.stdout.write(`READY ${listening}\n`);
  } catch (err) {
    console.error(`test-idp: failed to start: ${err.name}: ${err.error_description || err.message}`);
    if (err.stack) console.error(err.stack);
    process.exit(1);
  }
});
