//! UTC calendar dates and Unix seconds, both ways, for the date formats the
//! crates read and print that no dependency does (SigV4's `X-Amz-Date`,
//! RFC 3339 in the token file's metadata; HTTP dates are the `httpdate`
//! crate's): one implementation of Howard
//! Hinnant's `days_from_civil` / `civil_from_days`, for dates from 1970 on.

/// A UTC date and time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// The year, 1970 or later.
    pub year: u64,
    /// 1–12.
    pub month: u64,
    /// 1–31.
    pub day: u64,
    /// 0–23.
    pub hour: u64,
    /// 0–59.
    pub minute: u64,
    /// 0–59 (no leap seconds: Unix time has none).
    pub second: u64,
}

impl Utc {
    /// Unix seconds of this instant, if it is one on the calendar from 1970
    /// on: a month 1–12, a day the month has (no 30 February, 29 February in
    /// leap years only), 00:00:00–23:59:59.
    ///
    /// ```
    /// use oidc_core::calendar::Utc;
    /// let leap_day = Utc { year: 2000, month: 2, day: 29, hour: 12, minute: 0, second: 0 };
    /// assert_eq!(leap_day.unix_seconds(), Some(951_825_600));
    /// assert_eq!(Utc { day: 30, ..leap_day }.unix_seconds(), None);
    /// ```
    pub fn unix_seconds(&self) -> Option<u64> {
        let Utc {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = *self;
        if year < 1970
            || !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        let days = days_from_civil(year, month, day);
        Some(days * 86_400 + hour * 3600 + minute * 60 + second)
    }

    /// The UTC date and time `secs` after 1970-01-01T00:00:00Z.
    ///
    /// ```
    /// use oidc_core::calendar::Utc;
    /// let utc = Utc::from_unix_seconds(1_796_178_846);
    /// assert_eq!(utc.to_string(), "2026-12-02T02:34:06Z");
    /// ```
    pub fn from_unix_seconds(secs: u64) -> Self {
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }
}

/// RFC 3339 in UTC, to the second: `2026-05-01T12:05:00Z`.
impl std::fmt::Display for Utc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Days in `month` (1–12) of the Gregorian `year`.
fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a valid date from 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_index = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(year: u64, month: u64, day: u64, hour: u64, minute: u64, second: u64) -> Utc {
        Utc {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn known_instants() {
        // From Python's calendar.timegm.
        for (date, secs) in [
            (utc(1970, 1, 1, 0, 0, 0), 0),
            (utc(1999, 12, 31, 23, 59, 59), 946_684_799),
            (utc(2000, 2, 29, 12, 0, 0), 951_825_600),
            (utc(2026, 12, 2, 2, 34, 6), 1_796_178_846),
            (utc(2100, 3, 1, 0, 0, 0), 4_107_542_400),
        ] {
            assert_eq!(date.unix_seconds(), Some(secs), "{date}");
            assert_eq!(Utc::from_unix_seconds(secs), date);
        }
    }

    #[test]
    fn dates_off_the_calendar_are_refused() {
        for date in [
            utc(1969, 12, 31, 23, 59, 59),
            utc(2026, 2, 29, 0, 0, 0),
            utc(1900 + 200, 2, 29, 0, 0, 0),
            utc(2026, 4, 31, 0, 0, 0),
            utc(2026, 0, 1, 0, 0, 0),
            utc(2026, 13, 1, 0, 0, 0),
            utc(2026, 1, 0, 0, 0, 0),
            utc(2026, 1, 1, 24, 0, 0),
            utc(2026, 1, 1, 0, 60, 0),
            utc(2026, 1, 1, 0, 0, 60),
            utc(0, 1, 1, 0, 0, 0),
        ] {
            assert_eq!(date.unix_seconds(), None, "{date}");
        }
        assert!(utc(2024, 2, 29, 0, 0, 0).unix_seconds().is_some());
        assert!(utc(2000, 2, 29, 0, 0, 0).unix_seconds().is_some());
    }

    #[test]
    fn every_day_for_three_centuries_round_trips() {
        for days in 0..(300 * 366) {
            let secs = days * 86_400 + 3_723;
            let date = Utc::from_unix_seconds(secs);
            assert_eq!(date.unix_seconds(), Some(secs), "{date}");
        }
    }
}
