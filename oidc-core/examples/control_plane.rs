//! An example control plane: connectors poll it for work, and every poll must
//! carry an access token that it verifies through the issuer's discovery
//! document and JWKS, or, with `--trust FILE`, through the registry of
//! trusted issuers in that file (one entry per customer's token service).
//!
//! Run:
//!
//! ```sh
//! cargo run -p oidc-core --example control_plane --features remote,axum -- \
//!     --issuer http://127.0.0.1:8080 --audience https://api.example.com [--listen 127.0.0.1:9090]
//! # or, many issuers (the [[issuers]] format of oidc_core::verify::trust::file):
//! cargo run -p oidc-core --example control_plane --features remote,axum -- --trust trust.toml
//! # either one, with repeated tokens served from a cache of 100,000 verifications:
//! #   ... --verification-cache 100000
//! # only DPoP-bound tokens (RFC 9449), each poll with a proof of its key
//! # (under --trust, per entry: dpop = "required"):
//! #   ... --require-dpop [--public-url https://api.example.com]
//! ```
//!
//! Then `GET /v1/actions` with `Authorization: Bearer <token>` (or
//! `Authorization: DPoP <token>` and a `DPoP` proof for `GET
//! <public-url>/v1/actions`) answers
//! `200 {"connector": "<sub>", "actions": [{"id": "...", "kind": "..."}]}`
//! (with `"issuer": "<entry name>"` under `--trust`), or
//! `401` with `WWW-Authenticate: Bearer error="invalid_token"`,
//! `DPoP error="invalid_dpop_proof"` (a bad proof; a DPoP-bound token as
//! `Bearer` is refused too), or the bare challenges without credentials, and
//! an empty body. Why a token was refused is logged (`RUST_LOG=debug` for
//! everything).

use std::net::SocketAddr;
use std::process::ExitCode;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use serde::Serialize;
use tracing_subscriber::EnvFilter;

use oidc_core::axum::{
    shared_verifier, shared_verifier_with_cache, DpopResource, DpopToken, DpopTrustedToken, SharedDpop,
    SharedVerifier,
};
use oidc_core::dpop::{DpopMode, DpopVerifier};
use oidc_core::verify::trust::TrustedIssuers;
use oidc_core::verify::{RemoteJwks, VerificationCache};
use oidc_core::{AccessTokenClaims, Policy};

/// Verifies connector tokens and hands out pending actions.
#[derive(Debug, Parser)]
struct Args {
    /// The token issuer: the exact `iss` of accepted tokens, and where its
    /// OpenID Connect discovery document is found.
    #[arg(
        long,
        env = "CONTROL_PLANE_ISSUER",
        required_unless_present = "trust",
        conflicts_with = "trust"
    )]
    issuer: Option<String>,
    /// An accepted audience (`aud`); repeat for several.
    #[arg(
        long = "audience",
        env = "CONTROL_PLANE_AUDIENCE",
        required_unless_present = "trust"
    )]
    audiences: Vec<String>,
    /// Trust the issuers of this TOML file instead (`[[issuers]]` entries
    /// with name, issuer, audiences, ...); each token is checked against the
    /// entry its `iss` names.
    #[arg(
        long,
        env = "CONTROL_PLANE_TRUST",
        value_name = "FILE",
        conflicts_with = "audiences"
    )]
    trust: Option<std::path::PathBuf>,
    /// Serve repeated tokens (a connector polls with the same token until it
    /// refreshes it) from a cache of this many verifications; 0: off.
    #[arg(
        long,
        env = "CONTROL_PLANE_VERIFICATION_CACHE",
        default_value_t = 0,
        value_name = "ENTRIES"
    )]
    verification_cache: usize,
    /// Accept only DPoP-bound tokens, each poll with a proof of its key
    /// (RFC 9449); without it both bearer and DPoP-bound tokens are
    /// accepted, each in its own scheme. With --trust, set `dpop =
    /// "required"` per entry instead.
    #[arg(long, env = "CONTROL_PLANE_REQUIRE_DPOP", conflicts_with = "trust")]
    require_dpop: bool,
    /// The origin connectors address this service by, which DPoP proofs
    /// name (`htu`); default `http://<listen>`.
    #[arg(long, env = "CONTROL_PLANE_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Address to listen on.
    #[arg(long, env = "CONTROL_PLANE_LISTEN", default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
}

/// A single issuer's verifier and the DPoP settings.
#[derive(Clone)]
pub struct Single {
    verifier: SharedVerifier,
    dpop: SharedDpop,
}

impl FromRef<Single> for SharedVerifier {
    fn from_ref(state: &Single) -> Self {
        state.verifier.clone()
    }
}

impl FromRef<Single> for SharedDpop {
    fn from_ref(state: &Single) -> Self {
        state.dpop.clone()
    }
}

/// The trusted issuers and the DPoP settings.
#[derive(Clone)]
pub struct Many {
    trusted: TrustedIssuers,
    dpop: SharedDpop,
}

impl FromRef<Many> for TrustedIssuers {
    fn from_ref(state: &Many) -> Self {
        state.trusted.clone()
    }
}

impl FromRef<Many> for SharedDpop {
    fn from_ref(state: &Many) -> Self {
        state.dpop.clone()
    }
}

/// The answer to a poll.
#[derive(Debug, Serialize)]
struct Actions {
    /// The verified `sub`.
    connector: String,
    /// The trusted issuer entry that vouched for it (with `--trust`).
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    actions: Vec<Action>,
}

#[derive(Debug, Serialize)]
struct Action {
    id: String,
    kind: &'static str,
}

/// The service; public so that tests can drive it without a socket.
pub fn app(verifier: SharedVerifier, dpop: SharedDpop) -> Router {
    Router::new()
        .route("/v1/actions", get(pending_actions))
        .with_state(Single { verifier, dpop })
}

/// The service verifying against a registry of trusted issuers.
pub fn trusted_app(trusted: TrustedIssuers, dpop: SharedDpop) -> Router {
    Router::new()
        .route("/v1/actions", get(pending_actions_trusted))
        .with_state(Many { trusted, dpop })
}

async fn pending_actions(DpopToken(request): DpopToken<AccessTokenClaims>) -> Json<Actions> {
    let (token, jkt) = (request.token(), request.proof().map(|p| p.jkt()));
    tracing::info!(connector = %token.claims().sub, jti = %token.claims().jti, kid = token.kid(), jkt, "poll");
    Json(actions_for(token.claims(), None))
}

async fn pending_actions_trusted(
    DpopTrustedToken(request): DpopTrustedToken<AccessTokenClaims>,
) -> Json<Actions> {
    let (token, jkt) = (request.token(), request.proof().map(|p| p.jkt()));
    let (claims, issuer) = (token.claims(), token.issuer_name());
    tracing::info!(issuer, connector = %claims.sub, jti = %claims.jti, kid = token.verified().kid(), jkt, "poll");
    Json(actions_for(claims, Some(issuer)))
}

fn actions_for(claims: &AccessTokenClaims, issuer: Option<&str>) -> Actions {
    // A real control plane would read a queue; a fixed list shows the shape.
    let actions = [("collect_inventory", 1), ("report_health", 2)]
        .into_iter()
        .map(|(kind, n)| Action {
            id: format!("{}-{n}", claims.sub),
            kind,
        })
        .collect();
    Actions {
        connector: claims.sub.clone(),
        issuer: issuer.map(str::to_owned),
        actions,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("control_plane: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let cache = (args.verification_cache > 0).then(|| VerificationCache::new(args.verification_cache));
    let origin = args
        .public_url
        .unwrap_or_else(|| format!("http://{}", args.listen));
    // Proofs' jtis are remembered by this process only (see oidc_core::dpop).
    let dpop = Arc::new(DpopResource::new(&origin, DpopVerifier::builder().build()?)?);
    let app = match (args.trust, args.issuer) {
        (Some(file), _) => {
            // Nothing is fetched until an issuer's first token.
            let mut builder = TrustedIssuers::from_toml_file(&file)?;
            if let Some(cache) = cache {
                builder = builder.verification_cache(cache);
            }
            let trusted = builder.build()?;
            tracing::info!(issuers = trusted.static_entries().count(), file = %file.display(), "trusted issuers loaded");
            trusted_app(trusted, dpop)
        }
        (None, Some(issuer)) => {
            let keys = RemoteJwks::discovery(issuer.clone()).build()?;
            // Warm the cache so that a wrong issuer shows up now; a token service that
            // is not up yet is not fatal: lookups fetch again (once per cooldown).
            match keys.refresh().await {
                Ok(()) => tracing::info!(keys = keys.status().keys, issuer = %issuer, "JWKS loaded"),
                Err(error) => tracing::warn!(%error, "JWKS not loaded yet"),
            }
            let mode = if args.require_dpop {
                DpopMode::Required
            } else {
                DpopMode::Allowed
            };
            let policy = Policy::builder(issuer, args.audiences).dpop(mode).build()?;
            tracing::info!(dpop = %mode, origin = dpop.origin(), "DPoP");
            let verifier = match cache {
                Some(cache) => shared_verifier_with_cache(policy, keys, cache),
                None => shared_verifier(policy, keys),
            };
            app(verifier, dpop)
        }
        (None, None) => return Err("give --issuer and --audience, or --trust".into()),
    };
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "control plane listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
