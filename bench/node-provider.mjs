// node-oidc-provider configured like oidc-server's embedded default, the
// baseline of bench/run.sh: one client, client_credentials only,
// client_secret_basic, ES256-signed JWT access tokens (RFC 9068) for one
// audience with the same private claims (org_id, account_id).
//
//   NODE_ENV=production node bench/node-provider.mjs PORT CLIENT_ID CLIENT_SECRET AUDIENCE
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const [port, clientId, clientSecret, audience] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const { privateKey } = await generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'bench-es256' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: 'ES256',
    scope: 'actions:read actions:write',
  }],
  jwks: { keys: [jwk] },
  // Neither matters to client_credentials; set so the provider does not warn.
  cookies: { keys: ['bench-only-not-a-secret'] },
  ttl: { ClientCredentials: 300 },
  scopes: ['actions:read', 'actions:write'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'actions:read actions:write',
        audience,
        accessTokenTTL: 300,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'ES256' } },
      }),
    },
  },
  // Same private claims as oidc-server's demo connector.
  extraTokenClaims: () => ({ org_id: 'org-demo', account_id: '000000000000' }),
});
provider.proxy = false;
provider.listen(Number(port), '127.0.0.1');
console.log(`node-oidc-provider listening on ${issuer}`);
