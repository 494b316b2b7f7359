//! Calendar fields of a UTC time, for the date stamps of the `combined` and `json` lines.
//!
//! Proleptic Gregorian calendar from days since 1970-01-01 (Howard Hinnant's `civil_from_days`),
//! so the log needs no time-zone database; lines are stamped in UTC and say so.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC time broken into its calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub millis: u16,
}

/// English month abbreviations, as in `10/Oct/2000:13:55:36`.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Civil {
    /// The calendar fields of `time` in UTC (times before 1970 count as 1970-01-01).
    pub fn of(time: SystemTime) -> Self {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let of_day = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        // Each narrowing below is of a value already bounded by its modulus.
        Self {
            year,
            month,
            day,
            hour: u8::try_from(of_day / 3600).unwrap_or(0),
            minute: u8::try_from(of_day / 60 % 60).unwrap_or(0),
            second: u8::try_from(of_day % 60).unwrap_or(0),
            millis: u16::try_from(since.subsec_millis()).unwrap_or(0),
        }
    }

    /// The month's English abbreviation.
    pub fn month_name(&self) -> &'static str {
        MONTHS[usize::from(self.month.clamp(1, 12) - 1)]
    }
}

/// (year, month, day) of the day `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

/// `value` as two digits (callers pass 0..=99).
pub fn push2(out: &mut String, value: u8) {
    out.push(char::from(b'0' + value / 10 % 10));
    out.push(char::from(b'0' + value % 10));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn matches_humantime_across_leap_years_and_month_ends() {
        // Every 7th day and 13th hour from 1970 to beyond 2100 (not a leap year), against an
        // independent RFC 3339 formatter.
        let mut secs = 0u64;
        while secs < 4_200_000_000 {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(secs % 1000);
            let c = Civil::of(t);
            let ours = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                c.year, c.month, c.day, c.hour, c.minute, c.second, c.millis
            );
            assert_eq!(ours, humantime::format_rfc3339_millis(t).to_string());
            secs += 7 * 86_400 + 13 * 3600 + 17;
        }
    }

    #[test]
    fn known_dates() {
        let c = Civil::of(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123));
        assert_eq!((c.year, c.month, c.day), (2023, 11, 14));
        assert_eq!((c.hour, c.minute, c.second, c.millis), (22, 13, 20, 123));
        assert_eq!(c.month_name(), "Nov");
        let leap = Civil::of(UNIX_EPOCH + Duration::from_secs(951_782_400)); // 2000-02-29
        assert_eq!((leap.year, leap.month, leap.day), (2000, 2, 29));
        assert_eq!(Civil::of(UNIX_EPOCH).month_name(), "Jan");
    }
}
