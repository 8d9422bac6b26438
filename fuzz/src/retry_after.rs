//! The client's `Retry-After` parser (RFC 9110 §10.2.3; `retry_after.rs`
//! in connector-client, reached through its `fuzzing` module), read at a
//! fixed wall-clock time.
//!
//! Properties: delay-seconds are read exactly (saturating); any other
//! value is read only if it is an HTTP date that the `httpdate` crate reads
//! as the same instant (up to the day name and a leap second, see
//! [`httpdate_reading`]), and then as the time from now to it (zero when
//! it is past).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_client::fuzzing::retry_after;

/// The reading time (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;

/// The instant httpdate reads `value` as, with two liberties of ours that
/// httpdate does not take: the day name is not checked against the date
/// (it is redundant), and second 60 (RFC 9110's leap second) is read as
/// the next second.
fn httpdate_reading(value: &str) -> Option<SystemTime> {
    let (rest, leap) = match value.get(3..) {
        Some(rest) if value.len() == 29 && rest.get(20..22) == Some("60") => (
            format!("{}59{}", &rest[..20], &rest[22..]),
            Duration::from_secs(1),
        ),
        Some(rest) => (rest.to_owned(), Duration::ZERO),
        None => return None,
    };
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .iter()
        .find_map(|day| httpdate::parse_http_date(&format!("{day}{rest}")).ok())
        .map(|at| at + leap)
}

pub fn run(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let Some(delay) = retry_after(value, now) else {
        return;
    };
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let secs = trimmed.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(delay, Duration::from_secs(secs));
        return;
    }
    let at =
        httpdate_reading(trimmed).unwrap_or_else(|| panic!("read {trimmed:?} as a date httpdate refuses"));
    let expected = at.duration_since(now).unwrap_or(Duration::ZERO);
    assert_eq!(
        delay,
        Duration::from_secs(expected.as_secs()),
        "{trimmed:?} read as another instant"
    );
}
