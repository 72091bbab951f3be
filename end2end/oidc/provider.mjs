// A real OpenID provider for Xene's sign-in tests: oidc-provider (OpenID
// certified) issuing Google-shaped ID tokens (email, email_verified, hd).
//
//   node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// PORT 0 takes a free port; the issuer is then known only once it listens,
// so the provider is made after the socket is bound.
//
// Its development login form accepts any login name; the name decides the
// account, as Google would describe it:
//   alice@example.com             verified, hd example.com (a Workspace user)
//   unverified.bob@example.com    email_verified false
//   nohd.carol@example.com        no hd: a consumer Google account made for a company address
//   dave@gmail.com                a consumer account: no hd
// It listens on 127.0.0.1 only and prints "listening on URL" when ready.
import http from 'node:http';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, redirectUri] = process.argv.slice(2);
if (!port || !clientId || !clientSecret || !redirectUri) {
  console.error('usage: node provider.mjs PORT CLIENT_ID CLIENT_SECRET REDIRECT_URI');
  process.exit(2);
}

function claimsFor(login) {
  const email = login.toLowerCase();
  const [local, domain = ''] = email.split('@');
  const claims = {
    sub: `sub-${email}`,
    email,
    email_verified: !local.startsWith('unverified.'),
    name: local,
  };
  if (!local.startsWith('nohd.') && domain !== 'gmail.com' && domain !== '') {
    claims.hd = domain;
  }
  return claims;
}

function provider(issuer) {
  return new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile'],
    claims: { openid: ['sub'], email: ['email', 'email_verified', 'hd'], profile: ['name'] },
    // Put the scope's claims in the ID token itself, as Google does.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['xene-test-only'] },
    async findAccount(ctx, id) {
      return { accountId: id, async claims() { return claimsFor(id); } };
    },
  });
}

const server = http.createServer();
server.listen(Number(port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  server.on('request', provider(issuer).callback());
  console.log(`listening on ${issuer}`);
});
