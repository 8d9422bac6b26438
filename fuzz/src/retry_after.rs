//! The client's `Retry-After` parser (RFC 9110 §10.2.3; `retry_after.rs`
//! in connector-client, reached through its `fuzzing` module), read at a
//! fixed wall-clock time.
//!
//! The parser reads HTTP dates with the `httpdate` crate, so that crate is
//! no oracle for it; what is checked is the parser's own part, and that its
//! two forms agree:
//! - any text: delay-seconds (digits, whitespace around them) are read
//!   exactly, saturating; anything else only as a date httpdate reads, as
//!   the time from now to it (zero when it is past);
//! - the instant in the input's first 8 bytes, written in each of the three
//!   HTTP-date forms (with whitespace from the rest of the input around
//!   it): read as the same delay as the delay-seconds that name it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use connector_client::fuzzing::retry_after;

/// The reading time (2023-11-14T22:13:20Z).
pub const NOW: u64 = 1_700_000_000;

/// 10000-01-01T00:00:00Z: HTTP dates have four-digit years.
const YEAR_10000: u64 = 253_402_300_800;

pub fn run(data: &[u8]) {
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    if let Ok(value) = std::str::from_utf8(data) {
        any_text(value, now);
    }
    if let Some((instant, rest)) = data.split_first_chunk::<8>() {
        same_instant(u64::from_le_bytes(*instant) % YEAR_10000, rest, now);
    }
}

fn any_text(value: &str, now: SystemTime) {
    let Some(delay) = retry_after(value, now) else {
        return;
    };
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let secs = trimmed.parse::<u64>().unwrap_or(u64::MAX);
        assert_eq!(delay, Duration::from_secs(secs));
        return;
    }
    let at = httpdate::parse_http_date(trimmed)
        .unwrap_or_else(|_| panic!("read {trimmed:?} as a date httpdate refuses"));
    assert_eq!(delay, at.duration_since(now).unwrap_or(Duration::ZERO), "{trimmed:?}");
}

/// `secs` as delay-seconds and as each HTTP-date form, all read alike.
fn same_instant(secs: u64, padding: &[u8], now: SystemTime) {
    let pad: String = padding
        .iter()
        .take(4)
        .map(|b| [' ', '\t', '\r', '\n', '\u{a0}', '\u{3000}'][usize::from(*b) % 6])
        .collect();
    let expected = Some(Duration::from_secs(secs.saturating_sub(NOW)));
    let seconds = format!("{pad}{}{pad}", secs.saturating_sub(NOW));
    assert_eq!(retry_after(&seconds, now), expected, "{seconds:?}");
    for date in http_dates(secs) {
        let value = format!("{pad}{date}{pad}");
        assert_eq!(retry_after(&value, now), expected, "{value:?}");
    }
}

/// The instant `secs` as IMF-fixdate (httpdate's printer), asctime, and
/// (for the years its two digits name: 1970–2069) RFC 850.
fn http_dates(secs: u64) -> Vec<String> {
    // "Tue, 14 Nov 2023 22:13:20 GMT"
    let imf = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs));
    let (day_name, day, month, year, time) = (&imf[..3], &imf[5..7], &imf[8..11], &imf[12..16], &imf[17..25]);
    let asctime = format!("{day_name} {month} {:>2} {time} {year}", day.trim_start_matches('0'));
    let mut dates = vec![imf.clone(), asctime];
    if year < "2070" {
        let long_name = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
            .into_iter()
            .find(|name| name.starts_with(day_name))
            .unwrap_or(day_name);
        dates.push(format!("{long_name}, {day}-{month}-{} {time} GMT", &year[2..]));
    }
    dates
}
