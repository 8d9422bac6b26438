//! `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date.

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value into a delay from `now` (wall clock, since an
/// HTTP date is absolute). A date in the past means "now" (zero). Values that
/// do not parse are ignored (`None`), as RFC 9110 lets a recipient do.
///
/// Dates are read by the `httpdate` crate (hyper's): the three forms RFC
/// 9110 §5.6.7 has a recipient accept (IMF-fixdate and the obsolete RFC 850
/// and asctime forms), and only a date that is on the calendar as written:
/// it formats what it read back and compares, so 31 February is refused
/// rather than read as 3 March, and so are a day name that is not the
/// date's and second 60 (Unix clocks, which servers date by, have no leap
/// seconds).
pub(crate) fn parse(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values rather than fail; the caller clamps them.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    /// The instant `value` names, in Unix seconds (the delay from 1970).
    fn unix(value: &str) -> Option<u64> {
        parse(value, UNIX_EPOCH).map(|delay| delay.as_secs())
    }

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
        assert_eq!(unix("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(unix("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(unix("Tue, 29 Feb 2028 12:00:00 GMT"), Some(1_835_438_400));
        assert_eq!(unix("Fri, 31 Dec 9999 23:59:59 GMT"), Some(253_402_300_799));
        // The obsolete forms, which a recipient must accept (RFC 9110
        // §5.6.7); a two-digit year before 70 is in this century.
        assert_eq!(unix("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(unix("Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(unix("Tuesday, 29-Feb-28 12:00:00 GMT"), Some(1_835_438_400));
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 30);
        assert_eq!(
            parse(" Sun, 06 Nov 1994 08:49:37 GMT ", now),
            Some(Duration::from_secs(30))
        );
        let later = UNIX_EPOCH + Duration::from_secs(784_111_777 + 30);
        assert_eq!(
            parse("Sun, 06 Nov 1994 08:49:37 GMT", later),
            Some(Duration::ZERO)
        );
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Xyz 1994 08:49:37 GMT",
            "Sun, 6  Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:60:37 GMT",
            "sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT+1",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov 06 08:49:37 94",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT Sun, 06 Nov 1994 08:49:37 GMT",
            "Sun, ０6 Nov 1994 08:49:37 GMT",
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
            "Tuesday, 31-Feb-23 22:15:00 GMT",
            "Tue Feb 31 22:15:00 2023",
        ] {
            assert_eq!(parse(value, now), None, "{value}");
        }
        assert_eq!(
            parse("Thu, 29 Feb 2024 00:00:00 GMT", now),
            Some(Duration::from_secs(1_709_164_800))
        );
    }

    /// What the date says must hold together: a day name that is not the
    /// date's, or second 60, is not a date a Unix-clocked server sends, and
    /// the value is ignored (the caller backs off by its own rule).
    #[test]
    fn dates_that_contradict_themselves_are_ignored() {
        let now = UNIX_EPOCH;
        for value in [
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Monday, 06-Nov-94 08:49:37 GMT",
            "Mon Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 23:59:60 GMT",
        ] {
            assert_eq!(parse(value, now), None, "{value}");
        }
    }
}
