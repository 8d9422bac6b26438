//! DESIGN.md's security catalog, the items about tokens, headers,
//! serialization, signatures, claims and JWKS parsing: one test each, each
//! asserting the specific reason for the refusal. Every token here is validly
//! signed unless the signature is what is under test, so the one defect is
//! the only possible reason.
//!
//! The exp/nbf/iat boundaries at the leeway edge are in `roundtrip.rs`; remote
//! JWKS behaviour (body cap, status, timeouts, kid floods) belongs to the
//! remote key source's tests.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use oidc_core::base64url::Base64Error;
use oidc_core::json::{JsonError, MAX_DEPTH};
use oidc_core::jwks::{JwkSetError, MAX_KEYS};
use oidc_core::jws::{JwsError, Part, DEFAULT_MAX_LEN};
use oidc_core::keys::{KeyError, PublicKey, SignatureError, Signer, VerifyingKey};
use oidc_core::{
    AccessTokenClaims, Algorithm, AlgorithmError, JwkSet, KeyLookupError, KeySource, Policy, Verifier,
    VerifyError,
};
use serde_json::{json, Value};

use crate::helpers::*;

fn malformed(error: JwsError) -> VerifyError {
    VerifyError::Malformed(error)
}

fn unknown_kid(kid: &str) -> VerifyError {
    VerifyError::Key(KeyLookupError::unknown(kid))
}

// ---------------------------------------------------------------- header: alg

#[tokio::test]
async fn alg_none_in_any_case_is_refused() {
    let f = Fixture::es256();
    for none in ["none", "None", "NONE", "nOnE"] {
        let mut header = f.header();
        header["alg"] = json!(none);
        // As an attacker sends it (empty signature) and with a real one.
        let unsigned = format!("{}.{}.", b64(header.to_string()), b64(f.claims().to_string()));
        let signed = f.token(&header, &f.claims());
        for token in [unsigned, signed] {
            assert_eq!(
                f.refusal(&token).await,
                malformed(JwsError::Algorithm(AlgorithmError::None)),
                "{none}"
            );
        }
    }
}

#[tokio::test]
async fn alg_missing_is_refused() {
    let f = Fixture::es256();
    let token = f.token_header(|h| remove(h, "alg"));
    assert_eq!(f.refusal(&token).await, malformed(JwsError::MissingAlg));
}

#[tokio::test]
async fn alg_not_a_string_is_refused() {
    let f = Fixture::es256();
    for alg in [
        json!(256),
        json!(null),
        json!(["ES256"]),
        json!({"name": "ES256"}),
        json!(true),
    ] {
        let token = f.token_header(|h| h["alg"] = alg.clone());
        assert_eq!(
            f.refusal(&token).await,
            malformed(JwsError::HeaderMemberType {
                member: "alg",
                expected: "a string"
            }),
            "{alg}"
        );
    }
}

#[tokio::test]
async fn alg_not_allowed_for_the_key_is_refused() {
    // The same RSA key signs an RS256 token, but the published key is pinned
    // to PS256: the header may not choose another algorithm for it.
    let (rs256, _) = signer(Algorithm::RS256);
    let mut f = Fixture::new(Algorithm::PS256);
    assert_eq!(rs256.kid(), f.kid());
    f.signer = Arc::new(rs256);
    let token = f.valid_token();
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::Signature(SignatureError::AlgorithmMismatch {
            token: Algorithm::RS256,
            key: Algorithm::PS256
        })
    );

    // Another family named over an ES256 key.
    let f = Fixture::es256();
    let token = f.token_header(|h| h["alg"] = json!("EdDSA"));
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::Signature(SignatureError::AlgorithmMismatch {
            token: Algorithm::EdDSA,
            key: Algorithm::ES256
        })
    );

    // ES384 is implemented: over an ES256 key it is another curve's algorithm.
    let token = f.token_header(|h| h["alg"] = json!("ES384"));
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::Signature(SignatureError::AlgorithmMismatch {
            token: Algorithm::ES384,
            key: Algorithm::ES256
        })
    );

    // And names we do not implement at all (one with a multi-byte character
    // where "HS" would be, which once made the name check panic).
    for alg in ["ES512", "RS512", "H\u{e9}256", "ES256 "] {
        let token = f.token_header(|h| h["alg"] = json!(alg));
        assert_eq!(
            f.refusal(&token).await,
            malformed(JwsError::Algorithm(AlgorithmError::Unsupported(alg.into())))
        );
    }
}

#[tokio::test]
async fn hmac_with_the_public_key_as_secret_is_refused() {
    // The classic confusion attack: MAC the token with what the verifier
    // publishes (the JWKS, the JWK, the raw point) and call it HS256.
    let f = Fixture::es256();
    let jwk = Value::Object(f.signer.verifying_key().to_jwk()).to_string();
    let PublicKey::P256(point) = f.signer.verifying_key().public_key().clone() else {
        unreachable!("an ES256 key")
    };
    let jwks = f.jwks.to_json();
    let secrets: [&[u8]; 3] = [jwks.as_bytes(), jwk.as_bytes(), &point];
    for (name, algorithm) in [
        ("HS256", ring::hmac::HMAC_SHA256),
        ("HS384", ring::hmac::HMAC_SHA384),
        ("HS512", ring::hmac::HMAC_SHA512),
    ] {
        for secret in secrets {
            let mut header = f.header();
            header["alg"] = json!(name);
            let input = format!("{}.{}", b64(header.to_string()), b64(f.claims().to_string()));
            let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, secret), input.as_bytes());
            let token = format!("{input}.{}", b64(tag));
            assert_eq!(
                f.refusal(&token).await,
                malformed(JwsError::Algorithm(AlgorithmError::Symmetric(name.into())))
            );
        }
    }
}

// ------------------------------------------------- header: keys from the token

#[tokio::test]
async fn embedded_jwk_is_refused() {
    // The attacker signs with their own key and embeds its JWK, under their
    // kid and under the victim's.
    let f = Fixture::es256();
    let attacker = Fixture::es256();
    let attacker_jwk = Value::Object(attacker.signer.verifying_key().to_jwk());
    for kid in [attacker.kid(), f.kid()] {
        let token = attacker.token_header(|h| {
            h["jwk"] = attacker_jwk.clone();
            h["kid"] = json!(kid);
        });
        assert_eq!(
            f.refusal(&token).await,
            malformed(JwsError::ForbiddenHeader("jwk"))
        );
    }
}

/// A key source that counts how often it is asked.
struct Counting {
    inner: JwkSet,
    lookups: AtomicUsize,
}

#[async_trait]
impl KeySource for Counting {
    async fn key(&self, kid: &str) -> Result<Arc<VerifyingKey>, KeyLookupError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.key(kid).await
    }

    fn is_current(&self, key: &Arc<VerifyingKey>) -> bool {
        self.inner.is_current(key)
    }
}

#[tokio::test]
async fn jku_and_x5u_are_refused_without_any_request() {
    let f = Fixture::es256();
    // Something listening where the header points: it must never hear from us.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/jwks.json", listener.local_addr().expect("addr"));
    let keys = Arc::new(Counting {
        inner: f.jwks.clone(),
        lookups: AtomicUsize::new(0),
    });
    let verifier = Verifier::new(Fixture::policy(), keys.clone()).with_clock(f.clock.clone());

    for member in ["jku", "x5u"] {
        let token = f.token_header(|h| h[member] = json!(url));
        let error = verifier.verify::<AccessTokenClaims>(&token).await.unwrap_err();
        assert_eq!(error, malformed(JwsError::ForbiddenHeader(member)));
    }
    assert_eq!(keys.lookups.load(Ordering::SeqCst), 0, "no key lookup at all");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "no connection to the jku/x5u URL"
    );
    // The same verifier does look keys up for a normal token.
    verifier
        .verify::<AccessTokenClaims>(&f.valid_token())
        .await
        .expect("valid token");
    assert_eq!(keys.lookups.load(Ordering::SeqCst), 1);

    // With the cache on: the same refusals, no lookup, no connection.
    let cached = Verifier::new(Fixture::policy(), keys.clone())
        .with_clock(f.clock.clone())
        .with_cache(f.cache.clone());
    for member in ["jku", "x5u"] {
        let token = f.token_header(|h| h[member] = json!(url));
        let expected = Err(malformed(JwsError::ForbiddenHeader(member)));
        same_with_cache(&cached, &f.cache, &token, &expected).await;
    }
    assert_eq!(keys.lookups.load(Ordering::SeqCst), 1);
    assert!(matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
}

#[tokio::test]
async fn x5c_is_refused() {
    let f = Fixture::es256();
    let token = f.token_header(|h| h["x5c"] = json!(["MIIBszCCAVmgAwIBAgIUQ=="]));
    assert_eq!(
        f.refusal(&token).await,
        malformed(JwsError::ForbiddenHeader("x5c"))
    );
}

#[tokio::test]
async fn odd_kid_is_just_an_unknown_key() {
    let f = Fixture::es256();
    let huge = "k".repeat(5000);
    let strings = [
        "../../../../etc/passwd",
        "/dev/zero",
        "file:///etc/shadow",
        "' OR '1'='1' --",
        "\"; DROP TABLE keys; --",
        "kid\u{0}with-nul",
        huge.as_str(),
    ];
    for kid in strings {
        let token = f.token_header(|h| h["kid"] = json!(kid));
        let error = f.refusal(&token).await;
        assert_eq!(error, unknown_kid(kid));
        assert_eq!(error.reason(), "unknown_kid");
        // Shortened in the error: an attacker does not choose what we log.
        assert!(error.to_string().len() < 100, "{error}");
    }

    // Key ids are strings; any other JSON type names no key either.
    for kid in [
        json!(42),
        json!(null),
        json!(true),
        json!(["kid"]),
        json!({"kid": f.kid()}),
    ] {
        let token = f.token_header(|h| h["kid"] = kid.clone());
        assert_eq!(f.refusal(&token).await, unknown_kid(&kid.to_string()), "{kid}");
    }
}

// --------------------------------------------------- header: processing rules

#[tokio::test]
async fn crit_is_refused() {
    let f = Fixture::es256();
    for crit in [json!(["exp"]), json!([]), json!(["b64"]), json!("exp")] {
        let token = f.token_header(|h| {
            h["crit"] = crit.clone();
            h["exp"] = json!(NOW);
        });
        assert_eq!(
            f.refusal(&token).await,
            malformed(JwsError::ForbiddenHeader("crit"))
        );
    }
}

#[tokio::test]
async fn b64_false_is_refused() {
    // RFC 7797 unencoded payload: the signature would cover different bytes.
    let f = Fixture::es256();
    for b64_value in [false, true] {
        let token = f.token_header(|h| h["b64"] = json!(b64_value));
        assert_eq!(
            f.refusal(&token).await,
            malformed(JwsError::ForbiddenHeader("b64"))
        );
    }
}

// ----------------------------------------------------------------- serialization

#[tokio::test]
async fn json_serialization_is_refused() {
    let f = Fixture::es256();
    let [header, payload, signature] = parts(&f.valid_token()).map(str::to_owned);
    let flattened = json!({ "protected": header, "payload": payload, "signature": signature }).to_string();
    let general =
        json!({ "payload": payload, "signatures": [{ "protected": header, "signature": signature }] })
            .to_string();
    for token in [flattened.clone(), general, format!(" \n{flattened}")] {
        assert_eq!(f.refusal(&token).await, malformed(JwsError::JsonSerialization));
    }
}

#[tokio::test]
async fn five_part_jwe_is_refused() {
    let f = Fixture::es256();
    let header =
        b64(json!({"alg": "RSA-OAEP", "enc": "A256GCM", "kid": f.kid(), "typ": "at+jwt"}).to_string());
    let jwe = format!(
        "{header}.{}.{}.{}.{}",
        b64([1u8; 256]),
        b64([2u8; 12]),
        b64([3u8; 40]),
        b64([4u8; 16])
    );
    assert_eq!(f.refusal(&jwe).await, malformed(JwsError::Jwe));
}

#[tokio::test]
async fn wrong_part_count_is_refused() {
    let f = Fixture::es256();
    let token = f.valid_token();
    let [header, payload, signature] = parts(&token);
    let cases = [
        (String::new(), 1),
        (header.to_owned(), 1),
        (format!("{header}.{payload}"), 2),
        (format!("{header}.{payload}.{signature}."), 4),
        (format!("{header}.{payload}.{signature}.{signature}"), 4),
        (
            format!("{header}.{payload}.{signature}.{signature}.{signature}.x"),
            6,
        ),
    ];
    for (token, count) in cases {
        assert_eq!(f.refusal(&token).await, malformed(JwsError::PartCount(count)));
    }
}

#[tokio::test]
async fn oversized_token_is_refused_before_decoding() {
    let f = Fixture::es256();
    // Garbage that would fail every later check: the size cap answers first.
    let garbage = "!".repeat(DEFAULT_MAX_LEN + 1);
    assert_eq!(
        f.refusal(&garbage).await,
        malformed(JwsError::TooLarge {
            len: DEFAULT_MAX_LEN + 1,
            max: DEFAULT_MAX_LEN
        })
    );
    // A validly signed token over the cap.
    let big = f.token_claims(|c| c["padding"] = json!("x".repeat(DEFAULT_MAX_LEN)));
    assert_eq!(
        f.refusal(&big).await,
        malformed(JwsError::TooLarge {
            len: big.len(),
            max: DEFAULT_MAX_LEN
        })
    );
    // Exactly at a configured cap is fine; one byte more is not.
    let token = f.valid_token();
    let at_cap = Policy::builder(ISSUER, [AUDIENCE])
        .max_token_len(token.len())
        .build()
        .expect("policy");
    f.verify_with(at_cap, &token).await.expect("at the cap");
    // (With the cache on, the entry made under the other policy is not served.)
    let below = Policy::builder(ISSUER, [AUDIENCE])
        .max_token_len(token.len() - 1)
        .build()
        .expect("policy");
    assert_eq!(
        f.verify_with(below, &token).await.unwrap_err(),
        malformed(JwsError::TooLarge {
            len: token.len(),
            max: token.len() - 1
        })
    );
}

#[tokio::test]
async fn padding_plus_slash_and_whitespace_in_base64url_are_refused() {
    let f = Fixture::es256();
    let token = f.valid_token();
    let [h, p, s] = parts(&token);
    let base64 = |part, error| malformed(JwsError::Base64 { part, error });
    let invalid = |offset, byte| Base64Error::InvalidCharacter { offset, byte };
    let cases = [
        (
            format!("{h}=.{p}.{s}"),
            base64(Part::Header, Base64Error::Padding),
        ),
        (
            format!("{h}.{p}==.{s}"),
            base64(Part::Payload, Base64Error::Padding),
        ),
        (
            format!("{h}.{p}.{s}=="),
            base64(Part::Signature, Base64Error::Padding),
        ),
        (
            format!("+{}.{p}.{s}", &h[1..]),
            base64(Part::Header, invalid(0, b'+')),
        ),
        (
            format!("{h}./{}.{s}", &p[1..]),
            base64(Part::Payload, invalid(0, b'/')),
        ),
        (
            format!("{h}.{p}.+{}", &s[1..]),
            base64(Part::Signature, invalid(0, b'+')),
        ),
        (
            format!("{h}.{p}./{}", &s[1..]),
            base64(Part::Signature, invalid(0, b'/')),
        ),
        (format!(" {h}.{p}.{s}"), base64(Part::Header, invalid(0, b' '))),
        (
            format!("{h}.{p}\n.{s}"),
            base64(Part::Payload, invalid(p.len(), b'\n')),
        ),
        (
            format!("{h}.{p}.{s}\r\n"),
            base64(Part::Signature, invalid(s.len(), b'\r')),
        ),
        (
            format!("{h}.{p}.{}\t{}", &s[..4], &s[4..]),
            base64(Part::Signature, invalid(4, b'\t')),
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(f.refusal(&token).await, expected, "{token:?}");
    }
}

#[tokio::test]
async fn non_canonical_trailing_bits_are_refused() {
    // A 64-byte signature is 86 symbols whose last carries 4 unused bits;
    // setting one gives a second spelling of the same bytes to lax decoders.
    let f = Fixture::es256();
    let token = f.valid_token();
    let [h, p, s] = parts(&token);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = s.as_bytes()[s.len() - 1];
    let value = ALPHABET.iter().position(|c| *c == last).expect("alphabet");
    assert_eq!(value & 0b1111, 0, "canonical to start with");
    let twin = ALPHABET[value | 1] as char;
    let token = format!("{h}.{p}.{}{twin}", &s[..s.len() - 1]);
    assert_eq!(
        f.refusal(&token).await,
        malformed(JwsError::Base64 {
            part: Part::Signature,
            error: Base64Error::NonCanonical
        })
    );
}

#[tokio::test]
async fn duplicate_json_members_are_refused() {
    let f = Fixture::es256();
    let header = format!(
        r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}","alg":"none"}}"#,
        f.kid()
    );
    let token = f.sign_raw(header.as_bytes(), f.claims().to_string().as_bytes());
    assert_eq!(
        f.refusal(&token).await,
        malformed(JwsError::Json {
            part: Part::Header,
            error: JsonError::DuplicateMember("alg".into())
        })
    );
    // In the claims, also when an escape spells the second name.
    for second in [r#""sub""#, r#""\u0073ub""#] {
        let claims = f.claims().to_string();
        let claims = format!(r#"{},{second}:"admin"}}"#, &claims[..claims.len() - 1]);
        let token = f.sign_raw(f.header().to_string().as_bytes(), claims.as_bytes());
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::Claims(JsonError::DuplicateMember("sub".into()))
        );
    }
}

#[tokio::test]
async fn invalid_utf8_is_refused() {
    let f = Fixture::es256();
    let mut header = format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}","x":""#, f.kid()).into_bytes();
    header.extend_from_slice(b"\xff\xfe\"}");
    let token = f.sign_raw(&header, f.claims().to_string().as_bytes());
    assert!(matches!(
        f.refusal(&token).await,
        VerifyError::Malformed(JwsError::Json {
            part: Part::Header,
            error: JsonError::Syntax(_)
        })
    ));

    let mut claims = f.claims().to_string().into_bytes();
    claims.truncate(claims.len() - 1);
    claims.extend_from_slice(b",\"org\":\"\xc3\x28\"}");
    let token = f.sign_raw(f.header().to_string().as_bytes(), &claims);
    assert!(matches!(
        f.refusal(&token).await,
        VerifyError::Claims(JsonError::Syntax(_))
    ));

    // A lone surrogate escape is not a character either.
    let mut claims = f.claims().to_string();
    claims.truncate(claims.len() - 1);
    claims.push_str(r#","org":"\ud800"}"#);
    let token = f.sign_raw(f.header().to_string().as_bytes(), claims.as_bytes());
    assert!(matches!(
        f.refusal(&token).await,
        VerifyError::Claims(JsonError::Syntax(_))
    ));
}

#[tokio::test]
async fn header_or_claims_that_are_not_objects_are_refused() {
    let f = Fixture::es256();
    let claims = f.claims().to_string();
    for header in [json!(["ES256", f.kid()]), json!("ES256"), json!(42), json!(null)] {
        let token = f.sign_raw(header.to_string().as_bytes(), claims.as_bytes());
        assert_eq!(
            f.refusal(&token).await,
            malformed(JwsError::Json {
                part: Part::Header,
                error: JsonError::NotAnObject
            })
        );
    }
    let header = f.header().to_string();
    for payload in [json!([f.claims()]), json!("connector-1"), json!(1), json!(null)] {
        let token = f.sign_raw(header.as_bytes(), payload.to_string().as_bytes());
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::Claims(JsonError::NotAnObject)
        );
    }
}

#[tokio::test]
async fn deep_nesting_is_refused() {
    let f = Fixture::es256();
    let nest = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
    let header = format!(
        r#"{{"alg":"ES256","typ":"at+jwt","kid":"{}","x":{}}}"#,
        f.kid(),
        nest(MAX_DEPTH)
    );
    let token = f.sign_raw(header.as_bytes(), f.claims().to_string().as_bytes());
    assert_eq!(
        f.refusal(&token).await,
        malformed(JwsError::Json {
            part: Part::Header,
            error: JsonError::TooDeep(MAX_DEPTH)
        })
    );

    let with_claim = |value: String| {
        let claims = f.claims().to_string();
        format!(r#"{},"deep":{value}}}"#, &claims[..claims.len() - 1])
    };
    // MAX_DEPTH levels in all (the claim set itself is the first) pass...
    let token = f.sign_raw(
        f.header().to_string().as_bytes(),
        with_claim(nest(MAX_DEPTH - 1)).as_bytes(),
    );
    f.verify(&token).await.expect("nesting at the limit");
    // ...one more does not, and neither does a nesting bomb.
    for depth in [MAX_DEPTH, 2000] {
        let token = f.sign_raw(
            f.header().to_string().as_bytes(),
            with_claim(nest(depth)).as_bytes(),
        );
        assert!(token.len() <= DEFAULT_MAX_LEN);
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::Claims(JsonError::TooDeep(MAX_DEPTH))
        );
    }
}

// -------------------------------------------------------------------- signatures

/// A valid ES256 signature with `r` or `s` replaced.
fn replace_scalar(signature: &[u8], index: usize, scalar: &[u8; 32]) -> Vec<u8> {
    let mut out = signature.to_vec();
    out[index * 32..index * 32 + 32].copy_from_slice(scalar);
    out
}

#[tokio::test]
async fn ecdsa_r_or_s_zero_or_not_below_n_is_refused() {
    let f = Fixture::es256();
    let token = f.valid_token();
    let signature = signature_of(&token);
    for index in [0, 1] {
        for scalar in [[0u8; 32], P256_ORDER, [0xff; 32]] {
            let forged = with_signature(&token, &replace_scalar(&signature, index, &scalar));
            assert_eq!(
                f.refusal(&forged).await,
                VerifyError::Signature(SignatureError::ScalarOutOfRange)
            );
        }
    }
}

#[tokio::test]
async fn ecdsa_der_signature_is_refused() {
    let f = Fixture::es256();
    let token = f.valid_token();
    let der = p1363_to_der(&signature_of(&token));
    assert_eq!(der_to_p1363(&der).map(|s| s.to_vec()), Some(signature_of(&token)));
    assert_eq!(
        f.refusal(&with_signature(&token, &der)).await,
        VerifyError::Signature(SignatureError::Length {
            expected: 64,
            found: der.len()
        })
    );
}

#[tokio::test]
async fn signature_of_wrong_length_is_refused() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let f = Fixture::new(alg);
        let token = f.valid_token();
        let signature = signature_of(&token);
        let expected = signature.len();
        let mut longer = signature.clone();
        longer.push(0);
        let mut prefixed = vec![0];
        prefixed.extend(&signature);
        for wrong in [vec![], signature[..expected - 1].to_vec(), longer, prefixed] {
            assert_eq!(
                f.refusal(&with_signature(&token, &wrong)).await,
                VerifyError::Signature(SignatureError::Length {
                    expected,
                    found: wrong.len()
                }),
                "{alg}"
            );
        }
    }
}

#[tokio::test]
async fn ecdsa_high_s_is_accepted() {
    // JOSE does not require low-S: (r, n - s) is as valid as (r, s).
    let f = Fixture::es256();
    let mut seen_high = false;
    for _ in 0..2 {
        let token = f.valid_token();
        let signature = signature_of(&token);
        let flipped = replace_scalar(&signature, 1, &sub_be(&P256_ORDER, &signature[32..]));
        for s in [&signature, &flipped] {
            seen_high |= s[32..] > sub_be(&P256_ORDER, &s[32..])[..];
            f.verify(&with_signature(&token, s))
                .await
                .expect("either S verifies");
        }
    }
    assert!(seen_high);
}

#[tokio::test]
async fn ed25519_non_canonical_s_is_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f.valid_token();
    let signature = signature_of(&token);
    // S + L is the same scalar mod L: accepting it would make signatures malleable.
    let mut forged = signature.clone();
    forged[32..].copy_from_slice(&add_le(&signature[32..], &ED25519_ORDER_LE));
    let mut top_bits = signature.clone();
    top_bits[63] |= 0xe0;
    for bad in [forged, top_bits] {
        assert_eq!(
            f.refusal(&with_signature(&token, &bad)).await,
            VerifyError::Signature(SignatureError::NonCanonical)
        );
    }
}

/// Encodings of Ed25519 points of small order: identity, order 2, 4 and 8.
fn small_order_points() -> Vec<[u8; 32]> {
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut order2 = [0xffu8; 32];
    order2[0] = 0xec;
    order2[31] = 0x7f;
    let order4 = [0u8; 32];
    let order8: [u8; 32] = hex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
        .try_into()
        .expect("32 bytes");
    vec![identity, order2, order4, order8]
}

#[tokio::test]
async fn ed25519_small_order_points_are_refused() {
    let f = Fixture::new(Algorithm::EdDSA);
    let token = f.valid_token();
    let signature = signature_of(&token);
    // As R in a signature...
    for point in small_order_points() {
        let mut forged = signature.clone();
        forged[..32].copy_from_slice(&point);
        assert_eq!(
            f.refusal(&with_signature(&token, &forged)).await,
            VerifyError::Signature(SignatureError::SmallOrder)
        );
    }
    // ...and as a public key: with A = R = identity and S = 0, one signature
    // would "verify" every message. Such a key never enters a key set.
    for point in small_order_points() {
        assert_eq!(PublicKey::ed25519(&point), Err(KeyError::SmallOrder));
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(point), "kid": "weak"}]});
        let set = JwkSet::from_json(jwks.to_string().as_bytes()).expect("set");
        assert!(set.is_empty());
        assert_eq!(set.refused()[0].reason, KeyError::SmallOrder);
    }
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": b64(identity), "kid": "weak"}]});
    let weak = Fixture {
        jwks: JwkSet::from_json(jwks.to_string().as_bytes()).expect("set"),
        ..Fixture::new(Algorithm::EdDSA)
    };
    let mut forged_sig = [0u8; 64];
    forged_sig[..32].copy_from_slice(&identity);
    let forged = with_signature(&weak.token_header(|h| h["kid"] = json!("weak")), &forged_sig);
    assert_eq!(weak.refusal(&forged).await, unknown_kid("weak"));
}

#[tokio::test]
async fn rsa_keys_under_2048_bits_are_refused() {
    let mut n1024 = vec![0xc3u8; 128];
    n1024[127] = 0xc5;
    let mut n2047 = vec![0xc3u8; 256];
    n2047[0] = 0x7f;
    for (n, bits) in [(&n1024, 1024), (&n2047, 2047)] {
        assert_eq!(PublicKey::rsa(n, &[1, 0, 1]), Err(KeyError::RsaTooSmall { bits }));
    }
    // In a key set the weak key is left out, and a token naming it is refused.
    let f = Fixture::new(Algorithm::RS256);
    let jwks = json!({"keys": [
        {"kty": "RSA", "n": b64(&n1024), "e": "AQAB", "kid": "rsa-1024", "alg": "RS256"},
        Value::Object(f.signer.verifying_key().to_jwk()),
    ]});
    let set = JwkSet::from_json(jwks.to_string().as_bytes()).expect("set");
    assert_eq!(set.len(), 1);
    assert_eq!(set.refused()[0].reason, KeyError::RsaTooSmall { bits: 1024 });
    let f = Fixture { jwks: set, ..f };
    let token = f.token_header(|h| h["kid"] = json!("rsa-1024"));
    assert_eq!(f.refusal(&token).await, unknown_kid("rsa-1024"));
    f.verify(&f.valid_token())
        .await
        .expect("the 2048-bit key still works");
}

// ------------------------------------------------------------------------ claims

#[tokio::test]
async fn missing_exp_is_refused() {
    let f = Fixture::es256();
    let token = f.token_claims(|c| remove(c, "exp"));
    assert_eq!(f.refusal(&token).await, VerifyError::MissingClaim("exp"));
}

#[tokio::test]
async fn missing_iss_is_refused() {
    let f = Fixture::es256();
    let token = f.token_claims(|c| remove(c, "iss"));
    assert_eq!(f.refusal(&token).await, VerifyError::MissingClaim("iss"));
}

#[tokio::test]
async fn missing_aud_is_refused() {
    let f = Fixture::es256();
    let token = f.token_claims(|c| remove(c, "aud"));
    assert_eq!(f.refusal(&token).await, VerifyError::MissingClaim("aud"));
}

#[tokio::test]
async fn missing_sub_is_refused() {
    let f = Fixture::es256();
    let token = f.token_claims(|c| remove(c, "sub"));
    assert_eq!(f.refusal(&token).await, VerifyError::MissingClaim("sub"));
}

#[tokio::test]
async fn other_required_claims_missing_are_refused() {
    // RFC 9068 §2.2 also requires iat, jti and client_id.
    let f = Fixture::es256();
    for claim in ["iat", "jti", "client_id"] {
        let token = f.token_claims(|c| remove(c, claim));
        assert_eq!(f.refusal(&token).await, VerifyError::MissingClaim(claim));
    }
}

#[tokio::test]
async fn iat_in_the_future_is_refused() {
    let f = Fixture::es256();
    let leeway = 30;
    let token = f.token_claims(|c| {
        remove(c, "nbf");
        c["iat"] = json!(NOW + 3600);
        c["exp"] = json!(NOW + 3900);
    });
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::IssuedInFuture {
            iat: NOW + 3600,
            now: NOW,
            leeway
        }
    );
}

#[tokio::test]
async fn nbf_in_the_future_is_refused() {
    let f = Fixture::es256();
    let token = f.token_claims(|c| c["nbf"] = json!(NOW + 120));
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::NotYetValid {
            nbf: NOW + 120,
            now: NOW,
            leeway: 30
        }
    );
}

#[tokio::test]
async fn lifetime_above_the_maximum_is_refused() {
    let f = Fixture::es256();
    // The default maximum is 900 s: exactly that passes, one more does not.
    let token = f.token_claims(|c| c["exp"] = json!(NOW + 900));
    f.verify(&token).await.expect("at the maximum");
    let token = f.token_claims(|c| c["exp"] = json!(NOW + 901));
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::LifetimeTooLong {
            lifetime: 901,
            max: 900
        }
    );
    // A token that "never" expires.
    let token = f.token_claims(|c| c["exp"] = json!(u64::MAX));
    assert!(matches!(
        f.refusal(&token).await,
        VerifyError::LifetimeTooLong { max: 900, .. }
    ));
    // And exp not after iat is no lifetime at all.
    let token = f.token_claims(|c| c["exp"] = json!(NOW));
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::ClaimType {
            claim: "exp",
            expected: "a time after iat"
        }
    );
}

#[tokio::test]
async fn numeric_date_of_wrong_type_is_refused() {
    let f = Fixture::es256();
    let wrong = [
        json!(NOW.to_string()),
        json!(NOW as f64 + 0.5),
        json!(1.7e9),
        json!(-1),
        json!(true),
        json!(null),
        json!([NOW]),
        json!({"$date": NOW}),
    ];
    for claim in ["exp", "nbf", "iat"] {
        for value in &wrong {
            let token = f.token_claims(|c| c[claim] = value.clone());
            assert_eq!(
                f.refusal(&token).await,
                VerifyError::ClaimType {
                    claim,
                    expected: "a NumericDate (non-negative integer seconds)"
                },
                "{claim}: {value}"
            );
        }
    }
}

#[tokio::test]
async fn aud_empty_is_refused() {
    let f = Fixture::es256();
    for aud in [json!(""), json!([]), json!([""]), json!([AUDIENCE, ""])] {
        let token = f.token_claims(|c| c["aud"] = aud.clone());
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::ClaimType {
                claim: "aud",
                expected: "a non-empty string or a non-empty array of strings"
            },
            "{aud}"
        );
    }
}

#[tokio::test]
async fn aud_of_wrong_case_is_refused() {
    let f = Fixture::es256();
    for aud in [
        "HTTPS://API.EXAMPLE.COM",
        "https://API.example.com",
        "https://api.example.com/",
    ] {
        let token = f.token_claims(|c| c["aud"] = json!(aud));
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::WrongAudience {
                found: vec![aud.to_owned()]
            }
        );
    }
}

#[tokio::test]
async fn aud_of_wrong_type_is_refused() {
    let f = Fixture::es256();
    for aud in [
        json!(42),
        json!(null),
        json!({ "aud": AUDIENCE }),
        json!([AUDIENCE, 42]),
        json!(true),
    ] {
        let token = f.token_claims(|c| c["aud"] = aud.clone());
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::ClaimType {
                claim: "aud",
                expected: "a non-empty string or a non-empty array of strings"
            },
            "{aud}"
        );
    }
    // An array holding the audience is a correct type.
    let token = f.token_claims(|c| c["aud"] = json!(["https://other.example.com", AUDIENCE]));
    f.verify(&token).await.expect("audience in an array");
}

#[tokio::test]
async fn iss_not_byte_equal_is_refused() {
    let f = Fixture::es256();
    for iss in [
        "https://tokens.example.com/",
        "https://TOKENS.example.com",
        "HTTPS://tokens.example.com",
        "https://tokens.example.com:443",
        "http://tokens.example.com",
        " https://tokens.example.com",
        "https://tokens.example.com\u{0}",
        "https://tokens.ex\u{0430}mple.com", // Cyrillic a
    ] {
        let token = f.token_claims(|c| c["iss"] = json!(iss));
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::WrongIssuer {
                found: iss.to_owned()
            },
            "{iss:?}"
        );
    }
    let token = f.token_claims(|c| c["iss"] = json!([ISSUER]));
    assert_eq!(
        f.refusal(&token).await,
        VerifyError::ClaimType {
            claim: "iss",
            expected: "a string"
        }
    );
}

#[tokio::test]
async fn typ_other_than_at_jwt_is_refused() {
    // A client assertion or an ID token (typ "JWT" or none) signed by the same
    // key must never pass as an access token.
    let f = Fixture::es256();
    for typ in [
        Some("JWT"),
        Some("jwt"),
        Some("application/jwt"),
        Some("dpop+jwt"),
        Some("at+jwt "),
        None,
    ] {
        let token = f.token_header(|h| match typ {
            Some(typ) => h["typ"] = json!(typ),
            None => remove(h, "typ"),
        });
        assert_eq!(
            f.refusal(&token).await,
            VerifyError::WrongType {
                found: typ.map(str::to_owned),
                expected: "at+jwt".into()
            },
            "{typ:?}"
        );
    }
    // The media-type forms RFC 7515 §4.1.9 allows are the same type.
    for typ in ["application/at+jwt", "AT+JWT"] {
        f.verify(&f.token_header(|h| h["typ"] = json!(typ)))
            .await
            .expect(typ);
    }
}

// -------------------------------------------------------------------------- JWKS

fn jwk_of(f: &Fixture) -> Value {
    Value::Object(f.signer.verifying_key().to_jwk())
}

fn parse_set(keys: Vec<Value>) -> Result<JwkSet, JwkSetError> {
    JwkSet::from_json(json!({ "keys": keys }).to_string().as_bytes())
}

#[tokio::test]
async fn jwks_duplicate_kids_are_refused() {
    let a = Fixture::es256();
    let b = Fixture::new(Algorithm::EdDSA);
    let mut b_jwk = jwk_of(&b);
    b_jwk["kid"] = json!(a.kid());
    assert_eq!(
        parse_set(vec![jwk_of(&a), b_jwk.clone()]).unwrap_err(),
        JwkSetError::DuplicateKid(a.kid().to_owned())
    );
    // Even when one of the two would be refused anyway.
    b_jwk["use"] = json!("enc");
    assert_eq!(
        parse_set(vec![jwk_of(&a), b_jwk]).unwrap_err(),
        JwkSetError::DuplicateKid(a.kid().to_owned())
    );
    assert_eq!(
        JwkSet::from_keys([a.signer.verifying_key().clone(), a.signer.verifying_key().clone()]).unwrap_err(),
        JwkSetError::DuplicateKid(a.kid().to_owned())
    );
}

/// Parses `[jwk]` and expects the key left out for `reason`.
fn assert_key_refused(jwk: Value, reason: KeyError) {
    let set = parse_set(vec![jwk]).expect("one bad key does not fail the set");
    assert!(set.is_empty());
    assert_eq!(set.refused().len(), 1);
    assert_eq!(set.refused()[0].reason, reason);
}

#[tokio::test]
async fn jwks_use_enc_is_refused() {
    let f = Fixture::es256();
    let mut jwk = jwk_of(&f);
    jwk["use"] = json!("enc");
    let set = parse_set(vec![jwk]).expect("set");
    assert!(set.is_empty());
    assert_eq!(set.refused()[0].reason, KeyError::WrongUse("\"enc\"".into()));
    assert_eq!(set.refused()[0].kid.as_deref(), Some(f.kid()));
    let f = Fixture { jwks: set, ..f };
    let token = f.valid_token();
    assert_eq!(f.refusal(&token).await, unknown_kid(f.kid()));
}

#[tokio::test]
async fn jwks_key_ops_without_verify_are_refused() {
    let f = Fixture::es256();
    for ops in [json!(["sign"]), json!(["encrypt", "wrapKey"]), json!([])] {
        let mut jwk = jwk_of(&f);
        jwk["key_ops"] = ops;
        assert_key_refused(jwk, KeyError::KeyOpsWithoutVerify);
    }
    let mut jwk = jwk_of(&f);
    jwk["key_ops"] = json!("verify");
    assert_key_refused(
        jwk,
        KeyError::MemberType {
            member: "key_ops",
            expected: "an array of strings",
        },
    );
    // With verify listed the key serves.
    let mut jwk = jwk_of(&f);
    jwk["key_ops"] = json!(["verify"]);
    let f = Fixture {
        jwks: parse_set(vec![jwk]).expect("set"),
        ..f
    };
    f.verify(&f.valid_token()).await.expect("key_ops [verify]");
}

#[tokio::test]
async fn jwks_private_members_are_refused() {
    let ec = Fixture::es256();
    let ed = Fixture::new(Algorithm::EdDSA);
    let rsa = Fixture::new(Algorithm::RS256);
    let filler = json!(b64([7u8; 32]));
    for (f, member) in [
        (&ec, "d"),
        (&ed, "d"),
        (&rsa, "d"),
        (&rsa, "p"),
        (&rsa, "q"),
        (&rsa, "dp"),
        (&rsa, "dq"),
        (&rsa, "qi"),
        (&rsa, "oth"),
    ] {
        let mut jwk = jwk_of(f);
        jwk[member] = filler.clone();
        assert_key_refused(jwk, KeyError::PrivateMember(member));
    }
}

#[tokio::test]
async fn jwks_symmetric_keys_are_refused() {
    let f = Fixture::es256();
    for alg in ["HS256", "A256GCM"] {
        let oct = json!({"kty": "oct", "k": b64([1u8; 32]), "kid": f.kid(), "alg": alg});
        let set = parse_set(vec![oct]).expect("set");
        assert!(set.is_empty());
        assert_eq!(set.refused()[0].reason, KeyError::Symmetric);
        let f = Fixture {
            jwks: set,
            ..Fixture::es256()
        };
        assert_eq!(f.refusal(&f.valid_token()).await, unknown_kid(f.kid()));
    }
}

#[tokio::test]
async fn jwks_unknown_kty_is_ignored_not_fatal() {
    let f = Fixture::es256();
    let keys = vec![
        json!({"kty": "EC2", "crv": "P-256", "kid": "future"}),
        json!({"kty": "EC", "crv": "P-521", "x": b64([1u8; 66]), "y": b64([2u8; 66]), "kid": "p521"}),
        json!({"kty": "OKP", "crv": "X25519", "x": b64([9u8; 32]), "kid": "x25519"}),
        json!("not a key"),
        jwk_of(&f),
    ];
    let set = parse_set(keys).expect("the usable key survives");
    assert_eq!(set.len(), 1);
    let reasons: Vec<_> = set.refused().iter().map(|r| r.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            KeyError::UnsupportedKeyType("EC2".into()),
            KeyError::UnsupportedCurve("P-521".into()),
            KeyError::UnsupportedCurve("X25519".into()),
            KeyError::Json(JsonError::NotAnObject),
        ]
    );
    let f = Fixture { jwks: set, ..f };
    f.verify(&f.valid_token()).await.expect("usable key");
}

#[test]
fn jwks_bad_json_is_refused() {
    assert!(matches!(
        JwkSet::from_json(b"{\"keys\": [}"),
        Err(JwkSetError::Json(JsonError::Syntax(_)))
    ));
    assert!(matches!(
        JwkSet::from_json(b"\xff"),
        Err(JwkSetError::Json(JsonError::Syntax(_)))
    ));
    assert_eq!(
        JwkSet::from_json(b"[]").unwrap_err(),
        JwkSetError::Json(JsonError::NotAnObject)
    );
    assert_eq!(
        JwkSet::from_json(br#"{"keys":[],"keys":[]}"#).unwrap_err(),
        JwkSetError::Json(JsonError::DuplicateMember("keys".into()))
    );
    assert_eq!(JwkSet::from_json(b"{}").unwrap_err(), JwkSetError::MissingKeys);
    assert_eq!(
        JwkSet::from_json(br#"{"keys":{}}"#).unwrap_err(),
        JwkSetError::MissingKeys
    );
    let many: Vec<Value> = (0..=MAX_KEYS)
        .map(|i| json!({"kty": "EC2", "kid": i.to_string()}))
        .collect();
    assert_eq!(
        parse_set(many).unwrap_err(),
        JwkSetError::TooManyKeys(MAX_KEYS + 1)
    );
    // A duplicate member inside a key is as ambiguous as one in a header.
    assert_eq!(
        JwkSet::from_json(br#"{"keys":[{"kty":"EC","kty":"oct"}]}"#).unwrap_err(),
        JwkSetError::Json(JsonError::DuplicateMember("kty".into()))
    );
}
