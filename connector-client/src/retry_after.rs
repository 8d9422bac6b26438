//! `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oidc_core::internal::calendar::Utc;

/// Parses a `Retry-After` value into a delay from `now` (wall clock, since an
/// HTTP date is absolute). A date in the past means "now" (zero). Values that
/// do not parse are ignored (`None`), as RFC 9110 lets a recipient do.
///
/// Only the IMF-fixdate form of HTTP dates is understood; the two obsolete
/// forms (RFC 850, asctime) are not sent by any current server.
pub(crate) fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values rather than fail; the caller clamps them.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_imf_fixdate(value)?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(at.saturating_sub(now)))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` → Unix seconds.
fn parse_imf_fixdate(value: &str) -> Option<u64> {
    let bytes = value.as_bytes();
    if bytes.len() != 29 || &bytes[3..5] != b", " || &bytes[25..] != b" GMT" {
        return None;
    }
    if !["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].contains(&value.get(0..3)?) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let digits = value.get(range)?;
        if digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    };
    let day = number(5..7)?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| value.get(8..11) == Some(*m))? as u64
        + 1;
    let year = number(12..16)?;
    if bytes[7] != b' ' || bytes[11] != b' ' || bytes[16] != b' ' || bytes[19] != b':' || bytes[22] != b':' {
        return None;
    }
    let (hour, minute, second) = (number(17..19)?, number(20..22)?, number(23..25)?);
    // A date on the calendar (the fuzz target retry_after found 31 Feb read
    // as 3 March); second 60 is RFC 9110's leap second, the next second's
    // instant in Unix time.
    let leap = second == 60;
    let at = Utc {
        year,
        month,
        day,
        hour,
        minute,
        second: if leap { 59 } else { second },
    }
    .unix_seconds()?;
    Some(at + u64::from(leap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        let now = SystemTime::now();
        assert_eq!(parse("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse("-1", now), None);
        assert_eq!(parse("1.5", now), None);
        assert_eq!(parse("", now), None);
        assert_eq!(
            parse("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn http_dates() {
        // 1994-11-06T08:49:37Z is Unix 784111777.
        assert_eq!(
            parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_imf_fixdate("Tue, 29 Feb 2028 12:00:00 GMT"),
            Some(1_835_438_400)
        );
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(30))
        );
        let later = UNIX_EPOCH + Duration::from_secs(784_111_777 + 30);
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
        for bad in [
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 6  Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
        ] {
            assert_eq!(parse(bad, now), None, "{bad}");
        }
    }

    /// Found by the fuzz target `retry_after` (a date is read only as the
    /// instant the httpdate crate reads): days past the end of the month
    /// were read as a date in the next month.
    #[test]
    fn fuzz_regression_retry_after_date_not_on_the_calendar() {
        let now = UNIX_EPOCH;
        for value in [
            "Tue, 31 Feb 2023 22:15:00 GMT",
            "Wed, 29 Feb 2023 00:00:00 GMT",
            "Fri, 31 Apr 2026 00:00:00 GMT",
        ] {
            assert_eq!(parse(value, now), None, "{value}");
        }
        assert_eq!(
            parse("Thu, 29 Feb 2024 00:00:00 GMT", now),
            Some(Duration::from_secs(1_709_164_800))
        );
    }
}
