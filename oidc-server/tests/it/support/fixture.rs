//! The test connectors, the configuration that registers them, the router
//! state built from it, and the client assertions they sign.
//!
//! This one file serves two test suites: oidc-server's own tests compile it
//! as `support::fixture`, and the end-to-end package (`tests/`, named `e2e`)
//! compiles it with `#[path]` and re-exports it from its crate root. The `e2e`
//! package depends on oidc-server, so oidc-server's tests cannot depend on it;
//! sharing the file keeps one copy of the test configuration for both.
//! It may only use what both packages depend on (oidc-core, oidc-server,
//! hex, ring, serde_json, toml).

use std::sync::Arc;

use oidc_core::clock::WallClock;
use oidc_core::jws::{self, Header};
use oidc_core::keys::{LocalSigner, Signer};
use oidc_core::{Algorithm, KeySet};
use oidc_server::config::{Config, Origin, Overrides};
use oidc_server::AppState;
use oidc_server::ServiceContext;

/// A connector of the test configuration that authenticates with a secret.
pub const SECRET_CLIENT: &str = "connector-secret";
/// Its secret.
pub const SECRET: &str = "test-secret-0123456789abcdefghijklmnopqrstuv";
/// A connector that authenticates with `private_key_jwt`.
pub const JWT_CLIENT: &str = "connector-jwt";
/// The default audience of the test connectors.
pub const AUDIENCE: &str = "https://control-plane.test";
/// A second audience they may ask for.
pub const OTHER_AUDIENCE: &str = "https://other.test";
/// The `client_assertion_type` of `private_key_jwt` (RFC 7523).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A connector with `dpop = "required"` (RFC 9449) and [`SECRET_CLIENT`]'s
/// secret, not in [`test_config`]: [`dpop_required_connector`] is its entry.
pub const DPOP_CLIENT: &str = "connector-dpop";

/// The `[[connectors]]` entry of [`DPOP_CLIENT`] (audience [`AUDIENCE`]),
/// to append to a configuration.
pub fn dpop_required_connector() -> String {
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, SECRET.as_bytes()));
    format!(
        r#"
[[connectors]]
id = "{DPOP_CLIENT}"
secret_sha256 = "{digest}"
audiences = ["{AUDIENCE}"]
dpop = "required"
"#
    )
}

/// A client key for `private_key_jwt` tests, with its public JWKS.
pub fn client_key(alg: Algorithm) -> (LocalSigner, serde_json::Value) {
    let (signer, _pem) = LocalSigner::generate(alg).expect("generate a client key");
    let jwks = serde_json::json!({ "keys": [serde_json::Value::Object(signer.verifying_key().to_jwk())] });
    (signer, jwks)
}

/// The standard test configuration: an ES256 key generated at start, a
/// connector with a secret and one with `private_key_jwt` (public keys `jwks`).
/// Its `issuer` is a placeholder: [`app_state`] is given the real one.
pub fn test_config(jwks: &serde_json::Value) -> String {
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, SECRET.as_bytes()));
    // An inline table, so that it belongs to the connector above it.
    let jwks = toml::Value::try_from(jwks).expect("JWKS as TOML");
    format!(
        r#"
issuer = "http://placeholder.invalid"

[signing]
kind = "local"
generate = "ES256"

[auth]
failure_limit = 5
failure_window_secs = 60

[[connectors]]
id = "{SECRET_CLIENT}"
secret_sha256 = "{digest}"
audiences = ["{AUDIENCE}", "{OTHER_AUDIENCE}"]
scopes = ["actions:read", "actions:write"]
default_scopes = ["actions:read"]
attributes = {{ org_id = "org-1", account_id = "123456789012" }}

[[connectors]]
id = "{JWT_CLIENT}"
audiences = ["{AUDIENCE}"]
scopes = ["actions:read"]
jwks = {jwks}
"#
    )
}

/// What the router state is built from besides its configuration.
#[derive(Default)]
pub struct StateSetup {
    /// Signing keys; `None` builds them from the config with `context`.
    pub keys: Option<Arc<KeySet>>,
    /// Clock; `None` is the system clock.
    pub clock: Option<Arc<dyn WallClock>>,
    /// What building the keys needs (an SDK configuration for the emulator);
    /// its metrics become the state's.
    pub context: ServiceContext,
    /// Replay store; `None` is the one the config asks for.
    pub replay: Option<Arc<dyn oidc_server::replay::ReplayStore>>,
}

/// The router state for the config `toml` with `overrides` applied (the
/// issuer, and the listen address of a server on a socket).
pub async fn app_state(toml: &str, overrides: &Overrides, setup: StateSetup) -> AppState {
    let config = Config::from_toml(
        toml,
        Origin::File(std::env::temp_dir().join("test-config.toml")),
        std::iter::empty(),
        overrides,
    )
    .unwrap_or_else(|e| panic!("test config is invalid: {e}"));
    let config = Arc::new(config);
    let (keys, poller) = match setup.keys {
        Some(keys) => (keys, None),
        None => {
            let keys = oidc_server::keyset::signing_keys(&config, &setup.context)
                .await
                .expect("signing keys");
            (keys.keys, keys.poller)
        }
    };
    let replay = match setup.replay {
        Some(replay) => replay,
        None => oidc_server::replay::store_for(&config, &setup.context)
            .await
            .expect("replay store"),
    };
    let mut builder = AppState::builder(config, keys)
        .replay_store(replay)
        .metrics(setup.context.metrics.clone());
    // A shared key set's poller, as `AppState::start` keeps it: a host that
    // polls on demand reaches it through the state.
    if let Some(poller) = poller {
        builder = builder.key_poller(poller);
    }
    if let Some(clock) = setup.clock {
        builder = builder.clock(clock);
    }
    builder.build()
}

/// Seconds since the Unix epoch, for assertion claims.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// A client assertion: `claims` signed by `signer` with header `typ`.
pub async fn assertion(signer: &LocalSigner, typ: &str, claims: serde_json::Value) -> String {
    let header = Header::encode(signer.algorithm(), typ, signer.kid());
    jws::sign(&header, claims.to_string().as_bytes(), signer)
        .await
        .expect("sign a client assertion")
}

/// Claims of a valid [`JWT_CLIENT`] assertion for the issuer `audience`: a
/// fresh `jti`, issued now, expiring in a minute.
pub fn good_claims(audience: &str) -> serde_json::Value {
    let now = now();
    serde_json::json!({
        "iss": JWT_CLIENT, "sub": JWT_CLIENT, "aud": audience,
        "jti": oidc_core::Jti::random().expect("a random jti").as_str(), "iat": now, "exp": now + 60,
    })
}
