//! KMS signing through the real AWS SDK against moto_server: ES256 and RS256
//! tokens from a server whose `[signing] kind = "kms"` verify with oidc-core,
//! PyJWT and jose; the kid is the thumbprint of the `GetPublicKey` key; one
//! KMS call per token. PS256 and EdDSA (which moto cannot do faithfully)
//! are checked for request shape and signature conversion against answers
//! made with local keys, and proven by strict verification.

use std::sync::Arc;

use base64::Engine as _;
use e2e::fault_proxy::{FaultProxy, Mode};
use e2e::moto::{self, Moto};
use e2e::tools::{verify_with_jose, verify_with_pyjwt};
use e2e::{TestServer, AUDIENCE, SECRET_CLIENT};
use oidc_core::keys::der;
use oidc_core::keys::{KmsOptions, KmsSigner, LocalSigner, Signer};
use oidc_core::{
    AccessTokenClaims, Algorithm, Issuer, JwkSet, KeySet, Lifetime, Policy, TokenRequest, Verifier,
};
use oidc_server::ServiceContext;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&oidc_core::base64url::decode(part).unwrap()).unwrap()
}

/// A server signing with the KMS key `key_id`, reaching KMS through `endpoint`.
pub(crate) async fn kms_server(endpoint: &str, signing: &str) -> TestServer {
    let context = ServiceContext {
        sdk_config: Some(moto::sdk_config_for(endpoint).await),
        ..Default::default()
    };
    TestServer::builder(&e2e::test_config_with_signing(signing))
        .context(context)
        .start()
        .await
}

async fn kms_tokens_verify_everywhere(key_spec: &str, alg: &str) {
    let moto = Moto::shared();
    let direct = moto.sdk_config().await;
    let alias = moto::create_signing_key(&direct, key_spec).await;
    let proxy = FaultProxy::start(&moto.endpoint).await;
    let server = kms_server(
        &proxy.endpoint,
        &format!("[signing]\nkind = \"kms\"\nkey_id = \"{alias}\"\n"),
    )
    .await;

    let token = server.token().await;
    let head = header(&token);
    assert_eq!(head["alg"], alg);
    assert_eq!(head["typ"], "at+jwt");

    // kid = RFC 7638 thumbprint of the key GetPublicKey returns.
    let public = aws_sdk_kms::Client::new(&direct)
        .get_public_key()
        .key_id(&alias)
        .send()
        .await
        .unwrap();
    let key = der::spki_public_key(public.public_key().unwrap().as_ref()).unwrap();
    assert_eq!(head["kid"], key.thumbprint());

    let claims = server.verify(&token).await;
    assert_eq!(claims.sub, SECRET_CLIENT);
    verify_with_pyjwt(&server.jwks_url(), &server.url, AUDIENCE, &token)
        .await
        .unwrap_or_else(|out| panic!("PyJWT refused a KMS {alg} token: {}", out.stderr));
    verify_with_jose(&server.jwks_url(), &server.url, AUDIENCE, &token)
        .await
        .unwrap_or_else(|out| panic!("jose refused a KMS {alg} token: {}", out.stderr));

    // Exactly one KMS call per token, and the public key is not fetched again.
    proxy.reset_counts();
    for _ in 0..10 {
        server.verify(&server.token().await).await;
    }
    assert_eq!(proxy.count("TrentService.Sign"), 10, "{:?}", proxy.counts());
    assert_eq!(proxy.count("TrentService.GetPublicKey"), 0);

    // KMS latency and outcome are metrics.
    let metrics = server.state.metrics().render();
    assert!(
        metrics.contains("aws_call_duration_seconds_count{operation=\"kms:Sign\",outcome=\"ok\"}"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn es256_tokens_signed_by_kms_verify_with_core_pyjwt_and_jose() {
    kms_tokens_verify_everywhere("ECC_NIST_P256", "ES256").await;
}

#[tokio::test]
async fn rs256_tokens_signed_by_kms_verify_with_core_pyjwt_and_jose() {
    kms_tokens_verify_everywhere("RSA_2048", "RS256").await;
}

#[tokio::test]
async fn a_key_that_does_not_exist_stops_the_server_from_starting() {
    let moto = Moto::shared();
    let config = oidc_server::Config::from_toml(
        &e2e::test_config_with_signing("[signing]\nkind = \"kms\"\nkey_id = \"alias/no-such-key\"\n"),
        oidc_server::config::Origin::File(std::env::temp_dir().join("x.toml")),
        std::iter::empty(),
        &oidc_server::config::Overrides {
            issuer: Some("http://127.0.0.1:1".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let context = ServiceContext {
        sdk_config: Some(moto.sdk_config().await),
        ..Default::default()
    };
    let error = oidc_server::keyset::key_set_with(&config, &context)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("NotFoundException"), "{error}");
}

/// DER for `len` in a TLV.
fn der_len(len: usize) -> Vec<u8> {
    match len {
        0..=0x7f => vec![len as u8],
        0x80..=0xff => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(der_len(content.len()));
    out.extend_from_slice(content);
    out
}

/// A KMS stand-in for one local key: answers GetPublicKey and Sign the way KMS
/// does, asserting the request shape the signer must send.
fn local_kms(
    arn: &'static str,
    spki: Vec<u8>,
    spec: &'static str,
    sign: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static,
) -> Mode {
    Mode::Respond(Arc::new(move |target: &str, body: &[u8]| {
        let request: Value = serde_json::from_slice(body).unwrap();
        match target {
            "TrentService.GetPublicKey" => Some((
                200,
                json!({"KeyId": arn, "PublicKey": B64.encode(&spki), "KeyUsage": "SIGN_VERIFY",
                       "SigningAlgorithms": [spec]})
                .to_string(),
            )),
            "TrentService.Sign" => {
                assert_eq!(request["KeyId"], arn, "signs with the ARN GetPublicKey named");
                assert_eq!(request["SigningAlgorithm"], spec);
                assert_eq!(request["MessageType"], "RAW");
                let message = B64.decode(request["Message"].as_str().unwrap()).unwrap();
                Some((
                    200,
                    json!({"KeyId": arn, "Signature": B64.encode(sign(&message)), "SigningAlgorithm": spec})
                        .to_string(),
                ))
            }
            other => panic!("unexpected KMS call {other}"),
        }
    }))
}

async fn issue_and_verify(proxy: &FaultProxy, alg: Algorithm, expected_kid: &str) {
    let config = moto::sdk_config_for(&proxy.endpoint).await;
    let mut options = KmsOptions::default();
    options.algorithm = Some(alg);
    let signer = KmsSigner::connect(&aws_sdk_kms::Client::new(&config), "alias/local", options)
        .await
        .unwrap();
    assert_eq!(signer.kid(), expected_kid);
    assert_eq!(signer.algorithm(), alg);
    let jwks = JwkSet::from_keys([signer.verifying_key().clone()]).unwrap();
    let issuer = Issuer::new(
        "https://issuer.test",
        Arc::new(KeySet::single(Arc::new(signer))),
        Lifetime::default(),
    )
    .unwrap();
    let issued = issuer
        .issue(&TokenRequest::new("connector-1", AUDIENCE))
        .await
        .unwrap();
    let policy = Policy::builder("https://issuer.test", [AUDIENCE])
        .build()
        .unwrap();
    Verifier::new(policy, jwks)
        .verify::<AccessTokenClaims>(issued.token.as_str())
        .await
        .unwrap_or_else(|e| panic!("{alg} token through the KMS signer refused: {e}"));
    assert_eq!(proxy.count("TrentService.Sign"), 1);
}

#[tokio::test]
async fn ps256_kms_requests_are_raw_pss_and_their_signatures_verify_strictly() {
    let pem = std::fs::read_to_string(e2e::workspace_path("oidc-core/tests/keys/rsa2048.pem")).unwrap();
    let der = pem::parse(&pem).unwrap().into_contents();
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let algorithm_id = tlv(
        0x30,
        &[
            tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
            vec![0x05, 0x00],
        ]
        .concat(),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(ring::signature::KeyPair::public_key(&key).as_ref());
    let spki = tlv(0x30, &[algorithm_id, tlv(0x03, &bits)].concat());
    let expected = LocalSigner::from_pem_with_algorithm(&pem, Some(Algorithm::PS256)).unwrap();

    let proxy = FaultProxy::start("http://127.0.0.1:9").await;
    proxy.set(local_kms(
        "arn:aws:kms:us-east-1:000000000000:key/local-rsa",
        spki,
        "RSASSA_PSS_SHA_256",
        move |m| {
            let mut out = vec![0u8; key.public().modulus_len()];
            key.sign(
                &ring::signature::RSA_PSS_SHA256,
                &ring::rand::SystemRandom::new(),
                m,
                &mut out,
            )
            .unwrap();
            out
        },
    ));
    issue_and_verify(&proxy, Algorithm::PS256, expected.kid()).await;
}

#[tokio::test]
async fn eddsa_kms_requests_are_raw_ed25519_and_their_signatures_verify_strictly() {
    let (local, pem) = LocalSigner::generate(Algorithm::EdDSA).unwrap();
    let der = pem::parse(pem.as_str()).unwrap().into_contents();
    let key = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der).unwrap();
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(ring::signature::KeyPair::public_key(&key).as_ref());

    let proxy = FaultProxy::start("http://127.0.0.1:9").await;
    proxy.set(local_kms(
        "arn:aws:kms:us-east-1:000000000000:key/local-ed25519",
        spki,
        "ED25519_SHA_512",
        move |m| key.sign(m).as_ref().to_vec(),
    ));
    issue_and_verify(&proxy, Algorithm::EdDSA, local.kid()).await;
}

/// moto's RSA-PSS uses the maximum salt length, which strict verifiers refuse
/// (DESIGN.md's list of moto's gaps): the signer checks each signature against
/// the public key, so such an answer becomes an error, never a token.
#[tokio::test]
async fn a_signature_that_would_not_verify_never_becomes_a_token() {
    let moto = Moto::shared();
    let config = moto.sdk_config().await;
    let alias = moto::create_signing_key(&config, "RSA_2048").await;
    let mut options = KmsOptions::default();
    options.algorithm = Some(Algorithm::PS256);
    let signer = KmsSigner::connect(&aws_sdk_kms::Client::new(&config), &alias, options)
        .await
        .unwrap();
    let error = signer.sign(b"header.payload").await.unwrap_err();
    assert!(error.to_string().contains("does not verify"), "{error}");
}
