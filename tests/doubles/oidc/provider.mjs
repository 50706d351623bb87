// A real OpenID provider for stackgate's login tests: panva's `oidc-provider` (OpenID
// Certified), configured with one confidential client, two users and a plain HTML login
// form. Every token comes from oidc-provider itself; nothing here signs anything.
//
//   node tests/doubles/oidc/provider.mjs --port 0 \
//        --redirect-uri http://127.0.0.1:8080/auth/callback [--redirect-uri ...] \
//        [--client-id stackgate] [--client-secret SECRET]
//
// Prints `LISTENING <port>` once it serves, on 127.0.0.1 only. The issuer is
// `http://127.0.0.1:<port>`. Redirect URIs can also come from OIDC_REDIRECT_URIS
// (space-separated), since the tests pick their ports at run time.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'client-id': { type: 'string', default: 'stackgate' },
    'client-secret': { type: 'string', default: 'stackgate-test-client-secret-5c1e' },
  },
});

const redirectUris = [
  ...args['redirect-uri'],
  ...(process.env.OIDC_REDIRECT_URIS ?? '').split(/\s+/).filter(Boolean),
];
if (redirectUris.length === 0) {
  console.error('provider.mjs: give at least one --redirect-uri (or OIDC_REDIRECT_URIS)');
  process.exit(2);
}

// The two test users. `viola` views, `otto` operates.
const USERS = {
  viola: {
    password: 'viola-password-3b7f',
    claims: { email: 'viola@example.test', email_verified: true, groups: ['stackgate-viewers'] },
  },
  otto: {
    password: 'otto-password-9d2a',
    claims: { email: 'otto@example.test', email_verified: true, groups: ['stackgate-operators'] },
  },
};

// A signing key of this run's own (oidc-provider's built-in key is for development only).
const signingKey = {
  ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid: `test-${randomBytes(4).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, clientId, error) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Sign in</title></head>
<body>
<h1>Sign in to ${escape(clientId)}</h1>
${error ? `<p class="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
  <label>User <input name="login" autocomplete="username" autofocus></label>
  <label>Password <input name="password" type="password" autocomplete="current-password"></label>
  <button type="submit">Sign in</button>
</form>
</body></html>
`;
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function send(res, status, type, body) {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

const server = createServer();
server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: args['client-id'],
        client_secret: args['client-secret'],
        redirect_uris: redirectUris,
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    // Authorization code with PKCE, S256 (the only method oidc-provider 9 knows), for every
    // client, confidential or not.
    pkce: { required: () => true },
    jwks: { keys: [signingKey] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    // The scopes' claims go into the ID token too, not only to the userinfo endpoint.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(_ctx, id) {
      const user = USERS[id];
      if (!user) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, ...user.claims }) };
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('provider.mjs: server_error', err));

  const oidc = provider.callback();
  server.on('request', async (req, res) => {
    const url = new URL(req.url, issuer);
    const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!m) return oidc(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (details.uid !== m[1]) return send(res, 400, 'text/plain', 'interaction mismatch\n');
      if (req.method === 'GET' && !m[2]) {
        return send(res, 200, 'text/html; charset=utf-8', loginPage(details.uid, details.params.client_id));
      }
      if (req.method !== 'POST' || !m[2]) return send(res, 405, 'text/plain', 'method not allowed\n');
      const form = await readForm(req);
      const login = form.get('login') ?? '';
      const user = Object.hasOwn(USERS, login) ? USERS[login] : undefined;
      if (!user || form.get('password') !== user.password) {
        return send(res, 401, 'text/html; charset=utf-8', loginPage(details.uid, details.params.client_id, 'wrong user or password'));
      }
      // Consent is granted for the test client at once: everything it asked for.
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: login, clientId: details.params.client_id });
      const missing = details.prompt.details ?? {};
      grant.addOIDCScope(details.params.scope ?? 'openid');
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      return provider.interactionFinished(
        req,
        res,
        { login: { accountId: login }, consent: { grantId } },
        { mergeWithLastSubmission: false },
      );
    } catch (err) {
      return send(res, 400, 'text/plain', `${err.name ?? 'error'}: ${err.message}\n`);
    }
  });
  console.log(`LISTENING ${port}`);
});
