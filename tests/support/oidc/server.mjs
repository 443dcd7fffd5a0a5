// An OpenID Connect provider (the npm package oidc-provider) for keyturn's OAuth2 tests.
//
//   node server.mjs [--port 0] [--access-token-ttl 3] [--exit-with-stdin] ...
//   node server.mjs --config settings.json     (or --config - to read the JSON on stdin)
//
// It listens on 127.0.0.1 only, over plain HTTP (oidc-provider 8 takes an http:// issuer
// without complaint; no development mode is needed), and keeps everything in memory. The
// first line on stdout is one JSON object naming the issuer, its endpoints and the
// clients; everything else (the package's notices included) goes to stderr.
//
// What the tests rely on:
//   - Two confidential clients, one authenticating with client_secret_basic and one with
//     client_secret_post, both allowed authorization_code and refresh_token.
//   - PKCE (S256) is required on every authorization request.
//   - A refresh token is issued when the scope holds offline_access.
//   - Refresh tokens rotate on every use (rotateRefreshToken: true): the response carries
//     a new refresh token and the presented one is marked consumed. Presenting a consumed
//     refresh token again fails with invalid_grant ("refresh token already used") and
//     revokes the whole grant, so the newest refresh token stops working too.
//   - Interactions complete by themselves: /interaction/<uid> logs in the one test
//     account and grants what the client asked for, then redirects back, so a plain HTTP
//     client with a cookie jar gets an authorization code without a browser. There is no
//     form and no CSRF check here; this route exists for tests only.
//   - Client authentication is strict: oidc-provider itself accepts a client secret sent
//     either way (client_secret_basic or client_secret_post) whatever the client registered;
//     here a token request that authenticates with the other method than the client's
//     registered one is refused with 401 invalid_client before the provider sees it, so a
//     test learns when a client sends its secret the wrong way.
//   - GET /test/stats reports counters kept from the provider's events (see newStats);
//     POST /test/reset sets them back to zero.
//
// Stops on SIGTERM or SIGINT, and with --exit-with-stdin also when its stdin closes, so
// a parent that dies without cleaning up does not leave it running.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

// The package prints notices with console.info, which is stdout; stdout belongs to the
// one JSON line the parent reads.
console.info = console.error;
console.log = console.error;

const HOST = '127.0.0.1';

const defaults = {
  port: 0,
  access_token_ttl: 3,
  refresh_token_ttl: 24 * 60 * 60,
  account: 'keyturn-test-user',
  redirect_uri: 'http://127.0.0.1/keyturn/callback',
  basic_client_id: 'keyturn-basic',
  basic_client_secret: 'keyturn-basic-secret-0123456789abcdef',
  post_client_id: 'keyturn-post',
  post_client_secret: 'keyturn-post-secret-0123456789abcdef',
  verbose: false,
  exit_with_stdin: false,
};

function usage() {
  return `usage: node server.mjs [options]
  --port N                  port on 127.0.0.1 (0 picks a free one; default ${defaults.port})
  --access-token-ttl S      access token lifetime in seconds (default ${defaults.access_token_ttl})
  --refresh-token-ttl S     refresh token lifetime in seconds
                            (default ${defaults.refresh_token_ttl})
  --account ID              the one account that logs in (default ${defaults.account})
  --redirect-uri URI        the clients' registered redirect URI
  --basic-client-id ID      --basic-client-secret S   the client_secret_basic client
  --post-client-id ID       --post-client-secret S    the client_secret_post client
  --config FILE             the same settings as a JSON object (keys with underscores);
                            "-" reads it from stdin; flags given too win
  --exit-with-stdin         stop when stdin reaches end of file
  --verbose                 log every token request to stderr
`;
}

function readSettings() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string' },
      'access-token-ttl': { type: 'string' },
      'refresh-token-ttl': { type: 'string' },
      account: { type: 'string' },
      'redirect-uri': { type: 'string' },
      'basic-client-id': { type: 'string' },
      'basic-client-secret': { type: 'string' },
      'post-client-id': { type: 'string' },
      'post-client-secret': { type: 'string' },
      config: { type: 'string' },
      'exit-with-stdin': { type: 'boolean' },
      verbose: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stderr.write(usage());
    process.exit(0);
  }

  let fromFile = {};
  if (values.config !== undefined) {
    const text = fs.readFileSync(values.config === '-' ? 0 : values.config, 'utf8');
    fromFile = JSON.parse(text);
    const unknown = Object.keys(fromFile).filter((k) => !(k in defaults));
    if (unknown.length) throw new Error(`unknown settings in --config: ${unknown.join(', ')}`);
  }

  const fromFlags = {};
  for (const [flag, value] of Object.entries(values)) {
    if (flag === 'config' || flag === 'help') continue;
    fromFlags[flag.replaceAll('-', '_')] = value;
  }

  const settings = { ...defaults, ...fromFile, ...fromFlags };
  for (const key of ['port', 'access_token_ttl', 'refresh_token_ttl']) {
    const n = Number(settings[key]);
    if (!Number.isInteger(n) || n < 0 || (key !== 'port' && n === 0)) {
      throw new Error(`${key} must be a whole number of ${key === 'port' ? 'port' : 'seconds'}`);
    }
    settings[key] = n;
  }
  if (values.config === '-' && settings.exit_with_stdin) {
    throw new Error('--exit-with-stdin cannot be combined with --config -');
  }
  return settings;
}

// Counters the tests read through GET /test/stats. Each is fed by one of the provider's
// events, named beside it.
function newStats() {
  return {
    token_requests_ok: 0, //          grant.success
    authorization_code_grants: 0, //  grant.success, grant_type=authorization_code
    refresh_grants: 0, //             grant.success, grant_type=refresh_token
    grant_errors: 0, //               grant.error, any error
    invalid_grant: 0, //              grant.error, error=invalid_grant
    invalid_client: 0, //             grant.error, error=invalid_client (and the next)
    client_auth_method_mismatch: 0, // refused here: basic client used post, or the reverse
    refresh_token_reuse: 0, //        grant.error, invalid_grant for a consumed refresh token
    refresh_tokens_consumed: 0, //    refresh_token.consumed (one per rotation)
    revoked_grants: 0, //             grant.revoked
    server_errors: 0, //              server_error
    last_errors: [], //               the last few grant.error, newest last
  };
}

function generateSigningKeys() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: 'keyturn-test-rs256', use: 'sig', alg: 'RS256' }] };
}

function providerConfiguration(settings) {
  const client = (id, secret, method) => ({
    client_id: id,
    client_secret: secret,
    token_endpoint_auth_method: method,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [settings.redirect_uri],
  });

  return {
    clients: [
      client(settings.basic_client_id, settings.basic_client_secret, 'client_secret_basic'),
      client(settings.post_client_id, settings.post_client_secret, 'client_secret_post'),
    ],
    jwks: generateSigningKeys(),
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    scopes: ['openid', 'offline_access'],
    claims: { openid: ['sub'] },

    async findAccount(ctx, sub) {
      if (sub !== settings.account) return undefined;
      return { accountId: sub, async claims() { return { sub }; } };
    },

    // Our own routes below complete interactions; the package's HTML forms stay off.
    features: {
      devInteractions: { enabled: false },
      introspection: { enabled: true },
      revocation: { enabled: true },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },

    pkce: { methods: ['S256'], required: () => true },
    issueRefreshToken: async (ctx, client, code) => client.grantTypeAllowed('refresh_token')
      && code.scopes.has('offline_access'),
    // The package's default rotates a confidential client's refresh token only once it is
    // past 70% of its lifetime; the tests need a new one on every use.
    rotateRefreshToken: true,
    // Reuse of a consumed refresh token revokes the grant and everything issued under it.
    revokeGrantPolicy: () => true,
    allowOmittingSingleRegisteredRedirectUri: false,
    clientBasedCORS: () => false,

    ttl: {
      AccessToken: () => settings.access_token_ttl,
      AuthorizationCode: 60,
      IdToken: 60,
      RefreshToken: () => settings.refresh_token_ttl,
      Grant: settings.refresh_token_ttl,
      Interaction: 10 * 60,
      Session: 60 * 60,
    },
  };
}

function watchEvents(provider, stats, settings) {
  const log = (line) => process.stderr.write(`oidc-server: ${line}\n`);

  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params.grant_type;
    stats.token_requests_ok += 1;
    if (type === 'authorization_code') stats.authorization_code_grants += 1;
    if (type === 'refresh_token') stats.refresh_grants += 1;
    if (settings.verbose) log(`token ok: ${type} for ${ctx.oidc.client?.clientId}`);
  });

  provider.on('grant.error', (ctx, error) => {
    const detail = {
      error: error.error,
      error_description: error.error_description,
      // The reason the client is not told, e.g. "refresh token already used".
      error_detail: error.error_detail,
      grant_type: ctx.oidc?.params?.grant_type,
      client_id: ctx.oidc?.client?.clientId,
    };
    stats.grant_errors += 1;
    if (error.error === 'invalid_grant') stats.invalid_grant += 1;
    if (error.error === 'invalid_client') stats.invalid_client += 1;
    if (error.error === 'invalid_grant' && detail.error_detail === 'refresh token already used') {
      stats.refresh_token_reuse += 1;
    }
    stats.last_errors.push(detail);
    if (stats.last_errors.length > 20) stats.last_errors.shift();
    log(`token error: ${detail.error} (${detail.error_detail || detail.error_description}) `
      + `grant_type=${detail.grant_type} client=${detail.client_id}`);
  });

  provider.on('refresh_token.consumed', () => { stats.refresh_tokens_consumed += 1; });

  provider.on('grant.revoked', () => {
    stats.revoked_grants += 1;
    log('grant revoked');
  });

  provider.on('server_error', (ctx, error) => {
    stats.server_errors += 1;
    log(`server error: ${error?.stack || error}`);
  });
}

// Logs the test account in, then grants whatever the client is still missing.
async function completeInteraction(provider, settings, req, res) {
  const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);

  if (prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: settings.account } },
      { mergeWithLastSubmission: false });
    return;
  }

  if (prompt.name !== 'consent') throw new Error(`unexpected prompt ${prompt.name}`);

  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } },
    { mergeWithLastSubmission: true });
}

const MAX_BODY = 64 * 1024;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new Error('request body too large'));
        req.destroy();
      } else {
        chunks.push(chunk);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// Which registered method a token request used to authenticate, and as which client; null
// when it used neither (the provider then answers for itself).
function clientAuthUsed(req, form) {
  const header = req.headers.authorization;
  if (header && /^basic /i.test(header)) {
    const pair = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = pair.indexOf(':');
    if (colon < 0) return null;
    try {
      const id = decodeURIComponent(pair.slice(0, colon).replaceAll('+', ' '));
      return { method: 'client_secret_basic', clientId: id };
    } catch {
      return null;
    }
  }
  if (form.has('client_secret')) {
    return { method: 'client_secret_post', clientId: form.get('client_id') };
  }
  return null;
}

// Reads the token request's body, refuses a client that authenticates with the other
// method than the one it registered, and hands the rest to the provider. The provider
// takes a body read upstream from `req.body` (it warns once on stderr that it does).
async function strictTokenRequest(settings, stats, req, res, handleOidc) {
  const body = await readBody(req);
  const used = clientAuthUsed(req, new URLSearchParams(body.toString('utf8')));
  const registered = {
    [settings.basic_client_id]: 'client_secret_basic',
    [settings.post_client_id]: 'client_secret_post',
  }[used?.clientId];

  if (used && registered && used.method !== registered) {
    const detail = {
      error: 'invalid_client',
      error_description: 'client authentication failed',
      error_detail: `client ${used.clientId} is registered for ${registered} `
        + `but authenticated with ${used.method}`,
      client_id: used.clientId,
    };
    stats.grant_errors += 1;
    stats.invalid_client += 1;
    stats.client_auth_method_mismatch += 1;
    stats.last_errors.push(detail);
    if (stats.last_errors.length > 20) stats.last_errors.shift();
    process.stderr.write(`oidc-server: token error: invalid_client (${detail.error_detail})\n`);
    res.setHeader('www-authenticate', 'Basic realm="token"');
    sendJson(res, 401, { error: detail.error, error_description: detail.error_description });
    return;
  }

  req.body = body;
  handleOidc(req, res);
}

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function packageVersion() {
  const require = createRequire(import.meta.url);
  return require('oidc-provider/package.json').version;
}

async function main() {
  const settings = readSettings();
  const stats = newStats();
  let provider; // made once the port, and so the issuer, is known
  let handleOidc;

  const server = http.createServer((req, res) => {
    const path = req.url.split('?')[0];
    if (!provider) {
      sendJson(res, 503, { error: 'starting' });
    } else if (path === '/test/stats' && req.method === 'GET') {
      sendJson(res, 200, stats);
    } else if (path === '/test/reset' && req.method === 'POST') {
      Object.assign(stats, newStats());
      sendJson(res, 200, stats);
    } else if (/^\/interaction\/[^/]+$/.test(path) && req.method === 'GET') {
      completeInteraction(provider, settings, req, res).catch((error) => {
        process.stderr.write(`oidc-server: interaction failed: ${error?.stack || error}\n`);
        if (!res.headersSent) {
          sendJson(res, 400, { error: 'interaction_failed', detail: String(error) });
        }
      });
    } else if (path === '/token' && req.method === 'POST') {
      strictTokenRequest(settings, stats, req, res, handleOidc).catch((error) => {
        process.stderr.write(`oidc-server: token request failed: ${error?.message || error}\n`);
        if (!res.headersSent) sendJson(res, 400, { error: 'invalid_request' });
      });
    } else {
      handleOidc(req, res);
    }
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(settings.port, HOST, resolve);
  });

  const issuer = `http://${HOST}:${server.address().port}`;
  provider = new Provider(issuer, providerConfiguration(settings));
  watchEvents(provider, stats, settings);
  handleOidc = provider.callback();

  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`oidc-server: stopping (${why})\n`);
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (settings.exit_with_stdin) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin error'));
    process.stdin.resume();
  }

  const meta = {
    issuer,
    authorization_endpoint: `${issuer}/auth`,
    token_endpoint: `${issuer}/token`,
    introspection_endpoint: `${issuer}/token/introspection`,
    revocation_endpoint: `${issuer}/token/revocation`,
    stats_endpoint: `${issuer}/test/stats`,
    redirect_uri: settings.redirect_uri,
    account: settings.account,
    access_token_ttl: settings.access_token_ttl,
    refresh_token_ttl: settings.refresh_token_ttl,
    clients: {
      client_secret_basic: {
        client_id: settings.basic_client_id, client_secret: settings.basic_client_secret,
      },
      client_secret_post: {
        client_id: settings.post_client_id, client_secret: settings.post_client_secret,
      },
    },
    oidc_provider_version: packageVersion(),
    node_version: process.versions.node,
    pid: process.pid,
  };
  process.stdout.write(`${JSON.stringify(meta)}\n`);
}

main().catch((error) => {
  process.stderr.write(`oidc-server: cannot start: ${error?.message || error}\n`);
  process.exit(2);
});
