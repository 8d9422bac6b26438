//! node-oidc-provider (npm `oidc-provider`, installed by `scripts/test.sh`)
//! run as a token service nobody here wrote: `client_credentials` with
//! `client_secret_basic`, ES256 JWT access tokens (RFC 9068, `typ: at+jwt`)
//! for one resource, with an `org_id` claim. The same configuration as
//! `bench/node-provider.mjs`, on an ephemeral loopback port; or the same
//! with DPoP (RFC 9449) required of its client, nonces included.

use serde_json::Value;

use crate::tools::NodeProcess;

/// The provider's script: prints `{"issuer": URL}` once it listens.
const SCRIPT: &str = r#"
import http from 'node:http';
import crypto from 'node:crypto';
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const [clientId, clientSecret, audience, orgId, mode] = process.argv.slice(2);
const dpop = mode === 'dpop';
const server = http.createServer();
server.listen(0, '127.0.0.1', async () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), alg: 'ES256', use: 'sig', kid: 'node-es256' };
  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: 'actions:read',
      ...(dpop ? { dpop_bound_access_tokens: true } : {}),
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: ['e2e-only-not-a-secret'] },
    scopes: ['actions:read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      ...(dpop ? { dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => true } } : {}),
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'actions:read',
          audience,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
    extraTokenClaims: () => ({ org_id: orgId }),
  });
  provider.proxy = false;
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer }));
});
"#;

/// The provider's only client: its id (also the `sub` of its tokens).
pub const CLIENT: &str = "node-connector";
/// That client's secret.
pub const SECRET: &str = "node-secret-0123456789abcdefghijklmnopqrstuv";

/// A running node-oidc-provider; stopped when dropped.
pub struct NodeIssuer {
    process: NodeProcess,
    /// Its issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
}

impl NodeIssuer {
    /// Starts a provider whose access tokens are for `audience` (its
    /// resource indicator) and carry `org_id`.
    pub async fn start(audience: &str, org_id: &str) -> Self {
        Self::launch(audience, org_id, "bearer").await
    }

    /// The same provider with DPoP required of its client: every token is
    /// bound to the key of the client's proof (`cnf.jkt`), and its token
    /// endpoint asks for a nonce (`use_dpop_nonce`) before it issues one.
    pub async fn start_with_dpop(audience: &str, org_id: &str) -> Self {
        Self::launch(audience, org_id, "dpop").await
    }

    async fn launch(audience: &str, org_id: &str, mode: &str) -> Self {
        let mut process =
            NodeProcess::start("node-issuer", SCRIPT, &[CLIENT, SECRET, audience, org_id, mode]);
        let line = process.line().await;
        let started: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("node-oidc-provider printed {line:?}: {e}"));
        let issuer = started["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("node-oidc-provider printed no issuer: {line}"))
            .to_owned();
        Self { process, issuer }
    }

    /// A fresh JWT access token for [`CLIENT`] (`client_credentials`,
    /// `scope=actions:read`), or a panic with the provider's answer.
    pub async fn token(&self) -> String {
        let response = crate::http()
            .post(format!("{}/token", self.issuer))
            .basic_auth(CLIENT, Some(SECRET))
            .form(&[("grant_type", "client_credentials"), ("scope", "actions:read")])
            .send()
            .await
            .expect("token request to node-oidc-provider");
        let body: Value = response.json().await.expect("a JSON answer");
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("node-oidc-provider issued no token: {body}"))
            .to_owned()
    }

    /// Stops it and waits for it to end.
    pub async fn stop(self) {
        self.process.stop().await;
    }
}
