//! Squid's `time` ACL: days of the week and a time-of-day window, in local time.
//!
//! Squid writes `acl work time MTWHF 08:00-17:00`: day letters `S M T W H F A` (Sunday to
//! Saturday, `H` for Thursday, `A` for Saturday) and `D` for every weekday, then an
//! `h1:m1-h2:m2` window with h1:m1 before h2:m2, both ends included (to the minute). Either part
//! may be left out: no days means every day, no window the whole day. Matching is pure: the
//! caller turns its clock's reading into a [`LocalTime`] with [`LocalTime::at`].

use std::time::SystemTime;

/// A moment as the `time` ACL sees it: day of the week and minute of the day, local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// 0 = Sunday ... 6 = Saturday.
    pub weekday: u8,
    /// Minutes since local midnight, 0..1440.
    pub minute: u16,
}

impl LocalTime {
    /// `at` in the system's time zone (`TZ`, else `/etc/localtime`, as the C library reads it).
    pub fn at(at: SystemTime) -> Option<Self> {
        Self::in_zone(at, jiff::tz::TimeZone::system())
    }

    /// `at` in `zone`.
    pub fn in_zone(at: SystemTime, zone: jiff::tz::TimeZone) -> Option<Self> {
        let stamp = jiff::Timestamp::try_from(at).ok()?;
        let zoned = stamp.to_zoned_datetime(zone);
        Some(Self {
            weekday: u8::try_from(zoned.weekday().to_sunday_zero_offset()).ok()?,
            minute: u16::try_from(zoned.hour()).ok()? * 60 + u16::try_from(zoned.minute()).ok()?,
        })
    }
}

/// One day-and-window spec of a `time` ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSpec {
    /// Bit `n` set: weekday `n` (0 = Sunday) is in.
    days: u8,
    /// First and last minute of the window, inclusive.
    start: u16,
    end: u16,
}

const ALL_DAYS: u8 = 0b111_1111;
const WHOLE_DAY: (u16, u16) = (0, 24 * 60 - 1);

impl TimeSpec {
    /// Whether `now` falls inside.
    pub fn contains(&self, now: LocalTime) -> bool {
        self.days & (1 << now.weekday) != 0 && (self.start..=self.end).contains(&now.minute)
    }

    /// Parses a `time` ACL's values: each day-letter word starts a spec, and a window after
    /// it belongs to it (`["MTWHF", "08:00-17:00", "A", "10:00-12:00"]` is two specs); a
    /// window with no days before it applies to every day.
    pub fn parse_list(words: &[String]) -> Result<Vec<Self>, String> {
        let mut specs: Vec<Self> = Vec::new();
        let mut open: Option<u8> = None;
        for word in words {
            if word.contains(':') {
                let (start, end) = parse_window(word)?;
                specs.push(Self {
                    days: open.take().unwrap_or(ALL_DAYS),
                    start,
                    end,
                });
            } else {
                if let Some(days) = open.replace(parse_days(word)?) {
                    specs.push(whole_day(days));
                }
            }
        }
        if let Some(days) = open {
            specs.push(whole_day(days));
        }
        if specs.is_empty() {
            return Err("needs days, a window or both".to_owned());
        }
        Ok(specs)
    }
}

fn whole_day(days: u8) -> TimeSpec {
    TimeSpec {
        days,
        start: WHOLE_DAY.0,
        end: WHOLE_DAY.1,
    }
}

fn parse_days(word: &str) -> Result<u8, String> {
    let mut days = 0;
    for letter in word.chars() {
        days |= match letter {
            'S' => 1 << 0,
            'M' => 1 << 1,
            'T' => 1 << 2,
            'W' => 1 << 3,
            'H' => 1 << 4,
            'F' => 1 << 5,
            'A' => 1 << 6,
            'D' => 0b011_1110,
            other => {
                return Err(format!(
                    "`{other}` in `{word}` is not a day letter (S M T W H F A, D for weekdays)"
                ))
            }
        };
    }
    if days == 0 {
        return Err("an empty day list".to_owned());
    }
    Ok(days)
}

fn parse_window(word: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{word}` is not a window like 08:00-17:30");
    let (from, to) = word.split_once('-').ok_or_else(bad)?;
    let minute = |hm: &str| -> Option<u16> {
        let (h, m) = hm.split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        // Squid accepts 24:00 as the end of the day.
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (minute(from).ok_or_else(bad)?, minute(to).ok_or_else(bad)?);
    if start >= end {
        return Err(format!("`{word}`: the start must be before the end"));
    }
    Ok((start, end.min(WHOLE_DAY.1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    fn at(weekday: u8, h: u16, m: u16) -> LocalTime {
        LocalTime {
            weekday,
            minute: h * 60 + m,
        }
    }

    #[test]
    fn squid_day_letters_and_an_inclusive_window() {
        let specs = TimeSpec::parse_list(&words(&["MTWHF", "08:00-17:00"])).unwrap();
        let inside = |t| specs.iter().any(|s| s.contains(t));
        assert!(inside(at(1, 8, 0)), "Monday 08:00");
        assert!(inside(at(4, 17, 0)), "Thursday (H) 17:00, end included");
        assert!(!inside(at(5, 17, 1)), "Friday 17:01");
        assert!(!inside(at(6, 12, 0)), "Saturday (A)");
        assert!(!inside(at(0, 12, 0)), "Sunday");
        assert!(!inside(at(3, 7, 59)), "Wednesday 07:59");
    }

    #[test]
    fn days_alone_windows_alone_and_several_specs() {
        let weekend = TimeSpec::parse_list(&words(&["SA"])).unwrap();
        assert!(weekend[0].contains(at(0, 0, 0)) && weekend[0].contains(at(6, 23, 59)));
        assert!(!weekend[0].contains(at(1, 12, 0)));
        let nights = TimeSpec::parse_list(&words(&["00:00-06:00"])).unwrap();
        assert!(nights[0].contains(at(3, 5, 0)) && !nights[0].contains(at(3, 7, 0)));
        let two = TimeSpec::parse_list(&words(&["D", "09:00-12:00", "A", "10:00-11:00"])).unwrap();
        assert_eq!(two.len(), 2);
        assert!(two[1].contains(at(6, 10, 30)) && !two[1].contains(at(6, 9, 30)));
        assert!(!two[0].contains(at(0, 10, 0)), "D is weekdays only");
        let to_midnight = TimeSpec::parse_list(&words(&["18:00-24:00"])).unwrap();
        assert!(to_midnight[0].contains(at(2, 23, 59)));
    }

    #[test]
    fn bad_specs_say_why() {
        for bad in [
            &["X"][..],
            &["8-17"],
            &["17:00-08:00"],
            &["08:00-25:00"],
            &[],
        ] {
            assert!(TimeSpec::parse_list(&words(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn local_time_is_the_weekday_and_minute_in_the_zone() {
        use jiff::tz::{Offset, TimeZone};
        // 2024-01-04, a Thursday, 12:34:56 UTC.
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_371_696);
        assert_eq!(LocalTime::in_zone(t, TimeZone::UTC), Some(at(4, 12, 34)));
        let new_york_winter = TimeZone::fixed(Offset::constant(-5));
        assert_eq!(LocalTime::in_zone(t, new_york_winter), Some(at(4, 7, 34)));
        let far_east = TimeZone::fixed(Offset::constant(14));
        assert_eq!(LocalTime::in_zone(t, far_east), Some(at(5, 2, 34)));
    }
}
