//! Lenient HTTP-date parsing (RFC 9110 §5.6.7), the one parser every date field goes through.
//!
//! "A recipient that parses a timestamp value in an HTTP field MUST accept all three HTTP-date
//! formats" and recipients "are encouraged to be robust in parsing timestamps". The `httpdate`
//! crate is strict (it rejects, for instance, an asctime date whose weekday does not match the
//! date, which real servers send), so the three formats are read here field by field:
//!
//! ```text
//! IMF-fixdate   Sun, 06 Nov 1994 08:49:37 GMT
//! rfc850-date   Sunday, 06-Nov-94 08:49:37 GMT
//! asctime-date  Sun Nov  6 08:49:37 1994
//! ```
//!
//! What is relaxed, and why:
//! - the day name is skipped, never checked against the date (it is redundant, and a wrong one
//!   is the most common defect in the wild);
//! - letters match case-insensitively (RFC 9111 §4.2: "a cache recipient SHOULD match the field
//!   value case-insensitively");
//! - runs of spaces count as one, so `Nov  6` and `Nov 6` both read.
//!
//! What is not: a zone other than `GMT` on the two formats that carry one (RFC 9111 §4.2: a
//! cache "SHOULD consider a date with a zone abbreviation other than "GMT" to be invalid"),
//! out-of-range fields (month 13, hour 24, day 31 of a 30-day month), trailing garbage. An
//! rfc850 two-digit year that "appears to be more than 50 years in the future" is "the most
//! recent year in the past that had the same last two digits" (§5.6.7), judged against `now`.
//! The crate still formats dates (`httpdate::fmt_http_date`); only parsing lives here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest text taken as a date: the longest valid form is about 37 bytes.
const MAX_LEN: usize = 64;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// A calendar date and time of day, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Parses an HTTP-date in any of the three formats; `now` resolves rfc850's two-digit years.
pub fn parse_http_date(text: &str, now: SystemTime) -> Option<SystemTime> {
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() || text.len() > MAX_LEN || !text.is_ascii() {
        return None;
    }
    let civil = if let Some((_day_name, rest)) = text.split_once(',') {
        parse_after_comma(rest, now)?
    } else {
        parse_asctime(text)?
    };
    to_system_time(civil)
}

/// The part after `day-name ","`: `06 Nov 1994 08:49:37 GMT` or `06-Nov-94 08:49:37 GMT`.
fn parse_after_comma(rest: &str, now: SystemTime) -> Option<Civil> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let first = words.next()?;
    let (day, month, year) = if first.contains('-') {
        // rfc850: date2 = day "-" month "-" 2DIGIT
        let mut parts = first.split('-');
        let day = digits(parts.next()?, 1, 2)?;
        let month = month_number(parts.next()?)?;
        let yy = parts.next()?;
        if parts.next().is_some() || yy.len() != 2 {
            return None;
        }
        (day, month, two_digit_year(digits(yy, 2, 2)?, now))
    } else {
        // IMF-fixdate: date1 = day SP month SP year
        let day = digits(first, 1, 2)?;
        let month = month_number(words.next()?)?;
        let year = i64::from(digits(words.next()?, 4, 4)?);
        (day, month, year)
    };
    let (hour, minute, second) = time_of_day(words.next()?)?;
    if !words.next()?.eq_ignore_ascii_case("gmt") || words.next().is_some() {
        return None;
    }
    civil(year, month, day, hour, minute, second)
}

/// `Sun Nov  6 08:49:37 1994` (the day name is skipped).
fn parse_asctime(text: &str) -> Option<Civil> {
    let mut words = text.split(' ').filter(|w| !w.is_empty());
    let _day_name = words.next()?;
    let month = month_number(words.next()?)?;
    let day = digits(words.next()?, 1, 2)?;
    let (hour, minute, second) = time_of_day(words.next()?)?;
    let year = i64::from(digits(words.next()?, 4, 4)?);
    if words.next().is_some() {
        return None;
    }
    civil(year, month, day, hour, minute, second)
}

/// §5.6.7: a two-digit year more than 50 years after `now`'s year belongs to the century
/// before.
fn two_digit_year(yy: u32, now: SystemTime) -> i64 {
    let now_year = now
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs() / 86_400).ok())
        .map_or(1970, |days| civil_from_days(days).0);
    let century = now_year - now_year.rem_euclid(100);
    let year = century + i64::from(yy);
    if year - now_year > 50 {
        year - 100
    } else {
        year
    }
}

/// `hh:mm:ss`, each exactly two digits; second 60 is a leap second (read as 59).
fn time_of_day(word: &str) -> Option<(u32, u32, u32)> {
    let mut parts = word.split(':');
    let hour = digits(parts.next()?, 2, 2)?;
    let minute = digits(parts.next()?, 2, 2)?;
    let second = digits(parts.next()?, 2, 2)?;
    if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some((hour, minute, second.min(59)))
}

/// A month abbreviation, any letter case.
fn month_number(word: &str) -> Option<u32> {
    let index = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(word))?;
    u32::try_from(index + 1).ok()
}

/// `word` as a decimal number of `min..=max` ASCII digits.
fn digits(word: &str, min: usize, max: usize) -> Option<u32> {
    if word.len() < min || word.len() > max || !word.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    word.parse().ok()
}

/// Checks the day against the month's length.
fn civil(year: i64, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Option<Civil> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day == 0 || day > days_in_month {
        return None;
    }
    Some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year, month and day of a day count since 1970-01-01 (the inverse of the above).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = u32::try_from(day_of_year - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The instant a civil UTC time names; dates before 1970 are not representable as HTTP dates
/// a cache can use, and read as invalid.
fn to_system_time(c: Civil) -> Option<SystemTime> {
    let days = days_from_civil(c.year, c.month, c.day);
    let secs = days
        .checked_mul(86_400)?
        .checked_add(i64::from(c.hour * 3600 + c.minute * 60 + c.second))?;
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// A fixed "now" for unit tests of the modules that read dates: 2026-12-01 00:00:00 UTC.
#[cfg(test)]
pub(crate) fn test_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_083_200)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn parse(text: &str) -> Option<SystemTime> {
        parse_http_date(text, test_now())
    }

    #[test]
    fn the_three_formats_of_rfc_9110() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse(text), Some(at(EXAMPLE)), "{text}");
        }
    }

    #[test]
    fn a_wrong_day_name_is_ignored() {
        // 8 Aug 2050 is a Monday.
        let want = parse("Mon, 08 Aug 2050 00:00:00 GMT");
        assert!(want.is_some());
        assert_eq!(parse("Thu Aug  8 00:00:00 2050"), want);
        assert_eq!(parse("Thu, 08 Aug 2050 00:00:00 GMT"), want);
        assert_eq!(parse("Thursday, 08-Aug-50 00:00:00 GMT"), want);
        assert_eq!(parse("Xyz, 08 Aug 2050 00:00:00 GMT"), want);
    }

    #[test]
    fn letter_case_and_extra_spaces_do_not_matter() {
        for text in [
            "sun, 06 NOV 1994 08:49:37 gmt",
            "Sun,  06  Nov  1994  08:49:37  GMT",
            "SUN NOV 6 08:49:37 1994",
            "Sun, 6 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(text), Some(at(EXAMPLE)), "{text}");
        }
    }

    #[test]
    fn two_digit_years_follow_the_fifty_year_rule() {
        // From 2026: 76 is 2076 (50 years ahead, not more), 77 is 1977 (51 ahead would be
        // "more than 50 years in the future"), 26 is 2026, 94 is 1994.
        let year = |text: &str| {
            let secs = parse(text).unwrap().duration_since(UNIX_EPOCH).unwrap();
            civil_from_days(i64::try_from(secs.as_secs() / 86_400).unwrap()).0
        };
        assert_eq!(year("Sunday, 01-Jan-76 00:00:00 GMT"), 2076);
        assert_eq!(year("Sunday, 01-Jan-77 00:00:00 GMT"), 1977);
        assert_eq!(year("Sunday, 01-Jan-26 00:00:00 GMT"), 2026);
        assert_eq!(year("Sunday, 06-Nov-94 00:00:00 GMT"), 1994);
    }

    #[test]
    fn invalid_dates_are_refused() {
        for text in [
            "",
            "0",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1995 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37",
            "Thu, 01 Jan 1960 00:00:00 GMT",
            "Sün, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn leap_days_and_leap_seconds() {
        assert!(parse("Thu, 29 Feb 2024 12:00:00 GMT").is_some());
        assert!(parse("Tue, 29 Feb 2000 12:00:00 GMT").is_some());
        assert_eq!(parse("Mon, 29 Feb 1900 12:00:00 GMT"), None);
        assert_eq!(
            parse("Sat, 31 Dec 2016 23:59:60 GMT"),
            parse("Sat, 31 Dec 2016 23:59:59 GMT")
        );
    }

    #[test]
    fn agrees_with_httpdate_on_what_it_formats() {
        // Every 37 hours 13 minutes over 60 years: formatting then parsing is the identity.
        let mut secs = 0u64;
        while secs < 60 * 365 * 86_400 {
            let t = at(secs);
            assert_eq!(parse(&httpdate::fmt_http_date(t)), Some(t), "{secs}");
            secs += 37 * 3600 + 13 * 60 + 7;
        }
    }

    #[test]
    fn civil_day_counts_round_trip() {
        for days in [-719_468, -1, 0, 1, 10_957, 19_723, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
    }
}
