//! The connector's cost per request of DPoP: one request through
//! `BearerAuth` with a bearer token beside the same with a DPoP-bound token
//! (a fresh ES256 proof with `ath` per request), and the proof alone.
//!
//! Run: `cargo bench -p connector-client --bench dpop`
//!
//! No network: the request ends at a last middleware that answers 200
//! itself, so the figures are the middleware's own work (token read, the
//! `Authorization` header, the proof) plus reqwest-middleware's dispatch.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connector_client::{AccessToken, BearerAuth, DpopKey, DpopProof, Error, TokenSource};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Extensions;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};

/// A realistic access token: ES256 JWT with a few private claims.
fn jwt() -> String {
    format!(
        "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjEyMyJ9.{}.{}",
        "x".repeat(520),
        "s".repeat(86)
    )
}

struct Fixed(AccessToken);

#[async_trait]
impl TokenSource for Fixed {
    async fn token(&self) -> Result<AccessToken, Error> {
        Ok(self.0.clone())
    }
}

/// Answers 200 without sending anything.
struct Answer;

#[async_trait]
impl Middleware for Answer {
    async fn handle(
        &self,
        request: reqwest::Request,
        _: &mut Extensions,
        _: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        std::hint::black_box(request.headers());
        Ok(reqwest::Response::from(http::Response::new(Vec::<u8>::new())))
    }
}

fn client(token: AccessToken) -> ClientWithMiddleware {
    // reqwest here has no default TLS provider: build through the crate's builder.
    #[allow(clippy::unwrap_used)] // A bench that cannot build its client has nothing to measure.
    let http = connector_client::http_client_builder().unwrap().build().unwrap();
    ClientBuilder::new(http)
        .with(BearerAuth::new(Fixed(token)))
        .with(Answer)
        .build()
}

#[allow(clippy::unwrap_used)] // A failed request in a bench is a bug to see at once.
fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let key = Arc::new(DpopKey::generate().unwrap());
    let bearer = client(AccessToken::new(jwt(), Duration::from_secs(3600)));
    let bound = client(AccessToken::new(jwt(), Duration::from_secs(3600)).with_dpop_key(key.clone()));
    let url = "https://control.example.com/v1/actions?wait=20";
    let mut group = c.benchmark_group("middleware");
    group.bench_function("bearer", |b| {
        b.iter(|| runtime.block_on(bearer.get(url).send()).unwrap())
    });
    group.bench_function("dpop", |b| {
        b.iter(|| runtime.block_on(bound.get(url).send()).unwrap())
    });
    let token = jwt();
    group.bench_function("proof_sign", |b| {
        b.iter(|| {
            DpopProof::builder(&key, "GET", url)
                .access_token(&token)
                .sign()
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
