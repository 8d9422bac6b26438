//! The rotation rules, from a document's own [`Timings`] and Secrets
//! Manager's `CreatedDate`s, never from a local clock alone.
//!
//! With `P` the poll interval, `A` the JWKS max-age, `T` the longest token
//! lifetime, `L` the verifiers' leeway and `W` the rotation window, a
//! document created at `C` may be rotated once `C + R` has passed, where
//!
//! ```text
//! R = max(P + A, P + T + L) + W
//! ```
//!
//! Rotations are checked when their `createSecret` runs (against the
//! `CreatedDate` of the document in force), but a document comes into force
//! only when `finishSecret` runs; `finishSecret` refuses a document created
//! more than `W` before ([`Timings::check_finish`]), so every document comes
//! into force between `C` and `C + W`. Hence, between two documents coming
//! into force there are at least `R - W`:
//!
//! - `P + A`: the `next` key has been published that long: every replica has
//!   read it, and every verifier's cached JWKS has expired since, so the key
//!   may sign;
//! - `P + T + L`: the `previous` key (which the rotation removes) stopped
//!   signing when the document came in force, at most `P` later on the
//!   slowest replica, so its last token has expired, leeway included;
//!
//! and a schedule's period must be at least `R`. Every key is thus published
//! for a whole period before it signs and stays published for one after.
//!
//! The current key's tokens are capped at the earliest time it could leave
//! the set (two documents later), less `L` ([`Timings::signing_limit`]). A
//! server that read the document created at `C` still in force at `t` knows
//! the next document was not in force at `t`, so was created after `t - W`
//! (and after `C + R`), and the one after that, which removes the key, after
//! one more `R`: the cap is `max(C + R, t - W) + R - L`. It moves forward
//! with every successful read, so a set that rotates once a week serves all
//! week; it stops only when reads have failed for long enough that a
//! removal could have gone unseen.

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

/// A rotation whose `finishSecret` came later than the rotation window allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the pending key set was created at {created} and may come into force until {deadline} (rotation window \
     {window} s); it is {} s late: start another rotation",
    now.saturating_sub(*deadline)
)]
pub struct TooLate {
    /// When the pending document was created (Secrets Manager's clock).
    pub created: u64,
    /// The last moment it could come into force.
    pub deadline: u64,
    /// The time of the step.
    pub now: u64,
    /// `W` in seconds.
    pub window: u64,
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

    /// `W`: the longest a rotation may take from `createSecret` to `finishSecret`.
    pub fn window_secs(&self) -> u64 {
        secs(self.rotation_window)
    }

    /// `R`: the least time between two rotations.
    pub fn min_rotation_interval(&self) -> Duration {
        Duration::from_secs(
            self.maturity_secs()
                .max(self.retire_secs())
                .saturating_add(self.window_secs()),
        )
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

    /// `Ok` if a pending document created at `created_at` may come into
    /// force at `now` (its `finishSecret`): at most the rotation window
    /// after its creation.
    pub fn check_finish(&self, created_at: u64, now: u64) -> Result<(), TooLate> {
        let deadline = created_at.saturating_add(self.window_secs());
        if now <= deadline {
            return Ok(());
        }
        Err(TooLate {
            created: created_at,
            deadline,
            now,
            window: self.window_secs(),
        })
    }

    /// No token signed by the current key of the document created at
    /// `created_at`, read still in force at `read_at`, may expire after
    /// this: the earliest time the key could leave the set (two documents
    /// later, see the module documentation), less the leeway.
    pub fn signing_limit(&self, created_at: u64, read_at: u64) -> u64 {
        let r = self.min_rotation_interval().as_secs();
        let next_created = created_at
            .saturating_add(r)
            .max(read_at.saturating_sub(self.window_secs()));
        next_created.saturating_add(r).saturating_sub(secs(self.leeway))
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
            ("rotation_window_secs", self.rotation_window),
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
        if self.rotation_window < Duration::from_secs(60) {
            out.push(format!(
                "rotation window {} s: a rotation whose steps are retried later than that starts over",
                self.rotation_window.as_secs()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // P = 30, A = 300, T = 900, L = 60, W = 120.
    const T: Timings = Timings {
        max_token_lifetime: Duration::from_secs(900),
        jwks_max_age: Duration::from_secs(300),
        poll_interval: Duration::from_secs(30),
        leeway: Duration::from_secs(60),
        rotation_window: Duration::from_secs(120),
    };

    #[test]
    fn the_rules() {
        assert_eq!(T.maturity_secs(), 330);
        assert_eq!(T.retire_secs(), 990);
        assert_eq!(T.min_rotation_interval(), Duration::from_secs(1110));
        assert_eq!(T.earliest_rotation(1000), 2110);
        assert!(T.check_rotation(1000, 2110).is_ok());
        let early = T.check_rotation(1000, 1500).unwrap_err();
        assert_eq!((early.earliest, early.now), (2110, 1500));
        assert!(early.to_string().contains("in 610 s"), "{early}");
        assert!(T.check_period(Duration::from_secs(7 * 86_400)).is_ok());
        assert!(T.check_period(Duration::from_secs(900)).is_err());
        // A long max-age makes maturity the bound.
        let slow_cache = Timings {
            jwks_max_age: Duration::from_secs(3600),
            ..T
        };
        assert_eq!(slow_cache.min_rotation_interval(), Duration::from_secs(3750));
    }

    #[test]
    fn a_pending_document_comes_into_force_within_the_window() {
        assert!(T.check_finish(1000, 1000).is_ok());
        assert!(T.check_finish(1000, 1120).is_ok());
        let late = T.check_finish(1000, 1121).unwrap_err();
        assert_eq!((late.deadline, late.now, late.window), (1120, 1121, 120));
        assert!(late.to_string().contains("1 s late"), "{late}");
    }

    #[test]
    fn the_signing_limit_moves_with_every_read() {
        let r = T.min_rotation_interval().as_secs();
        // Read at its creation: the key leaves two rotations later at the earliest.
        assert_eq!(T.signing_limit(1000, 1000), 1000 + 2 * r - 60);
        // A week later, still in force: the next document cannot have been
        // created before the read less the window, so the key stays a whole
        // R (less W) beyond the read.
        let week = 1000 + 7 * 86_400;
        assert_eq!(T.signing_limit(1000, week), week - 120 + r - 60);
        // In the steady state a token of the longest lifetime issued up to a
        // poll interval after a read is never shortened by the cap.
        for read in [1000, 1000 + r, 1000 + 3 * r, week] {
            let issued = read + 30;
            assert!(issued + 900 <= T.signing_limit(1000, read), "read at {read}");
        }
        // Whatever the read says, never below the bound from the creation alone.
        assert_eq!(T.signing_limit(1000, 0), T.signing_limit(1000, 1000));
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
        assert!(Timings {
            rotation_window: Duration::ZERO,
            ..T
        }
        .check()
        .is_err());
        let tests = Timings {
            max_token_lifetime: Duration::from_secs(3),
            jwks_max_age: Duration::from_secs(2),
            poll_interval: Duration::from_secs(1),
            leeway: Duration::from_secs(1),
            rotation_window: Duration::from_secs(2),
        };
        assert!(tests.check().is_ok());
        assert_eq!(tests.warnings().len(), 4);
        assert!(T.warnings().is_empty());
    }
}
