//! [`TrustedIssuers`]: the registry and the verification path (a cached
//! verification, or the exact `iss` lookup, the lazy live issuer and that
//! issuer's verifier).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::builder::RemoteSettings;
use super::live::{EntryKeys, IssuerOrigin, LiveIssuer, LiveIssuers};
use super::lookup::Lookups;
use super::{IssuerEntry, IssuerKeys, Trusted};
use crate::clock::{MonotonicClock, WallClock};
use crate::json;
use crate::jws::{JwsError, UnverifiedJws};
use crate::text;
use crate::verify::cache::{CacheKey, Entry};
use crate::verify::remote::Shared;
use crate::verify::{KeyLookupError, RemoteJwks, VerificationCache, Verifier, VerifyError};

/// After a failed repeat lookup, the entry in hand is used this long before
/// the next attempt.
const LOOKUP_RETRY: Duration = Duration::from_secs(10);

/// The registry of trusted issuers; see the [module docs](super). Cheap to
/// clone (an `Arc` inside); clones share everything.
///
/// ```no_run
/// # async fn run(token: &str) -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_core::verify::trust::{IssuerEntry, TrustedIssuers};
/// use oidc_core::AccessTokenClaims;
///
/// let trusted = TrustedIssuers::builder()
///     .issuer(IssuerEntry::builder("acme", "https://tokens.acme.example", ["https://api.example.com"])
///         .require_claim("org_id", "acme")
///         .build()?)
///     .build()?;
/// let token = trusted.verify::<AccessTokenClaims>(token).await?;
/// println!("{} from {}", token.claims().sub, token.issuer_name());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TrustedIssuers {
    pub(super) inner: Arc<Registry>,
}

pub(super) struct Registry {
    /// The static list, by exact issuer and by name.
    pub(super) statics: HashMap<String, Arc<IssuerEntry>>,
    pub(super) names: HashMap<String, Arc<IssuerEntry>>,
    pub(super) lookups: Option<Lookups>,
    pub(super) live: LiveIssuers,
    pub(super) shared: Shared,
    pub(super) remote: RemoteSettings,
    pub(super) lookup_ttl: Duration,
    pub(super) lookup_stale_limit: Duration,
    pub(super) clock: Arc<dyn MonotonicClock>,
    pub(super) wall_clock: Arc<dyn WallClock>,
    pub(super) unknown: AtomicU64,
    pub(super) max_concurrent_fetches: usize,
    pub(super) cache: Option<VerificationCache>,
    /// The size cap applied before the issuer is known.
    pub(super) max_token_len: usize,
}

impl TrustedIssuers {
    /// Verifies `token` against the entry its `iss` names, exactly, and
    /// deserializes its claims as `C`.
    ///
    /// Before anything is fetched: the token's form, its claims as strict
    /// JSON, and its `iss` are checked; an `iss` with no entry is
    /// [`VerifyError::UnknownIssuer`]. Then only that entry's policy and keys
    /// apply, as [`Verifier::verify`] applies them.
    pub async fn verify<C>(&self, token: &str) -> Result<Trusted<C>, VerifyError>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        self.verify_named(token).await.map_err(|(_, error)| error)
    }

    /// [`verify`](Self::verify), with the name of the entry that refused the
    /// token when its issuer was known (for logs).
    pub(crate) async fn verify_named<C>(
        &self,
        token: &str,
    ) -> Result<Trusted<C>, (Option<Arc<str>>, VerifyError)>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let registry = &*self.inner;
        let cached = registry.cache.as_ref().map(|cache| (cache, cache.key(token)));
        if let Some((cache, key)) = cached {
            if let Some(trusted) = registry.cached(cache, key) {
                return Ok(trusted);
            }
        }
        let unnamed = |error: VerifyError| (None, error);
        let jws = UnverifiedJws::decode(token, registry.max_token_len).map_err(|e| unnamed(e.into()))?;
        // The issuer is chosen by the unverified `iss`; the claims are parsed
        // once, here, and checked after the signature by that issuer's policy.
        let claims =
            json::parse_object(jws.unverified_payload()).map_err(|e| unnamed(VerifyError::Claims(e)))?;
        let live = match claims.get("iss") {
            Some(Value::String(iss)) => registry.live_issuer(iss).await.map_err(unnamed)?,
            Some(_) => {
                return Err(unnamed(VerifyError::ClaimType {
                    claim: "iss",
                    expected: "a string",
                }))
            }
            None => return Err(unnamed(VerifyError::MissingClaim("iss"))),
        };
        // The entry's own cap (8 KiB for this project's tokens), now that
        // the entry is known; the registry's, above, is the largest of all.
        let max = live.entry.policy().max_token_len();
        let outcome = if token.len() > max {
            Err(VerifyError::Malformed(JwsError::TooLarge {
                len: token.len(),
                max,
            }))
        } else {
            live.verifier.verify_decoded::<C>(jws, Some(claims)).await
        };
        match outcome {
            Ok((verified, validity)) => {
                live.verified.fetch_add(1, Ordering::Relaxed);
                if let (Some((cache, key)), Some(validity)) = (cached, validity) {
                    let policy = live.verifier.shared_policy();
                    let scope = Some(Arc::clone(live.entry.shared_issuer()));
                    cache.insert(
                        key,
                        Entry::new(&verified, policy, validity, scope),
                        live.verifier.now(),
                    );
                }
                Ok(Trusted {
                    name: Arc::clone(live.entry.shared_name()),
                    dpop: live.entry.policy().dpop(),
                    verified,
                })
            }
            Err(error) => {
                live.refused.fetch_add(1, Ordering::Relaxed);
                Err((Some(Arc::clone(live.entry.shared_name())), error))
            }
        }
    }

    /// The static entries, in no particular order.
    pub fn static_entries(&self) -> impl Iterator<Item = &IssuerEntry> {
        self.inner.names.values().map(|entry| &**entry)
    }
}

impl fmt::Debug for TrustedIssuers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedIssuers")
            .field("static_entries", &self.inner.names.len())
            .field("lookup", &self.inner.lookups.is_some())
            .field("cached_issuers", &self.inner.live.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// The cached verification of the token under `key`, if it still holds
    /// for the live issuer that verified it (an issuer no longer live, or
    /// due for a repeat lookup, goes the full way).
    fn cached<C: Send + Sync + 'static>(
        &self,
        cache: &VerificationCache,
        key: CacheKey,
    ) -> Option<Trusted<C>> {
        let entry = cache.get(key)?;
        let now = self.clock.elapsed();
        let live = entry.scope.as_deref().and_then(|iss| self.live.get(iss));
        let Some(live) = live.filter(|live| !live.due_for_lookup(now) && !live.stale(now)) else {
            cache.invalidate(key, &entry);
            return None;
        };
        live.touch(now);
        let policy = live.verifier.shared_policy();
        let verified = cache.serve(key, &entry, policy, live.verifier.now(), live.keys())?;
        live.verified.fetch_add(1, Ordering::Relaxed);
        Some(Trusted {
            name: Arc::clone(live.entry.shared_name()),
            dpop: live.entry.policy().dpop(),
            verified,
        })
    }

    /// The live issuer for exactly `iss`: cached, or made from the static
    /// list or the lookup (nothing is fetched here).
    async fn live_issuer(&self, iss: &str) -> Result<Arc<LiveIssuer>, VerifyError> {
        let now = self.clock.elapsed();
        if let Some(live) = self.live.get(iss) {
            live.touch(now);
            if live.due_for_lookup(now) {
                return self.lookup_again(live, now).await;
            }
            return self.in_hand(live, now);
        }
        let (entry, origin) = match (self.statics.get(iss), &self.lookups) {
            (Some(entry), _) => (Arc::clone(entry), IssuerOrigin::Static),
            (None, Some(lookups)) => match lookups.resolve(iss, now, false).await {
                Ok(entry) => (Arc::new(entry), IssuerOrigin::Lookup),
                Err(error) => return Err(self.count(error)),
            },
            (None, None) => {
                return Err(self.count(VerifyError::UnknownIssuer {
                    issuer: text::excerpt(iss),
                }))
            }
        };
        let live = self.make_live(entry, origin, now, None)?;
        Ok(self.live.insert(live))
    }

    pub(super) fn shared_permits_available(&self) -> usize {
        self.shared.permits.available_permits()
    }

    fn count(&self, error: VerifyError) -> VerifyError {
        if matches!(error, VerifyError::UnknownIssuer { .. }) {
            self.unknown.fetch_add(1, Ordering::Relaxed);
        }
        error
    }

    /// A lookup entry past its TTL: the first caller looks it up again (the
    /// others go on with the entry in hand meanwhile); a changed entry
    /// replaces it, a removed one is gone, a failed lookup keeps it (until
    /// the stale limit: see [`in_hand`](Self::in_hand)).
    async fn lookup_again(
        &self,
        live: Arc<LiveIssuer>,
        now: Duration,
    ) -> Result<Arc<LiveIssuer>, VerifyError> {
        let Some(lookups) = &self.lookups else {
            return Ok(live);
        };
        let due = live.relookup_at.load(Ordering::Relaxed);
        let retry_at = u64::try_from(now.saturating_add(LOOKUP_RETRY).as_nanos()).unwrap_or(u64::MAX);
        if live
            .relookup_at
            .compare_exchange(due, retry_at, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return self.in_hand(live, now);
        }
        match lookups.resolve(live.entry.issuer(), now, true).await {
            Ok(entry) if entry == *live.entry => {
                let (relookup_at, stale_at) = self.lookup_deadlines(now);
                live.confirmed(relookup_at, stale_at);
                Ok(live)
            }
            Ok(entry) => {
                tracing::info!(issuer = entry.name(), "issuer entry changed");
                let keys = (entry.keys() == live.entry.keys()).then(|| live.keys().clone());
                let replacement = self.make_live(Arc::new(entry), IssuerOrigin::Lookup, now, keys)?;
                Ok(self.live.replace(&live, replacement))
            }
            Err(error @ VerifyError::UnknownIssuer { .. }) => {
                tracing::info!(issuer = live.entry.name(), "issuer no longer trusted");
                self.live.remove(&live);
                Err(self.count(error))
            }
            // Logged here, once per attempt, not per token.
            Err(error) if live.stale(now) => {
                tracing::warn!(
                    issuer = live.entry.name(),
                    %error,
                    "issuer entry refused: it could not be looked up again within the stale limit"
                );
                self.in_hand(live, now)
            }
            Err(error) => {
                tracing::warn!(issuer = live.entry.name(), %error, "keeping the issuer entry in hand");
                Ok(live)
            }
        }
    }

    /// `live` if it may still be used: a lookup entry whose lookups have
    /// failed past the stale limit is refused (fail closed: it may have been
    /// removed from the store), until a lookup confirms it again.
    fn in_hand(&self, live: Arc<LiveIssuer>, now: Duration) -> Result<Arc<LiveIssuer>, VerifyError> {
        if !live.stale(now) {
            return Ok(live);
        }
        Err(VerifyError::IssuerLookup(format!(
            "issuer entry {:?} could not be looked up again for {} s past its lookup TTL; \
             refused until a lookup answers",
            live.entry.name(),
            self.lookup_stale_limit.as_secs()
        )))
    }

    /// When an entry confirmed by a lookup at `now` is looked up again, and
    /// when it is refused unless a lookup confirms it again.
    fn lookup_deadlines(&self, now: Duration) -> (Duration, Duration) {
        let relookup_at = now.saturating_add(self.lookup_ttl);
        (relookup_at, relookup_at.saturating_add(self.lookup_stale_limit))
    }

    pub(super) fn make_live(
        &self,
        entry: Arc<IssuerEntry>,
        origin: IssuerOrigin,
        now: Duration,
        keys: Option<EntryKeys>,
    ) -> Result<Arc<LiveIssuer>, VerifyError> {
        let keys = match keys {
            Some(keys) => keys,
            None => self.key_source(&entry)?,
        };
        let verifier = Verifier::from_shared(Arc::clone(entry.shared_policy()), keys)
            .with_clock(self.wall_clock.clone());
        let (relookup_at, stale_at) = self.lookup_deadlines(now);
        Ok(Arc::new(LiveIssuer::new(
            entry,
            verifier,
            origin,
            now,
            relookup_at,
            stale_at,
        )))
    }

    fn key_source(&self, entry: &IssuerEntry) -> Result<EntryKeys, VerifyError> {
        let builder = match entry.keys() {
            IssuerKeys::Pinned(jwks) => return Ok(EntryKeys::Pinned(Arc::clone(jwks))),
            IssuerKeys::Discovery => RemoteJwks::discovery(entry.issuer()),
            IssuerKeys::JwksUri(url) => RemoteJwks::builder(url.clone()),
        };
        // The URLs were checked when the entry was built, and the settings
        // when the registry was: this does not fail, but must not panic.
        self.remote
            .apply(builder, &self.shared, &self.clock)
            .build()
            .map(EntryKeys::Remote)
            .map_err(|e| VerifyError::Key(KeyLookupError::Unavailable(e.to_string())))
    }
}
