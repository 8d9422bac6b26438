//! DPoP proofs at the token endpoint across a fleet: two replicas of one
//! issuer share a replay table in moto's DynamoDB (through the real AWS
//! SDK). A proof used at one replica is refused at the other, and of the
//! same proof sent to both at once exactly one request gets a token. And
//! DPoP clients nobody here wrote get tokens bound to their keys:
//! openid-client (npm), and requests-oauth2client (PyPI), whose auth
//! handler then polls the example control plane with `--require-dpop`.

use e2e::control_plane::ControlPlane;
use e2e::moto::{self, Moto};
use e2e::{client_key, test_config, TestServer, AUDIENCE, SECRET, SECRET_CLIENT};
use oidc_core::dpop::{DpopKey, DpopProof};
use oidc_core::Algorithm;
use serde_json::Value;

/// Two replicas of one issuer (B serves A's issuer) recording uses in a
/// fresh table of the shared emulator, and the table's name.
async fn replicas() -> (TestServer, TestServer, String) {
    let sdk = Moto::shared().sdk_config().await;
    let table = moto::create_replay_table(&sdk).await;
    let (_signer, jwks) = client_key(Algorithm::ES256);
    // 32 writes at once queue in the emulator: room for the last ones.
    let toml = format!("{}{}", test_config(&jwks), moto::replay_section(&table))
        .replace("call_timeout_ms = 500", "call_timeout_ms = 2000");
    let sdk = moto::sdk_config_for(&Moto::shared().endpoint).await;
    let (a, b) = TestServer::replicas(&toml, &sdk).await;
    (a, b, table)
}

/// A client_secret_basic request with `proof`; status and body.
async fn post(server: &TestServer, proof: &str) -> (u16, Value) {
    let response = e2e::http()
        .post(server.token_url())
        .basic_auth(SECRET_CLIENT, Some(SECRET))
        .header("dpop", proof)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_proof_used_at_one_replica_is_refused_at_the_other() {
    let (a, b, table) = replicas().await;
    let key = DpopKey::generate().unwrap();
    let proof = DpopProof::builder(&key, "POST", &a.token_url()).sign().unwrap();
    let (status, body) = post(&a, proof.as_str()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "DPoP");
    let (status, body) = post(&b, proof.as_str()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof")),
        "{body}"
    );

    // One item, namespaced and hashed, kept until iat + the window (60 s).
    let items = moto::replay_items(&Moto::shared().sdk_config().await, &table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(
        items[0].0.starts_with("dpop#") && items[0].0.len() == 5 + 64,
        "{items:?}"
    );
    assert_eq!(items[0].1, proof.issued_at() + 60, "{items:?}");
}

#[tokio::test]
async fn the_same_proof_sent_to_two_replicas_at_once_has_exactly_one_winner() {
    let (a, b, _) = replicas().await;
    let key = DpopKey::generate().unwrap();
    let proof = DpopProof::builder(&key, "POST", &a.token_url()).sign().unwrap();
    let servers = [&a, &b];
    let attempts = (0..32).map(|i| post(servers[i % 2], proof.as_str()));
    let answers = futures_util::future::join_all(attempts).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    let refused = answers
        .iter()
        .filter(|(status, body)| *status == 400 && body["error"] == "invalid_dpop_proof")
        .count();
    assert_eq!(refused, 31, "{statuses:?}");
}

/// openid-client (npm, v6): discovery, client_secret_basic, its own DPoP
/// key (`randomDPoPKeyPair`) and proofs (`getDPoPHandle`); prints the
/// token response and the RFC 7638 thumbprint of its key (computed by jose).
const OPENID_CLIENT_DPOP: &str = r#"
import * as client from 'openid-client';
import { calculateJwkThumbprint } from 'jose';
const [issuer, clientId, secret] = process.argv.slice(2);
const config = await client.discovery(new URL(issuer), clientId, undefined, client.ClientSecretBasic(secret), {
  execute: [client.allowInsecureRequests],
});
const keyPair = await client.randomDPoPKeyPair('ES256');
const DPoP = client.getDPoPHandle(config, keyPair);
const tokens = await client.clientCredentialsGrant(config, {}, { DPoP });
const jwk = await crypto.subtle.exportKey('jwk', keyPair.publicKey);
const jkt = await calculateJwkThumbprint(jwk, 'sha256');
console.log(JSON.stringify({ token_type: tokens.token_type, access_token: tokens.access_token, jkt }));
"#;

#[tokio::test]
async fn openid_client_gets_a_dpop_bound_token() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::builder(&test_config(&jwks)).start().await;
    let output = e2e::tools::run_node(OPENID_CLIENT_DPOP, &[&server.url, SECRET_CLIENT, SECRET]).await;
    assert_eq!(output.code, 0, "{output:?}");
    let printed: Value = serde_json::from_str(output.stdout.trim()).unwrap();
    assert!(
        printed["token_type"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case("dpop"),
        "{printed}"
    );
    let token = printed["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&oidc_core::base64url::decode(payload).unwrap()).unwrap();
    assert_eq!(claims["cnf"]["jkt"], printed["jkt"], "{claims}");
    assert_eq!(claims["sub"], SECRET_CLIENT);
}

/// requests-oauth2client (PyPI) with its defaults plus DPoP on
/// (`dpop_bound_access_tokens=True`): the client found by discovery, its
/// default client authentication for a secret (`client_secret_post`), its
/// own ES256 key, and its `client_credentials` auth handler, which gets the
/// token once and signs a proof (with `ath`, and an `htu` with the query)
/// for each request. Prints the token and its key's thumbprint, the
/// client authentication class, and each poll's status and body.
const REQUESTS_OAUTH2CLIENT_DPOP: &str = r#"
import json, sys, requests
from requests_oauth2client import OAuth2Client, OAuth2ClientCredentialsAuth
issuer, client_id, client_secret, actions_url = sys.argv[1:5]
# testing=True only lifts the library's https-only rule: the server is on loopback http.
client = OAuth2Client.from_discovery_endpoint(
    issuer=issuer, client_id=client_id, client_secret=client_secret, testing=True,
    dpop_bound_access_tokens=True)
auth = OAuth2ClientCredentialsAuth(client)
polls = [requests.get(actions_url + "?wait=1", auth=auth) for _ in range(3)]
token = auth.token
print(json.dumps({"client_auth": type(client.auth).__name__, "token_class": type(token).__name__,
                  "token_type": token.token_type, "access_token": token.access_token,
                  "jkt": token.dpop_key.dpop_jkt, "polls": [[r.status_code, r.text] for r in polls]}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_oauth2client_gets_a_dpop_bound_token_and_polls_with_its_proofs() {
    let (_signer, jwks) = client_key(Algorithm::ES256);
    let server = TestServer::start(&test_config(&jwks)).await;
    let plane =
        ControlPlane::start(&["--issuer", &server.url, "--audience", AUDIENCE, "--require-dpop"]).await;
    let out = e2e::tools::run_python(
        REQUESTS_OAUTH2CLIENT_DPOP,
        &[&server.url, SECRET_CLIENT, SECRET, &plane.actions_url],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let printed: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(printed["client_auth"], "ClientSecretPost", "{printed}");
    assert_eq!(printed["token_class"], "DPoPToken", "{printed}");
    assert_eq!(printed["token_type"], "DPoP", "{printed}");
    let token = printed["access_token"].as_str().unwrap();
    let claims = server.verify(token).await;
    assert_eq!(claims.sub, SECRET_CLIENT);
    assert_eq!(
        claims.cnf.and_then(|cnf| cnf.jkt).as_deref(),
        printed["jkt"].as_str(),
        "bound to the library's key"
    );
    for poll in printed["polls"].as_array().unwrap() {
        assert_eq!(poll[0], 200, "{poll}");
        let body: Value = serde_json::from_str(poll[1].as_str().unwrap()).unwrap();
        assert_eq!(body["connector"], SECRET_CLIENT);
    }
    assert_eq!(server.tokens_issued(), 1, "one token for the three polls");
    // The check is real: the same token as Bearer is refused.
    let response = e2e::http()
        .get(&plane.actions_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
