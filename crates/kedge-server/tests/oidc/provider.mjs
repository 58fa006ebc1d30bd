// A real OpenID Connect provider for Kedge's OIDC login tests: oidc-provider (an OpenID-certified implementation)
// with its development login and consent pages, on a free loopback port.
//
//   KEDGE_OIDC_CLIENT_ID=kedge KEDGE_OIDC_CLIENT_SECRET=... \
//   KEDGE_OIDC_REDIRECT_URI=http://127.0.0.1:PORT/auth/callback node provider.mjs
//
// Prints `issuer <url>` once it listens. Any password is accepted; the login name picks the account below. Claims
// asked for with scopes are given by the userinfo endpoint (the ID token of the code flow carries only `sub` and the
// protocol claims, as the specification has it), so a client must read the groups from there when they are not in
// the ID token. With KEDGE_OIDC_ID_TOKEN_CLAIMS=1 they are in the ID token instead, and there is no userinfo
// endpoint at all.
import http from 'node:http';
import Provider from 'oidc-provider';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const clientId = env('KEDGE_OIDC_CLIENT_ID');
const clientSecret = env('KEDGE_OIDC_CLIENT_SECRET');
const redirectUri = env('KEDGE_OIDC_REDIRECT_URI');
const idTokenClaims = process.env.KEDGE_OIDC_ID_TOKEN_CLAIMS === '1';
// The host name in the issuer URL: `localhost` makes the provider another site than a Kedge at 127.0.0.1 for a
// browser (ports do not make sites), as it is in real setups. The provider listens on 127.0.0.1 either way.
const host = process.env.KEDGE_OIDC_HOST || '127.0.0.1';
// The port to listen on (default: a free one).
const listenPort = Number(process.env.KEDGE_OIDC_PORT || 0);

// Login name -> claims. `nameless` has neither a preferred_username nor an email: Kedge names it by its subject.
const accounts = {
  alice: { preferred_username: 'alice', email: 'alice@example.test', groups: ['team-a'] },
  root: { preferred_username: 'root', email: 'root@example.test', groups: ['platform-admins', 'team-a'] },
  mail: { email: 'mail@example.test', groups: [] },
  nameless: {},
  // More groups than a session cookie can hold.
  crowd: { preferred_username: 'crowd', groups: Array.from({ length: 300 }, (_, i) => `group-number-${i}`) },
};

const server = http.createServer();
server.listen(listenPort, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://${host}:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        response_types: ['code'],
        grant_types: ['authorization_code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
      groups: ['groups'],
    },
    conformIdTokenClaims: !idTokenClaims,
    features: { userinfo: { enabled: !idTokenClaims } },
    // Every authorization request must carry a PKCE challenge (S256).
    pkce: { required: () => true },
    cookies: { keys: ['kedge-oidc-test-provider-cookie-key'] },
    async findAccount(_ctx, id) {
      const claims = accounts[id] ?? { preferred_username: id, groups: [] };
      return {
        accountId: id,
        async claims() {
          return { sub: id, ...claims };
        },
      };
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('provider: server error', err));
  server.on('request', provider.callback());
  console.log(`issuer ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The test that started the provider keeps its standard input open; when the test ends, the provider ends too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
