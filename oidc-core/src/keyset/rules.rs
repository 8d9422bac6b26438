//! The rotation rules, from a document's own [`Timings`] and Secrets
//! Manager's `CreatedDate`s, never from a local clock alone.
//!
//! With `P` the poll interval, `A` the JWKS max-age, `T` the longest token
//! lifetime and `L` the verifiers' leeway, a document created at `C` may be
//! rotated once `C + R` has passed, where
//!
//! ```text
//! R = max(P + A, P + T + L)
//! ```
//!
//! - `P + A`: its `next` key has been published that long: every replica has
//!   read it, and every verifier's cached JWKS has expired since, so the key
//!   may sign;
//! - `P + T + L`: its `previous` key (which the rotation removes) stopped
//!   signing when `C` came in force, at most `P` later on the slowest
//!   replica, so its last token has expired, leeway included;
//!
//! and a schedule's period must be at least `R`. Every key is thus published
//! for a whole period before it signs and stays published for one after;
//! the current key of a document created at `C` cannot leave the set before
//! `C + 2R` (two rotations), which caps its tokens ([`Timings::signing_limit`]).

use std::time::Duration;

use super::document::Timings;

/// A rotation asked for before the rules allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the key set in force since {since} may rotate at {earliest} (in {} s): its next key must be published \
     for {maturity} s (poll interval + JWKS max-age) and its previous key's last token must have expired \
     ({retire} s: poll interval + token lifetime + leeway)",
    earliest.saturating_sub(*now)
)]
pub struct TooEarly {
    /// When the document in force was created.
    pub since: u64,
    /// The earliest time the rotation is allowed.
    pub earliest: u64,
    /// The time of the request (Secrets Manager's clock).
    pub now: u64,
    /// `P + A` in seconds.
    pub maturity: u64,
    /// `P + T + L` in seconds.
    pub retire: u64,
}

/// Timings that cannot make a rotating key set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimingsError(pub String);

fn secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl Timings {
    /// `P + A`: how long a key is published before it may sign.
    pub fn maturity_secs(&self) -> u64 {
        secs(self.poll_interval).saturating_add(secs(self.jwks_max_age))
    }

    /// `P + T + L`: how long after a key stopped signing its last token is gone.
    pub fn retire_secs(&self) -> u64 {
        secs(self.poll_interval)
            .saturating_add(secs(self.max_token_lifetime))
            .saturating_add(secs(self.leeway))
    }

    /// `R`: the least time between two rotations.
    pub fn min_rotation_interval(&self) -> Duration {
        Duration::from_secs(self.maturity_secs().max(self.retire_secs()))
    }

    /// When the document created at `created_at` may rotate.
    pub fn earliest_rotation(&self, created_at: u64) -> u64 {
        created_at.saturating_add(self.min_rotation_interval().as_secs())
    }

    /// `Ok` if the document created at `created_at` may rotate at `now`
    /// (both from Secrets Manager's clock).
    pub fn check_rotation(&self, created_at: u64, now: u64) -> Result<(), TooEarly> {
        let earliest = self.earliest_rotation(created_at);
        if now >= earliest {
            return Ok(());
        }
        Err(TooEarly {
            since: created_at,
            earliest,
            now,
            maturity: self.maturity_secs(),
            retire: self.retire_secs(),
        })
    }

    /// No token signed by the current key of the document created at
    /// `created_at` may expire after this: the earliest time the key could
    /// leave the set (two rotations later), less the leeway.
    pub fn signing_limit(&self, created_at: u64) -> u64 {
        created_at
            .saturating_add(2 * self.min_rotation_interval().as_secs())
            .saturating_sub(secs(self.leeway))
    }

    /// Whether a rotation schedule of `period` fits the rules.
    pub fn check_period(&self, period: Duration) -> Result<(), TimingsError> {
        let min = self.min_rotation_interval();
        if period < min {
            return Err(TimingsError(format!(
                "a rotation period of {} s is shorter than the rules allow ({} s: max(poll interval + JWKS \
                 max-age, poll interval + token lifetime + leeway))",
                period.as_secs(),
                min.as_secs()
            )));
        }
        Ok(())
    }

    /// Timings every rule can be computed from: each at least a second, the
    /// JWKS max-age and token lifetime at most a day.
    pub(crate) fn check(&self) -> Result<(), String> {
        let named = [
            ("max_token_lifetime_secs", self.max_token_lifetime),
            ("jwks_max_age_secs", self.jwks_max_age),
            ("poll_interval_secs", self.poll_interval),
        ];
        for (name, value) in named {
            if value < Duration::from_secs(1) {
                return Err(format!("{name} must be at least 1"));
            }
            if value > Duration::from_secs(86_400) {
                return Err(format!("{name} must be at most 86400"));
            }
        }
        if self.leeway > Duration::from_secs(600) {
            return Err("leeway_secs must be at most 600".into());
        }
        Ok(())
    }

    /// What is below production-sane values (for warnings, never refusals:
    /// tests run with second-scale timings).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.poll_interval < Duration::from_secs(5) {
            out.push(format!(
                "poll interval {} s: every replica reads Secrets Manager that often",
                self.poll_interval.as_secs()
            ));
        }
        if self.jwks_max_age < Duration::from_secs(60) {
            out.push(format!(
                "JWKS max-age {} s: verifiers refetch the JWKS that often",
                self.jwks_max_age.as_secs()
            ));
        }
        if self.leeway < Duration::from_secs(30) {
            out.push(format!(
                "leeway {} s: less than the verifiers' usual 30 s of clock skew",
                self.leeway.as_secs()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // P = 30, A = 300, T = 900, L = 60.
    const T: Timings = Timings {
        max_token_lifetime: Duration::from_secs(900),
        jwks_max_age: Duration::from_secs(300),
        poll_interval: Duration::from_secs(30),
        leeway: Duration::from_secs(60),
    };

    #[test]
    fn the_rules() {
        assert_eq!(T.maturity_secs(), 330);
        assert_eq!(T.retire_secs(), 990);
        assert_eq!(T.min_rotation_interval(), Duration::from_secs(990));
        assert_eq!(T.earliest_rotation(1000), 1990);
        assert!(T.check_rotation(1000, 1990).is_ok());
        let early = T.check_rotation(1000, 1500).unwrap_err();
        assert_eq!((early.earliest, early.now), (1990, 1500));
        assert!(early.to_string().contains("in 490 s"), "{early}");
        assert_eq!(T.signing_limit(1000), 1000 + 2 * 990 - 60);
        assert!(T.check_period(Duration::from_secs(7 * 86_400)).is_ok());
        assert!(T.check_period(Duration::from_secs(900)).is_err());
        // A long max-age makes maturity the bound.
        let slow_cache = Timings {
            jwks_max_age: Duration::from_secs(3600),
            ..T
        };
        assert_eq!(slow_cache.min_rotation_interval(), Duration::from_secs(3630));
    }

    #[test]
    fn timings_that_cannot_rotate_are_refused() {
        assert!(T.check().is_ok());
        assert!(Timings {
            poll_interval: Duration::ZERO,
            ..T
        }
        .check()
        .is_err());
        assert!(Timings {
            max_token_lifetime: Duration::from_secs(86_401),
            ..T
        }
        .check()
        .is_err());
        let tests = Timings {
            max_token_lifetime: Duration::from_secs(3),
            jwks_max_age: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
            leeway: Duration::from_secs(1),
        };
        assert!(tests.check().is_ok());
        assert_eq!(tests.warnings().len(), 3);
        assert!(T.warnings().is_empty());
    }
}
