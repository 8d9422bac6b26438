//! `connector_client::CachedTokenSource` fed by a token source that returns
//! what the client's own response parsers make of fuzzer bytes, on a
//! `ManualTimer` the fuzzer moves.
//!
//! Input: a script of operations, then `\n--\n`, then the endpoint's
//! answers separated by `0x00`. An operation byte advances the clock
//! (by the next two bytes, in seconds), asks the cache for a token,
//! invalidates the last token handed out, or lets the background refresher
//! run. An answer's first byte says what it is: a token response body
//! (parsed by `token_response`), or an error response (`error_response`,
//! its status and `Retry-After` from the byte), and how many seconds the
//! request takes (the clock moves while it is in flight). When the answers
//! run out, the endpoint answers 503.
//!
//! Property: whatever the answers and timing, the cache never hands out
//! an empty token or one that has expired (its `expires_in` counted from
//! when the request that got it was sent).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use connector_client::fuzzing::{error_response, token_response};
use connector_client::timer::{ManualTimer, Timer as _};
use connector_client::{AccessToken, CachedTokenSource, Error, TokenSource};

const URL: &str = "https://tokens.test/token";
const STATUSES: [u16; 6] = [400, 401, 429, 500, 502, 503];

/// A token the source returned, and until when it is valid.
struct Granted {
    secret: String,
    expires_at: Instant,
}

struct Script {
    answers: Vec<Vec<u8>>,
    next: usize,
    granted: Vec<Granted>,
}

struct FuzzSource {
    timer: Arc<ManualTimer>,
    script: Arc<Mutex<Script>>,
}

#[async_trait]
impl TokenSource for FuzzSource {
    async fn token(&self) -> Result<AccessToken, Error> {
        let started = self.timer.now();
        let answer = {
            let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
            let answer = script.answers.get(script.next).cloned();
            script.next += 1;
            answer
        };
        let Some(answer) = answer else {
            return Err(error_response(URL, 503, b"", None)
                .expect("503 is a status")
                .into());
        };
        let (&kind, body) = answer.split_first().unwrap_or((&0, &[]));
        // The request takes 0, 1, 30 or 600 seconds.
        let latency = [0, 1, 30, 600][usize::from(kind >> 6)];
        self.timer.advance(Duration::from_secs(latency));
        if kind & 1 == 0 {
            let default = (kind & 2 == 2).then_some(Duration::from_secs(60));
            let token = token_response(URL, body, default)?;
            let mut script = self.script.lock().unwrap_or_else(|e| e.into_inner());
            script.granted.push(Granted {
                secret: token.secret().as_str().to_owned(),
                expires_at: started + token.expires_in(),
            });
            Ok(token)
        } else {
            let status = STATUSES[usize::from(kind >> 1 & 7) % STATUSES.len()];
            let retry_after = (kind & 0x10 == 0x10).then_some(Duration::from_secs(u64::from(kind & 0x3f)));
            Err(error_response(URL, status, body, retry_after)
                .expect("a valid status")
                .into())
        }
    }
}

fn check(token: &AccessToken, now: Instant, script: &Mutex<Script>) {
    let secret = token.secret().as_str();
    assert!(!secret.is_empty(), "the cache handed out an empty token");
    let script = script.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        script
            .granted
            .iter()
            .any(|g| g.secret == secret && now < g.expires_at),
        "the cache handed out an expired token (or one the source never gave)"
    );
}

pub fn run(data: &[u8]) {
    let (ops, answers) = match data.windows(4).position(|w| w == b"\n--\n") {
        Some(at) => (&data[..at], &data[at + 4..]),
        None => (data, &[][..]),
    };
    let timer = Arc::new(ManualTimer::new());
    let script = Arc::new(Mutex::new(Script {
        answers: answers.split(|b| *b == 0).map(<[u8]>::to_vec).collect(),
        next: 0,
        granted: Vec::new(),
    }));
    crate::block_on(async {
        let source = FuzzSource {
            timer: timer.clone(),
            script: script.clone(),
        };
        let Ok(cache) = CachedTokenSource::builder(source).timer(timer.clone()).build() else {
            return;
        };
        let mut last: Option<AccessToken> = None;
        let mut ops = ops.iter();
        let mut steps = 0;
        while let Some(&op) = ops.next() {
            steps += 1;
            if steps > 64 {
                break;
            }
            match op % 4 {
                0 => {
                    let hi = ops.next().copied().unwrap_or(0);
                    let lo = ops.next().copied().unwrap_or(0);
                    timer.advance(Duration::from_secs(u64::from(u16::from_be_bytes([hi, lo]))));
                }
                1 => {
                    if let Ok(token) = cache.token().await {
                        check(&token, timer.now(), &script);
                        last = Some(token);
                    }
                    if let Some(token) = cache.cached() {
                        check(&token, timer.now(), &script);
                    }
                }
                2 => {
                    if let Some(token) = &last {
                        cache.invalidate(token);
                    }
                }
                _ => {
                    for _ in 0..4 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    });
}
