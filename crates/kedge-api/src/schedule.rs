//! Cron schedules of sync windows: the five standard fields (minute, hour, day of month, month, day of week) with
//! `*`, lists, ranges and steps, month and day names, and `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, read
//! in a time zone.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan, Zoned};

/// Why a schedule or time zone cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not five fields, or a field out of range.
    #[error("schedule {schedule:?}: {why}")]
    Invalid {
        /// The schedule.
        schedule: String,
        /// What is wrong.
        why: String,
    },
    /// An unknown time zone.
    #[error("unknown time zone {0:?}")]
    TimeZone(String),
}

/// A parsed cron schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Day of month and day of week both restricted: either matches (cron's rule).
    either_day: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let star = text == "*" || text == "?";
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let value = |v: &str| -> Result<u32, String> {
            let lower = v.to_ascii_lowercase();
            if let Some(i) = names.iter().position(|n| *n == lower) {
                return Ok(i as u32 + name_base);
            }
            let n: u32 = v.parse().map_err(|_| format!("{v:?} is not a number"))?;
            // Day of week 7 is Sunday too.
            let n = if max == 6 && n == 7 { 0 } else { n };
            if n < min || n > max {
                return Err(format!("{n} is outside {min}-{max}"));
            }
            Ok(n)
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step > 1 { max } else { v })
        };
        if lo > hi {
            return Err(format!("range {range:?} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: String| ScheduleError::Invalid {
            schedule: s.to_owned(),
            why,
        };
        let expanded = match s.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = parts[..] else {
            return Err(invalid(format!("expected 5 fields, found {}", parts.len())));
        };
        let (minutes, _) = field(mi, 0, 59, &[], 0).map_err(&invalid)?;
        let (hours, _) = field(h, 0, 23, &[], 0).map_err(&invalid)?;
        let (days, dom_star) = field(dom, 1, 31, &[], 0).map_err(&invalid)?;
        let (months, _) = field(mo, 1, 12, &MONTHS, 1).map_err(&invalid)?;
        let (weekdays, dow_star) = field(dow, 0, 6, &WEEKDAYS, 0).map_err(&invalid)?;
        Ok(Self {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            either_day: !dom_star && !dow_star,
        })
    }
}

impl Schedule {
    fn day_matches(&self, dt: &DateTime) -> bool {
        let dom = self.days & (1 << dt.day()) != 0;
        let dow = self.weekdays & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first start strictly after `after`, read in `tz`; `None` when there is none within five years.
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        // From the next whole minute, skipping months, days and hours that cannot match.
        let start = after.to_zoned(tz.clone()).datetime();
        let mut dt = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.checked_add(Span::new().years(5)).ok()?;
        while dt < limit {
            if self.months & (1 << dt.month()) == 0 {
                dt = dt
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .start_of_day();
                continue;
            }
            if !self.day_matches(&dt) {
                dt = dt
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hours & (1 << dt.hour()) == 0 {
                dt = dt
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minutes & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = tz.to_ambiguous_zoned(dt).compatible().ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// If a window of this schedule lasting `duration` is open at `now`: when it closes (the latest start at or
    /// before `now`, plus the duration).
    pub fn open_until(
        &self,
        now: Timestamp,
        duration: jiff::SignedDuration,
        tz: &TimeZone,
    ) -> Option<Timestamp> {
        let mut t = now.checked_sub(duration).ok()?;
        let mut end = None;
        while let Some(start) = self.next_after(t, tz) {
            if start > now {
                break;
            }
            end = Some(start.checked_add(duration).ok()?);
            t = start;
        }
        end
    }
}

/// The time zone named `name` (`UTC` when empty).
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|_| ScheduleError::TimeZone(n.to_owned())),
    }
}

/// `t` as people read it in `tz` (RFC 3339 with the offset).
pub fn show(t: Timestamp, tz: &TimeZone) -> String {
    let z: Zoned = t.to_zoned(tz.clone());
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn fields_lists_ranges_steps_and_names() {
        let s: Schedule = "*/15 9-17 * * mon-fri".parse().expect("schedule");
        let utc = TimeZone::UTC;
        // Friday 2026-12-04 17:50 -> Monday 09:00.
        assert_eq!(
            s.next_after(ts("2026-12-04T17:50:00Z"), &utc),
            Some(ts("2026-12-07T09:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-12-04T10:00:00Z"), &utc),
            Some(ts("2026-12-04T10:15:00Z"))
        );
        let yearly: Schedule = "@yearly".parse().expect("yearly");
        assert_eq!(
            yearly.next_after(ts("2026-12-04T00:00:00Z"), &utc),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        // Day of month or day of week, as cron reads both.
        let either: Schedule = "0 0 1 * sun".parse().expect("either");
        assert_eq!(
            either.next_after(ts("2026-12-04T00:00:00Z"), &utc),
            Some(ts("2026-12-06T00:00:00Z"))
        );
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "5-1 * * * *",
            "*/0 * * * *",
            "x * * * *",
        ] {
            assert!(bad.parse::<Schedule>().is_err(), "{bad}");
        }
        assert_eq!(
            "0 22 * * 7".parse::<Schedule>().expect("sunday as 7"),
            "0 22 * * 0".parse::<Schedule>().expect("sunday as 0")
        );
    }

    #[test]
    fn windows_are_open_from_a_start_for_their_duration_in_their_time_zone() {
        let s: Schedule = "0 22 * * *".parse().expect("schedule");
        let berlin = time_zone(Some("Europe/Berlin")).expect("tz");
        let eight_hours = jiff::SignedDuration::from_hours(8);
        // 22:00 Berlin is 21:00 UTC in winter: open at 23:30 UTC until 05:00 UTC.
        assert_eq!(
            s.open_until(ts("2026-12-04T23:30:00Z"), eight_hours, &berlin),
            Some(ts("2026-12-05T05:00:00Z"))
        );
        assert_eq!(
            s.open_until(ts("2026-12-04T20:59:00Z"), eight_hours, &berlin),
            None
        );
        assert_eq!(
            s.open_until(ts("2026-12-04T21:00:00Z"), eight_hours, &berlin),
            Some(ts("2026-12-05T05:00:00Z"))
        );
        assert_eq!(
            show(ts("2026-12-05T05:00:00Z"), &berlin),
            "2026-12-05T06:00:00+01:00"
        );
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }
}
