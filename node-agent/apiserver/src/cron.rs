//! CronJob schedules: the standard five-field cron syntax (minute, hour, day of month, month,
//! day of week) with lists, ranges, steps, month and weekday names, `?`, and the `@hourly`-style
//! descriptors, as the `robfig/cron` `ParseStandard` parser the CronJob API validates with and
//! its controller schedules by. Validation (the API server) and scheduling (the CronJob
//! controller) both use this one parser.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day of month / day of week given as `*` or `?`: the cron rule that a day matches when
    /// both are restricted and either matches, else when both match.
    dom_star: bool,
    dow_star: bool,
}

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Field = Field {
    name: "day of month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Field = Field {
    name: "day of week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn value(f: &Field, s: &str) -> Result<u32, String> {
    if let Some(i) = f.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(f.min + i as u32);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("failed to parse int from {s}: invalid {} value", f.name))?;
    if v < f.min || v > f.max {
        return Err(format!(
            "{} value {v} out of range ({}-{})",
            f.name, f.min, f.max
        ));
    }
    Ok(v)
}

/// One field: comma-separated `*`, `?`, `a`, `a-b`, each optionally `/step`.
fn field(f: &Field, text: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("invalid step {s:?} in {text:?}"))?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            // As robfig/cron's star bit: `*` or `*/1`, not `*/2`.
            star = step.is_none_or(|s| s == 1);
            (f.min, f.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(f, a)?, value(f, b)?);
            if a > b {
                return Err(format!(
                    "beginning of range ({a}) beyond end of range ({b}): {part}"
                ));
            }
            (a, b)
        } else {
            let a = value(f, range)?;
            // `a/step` runs from a to the field's maximum.
            (a, if step.is_some() { f.max } else { a })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a schedule; the error says what is wrong with it.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                fields.len()
            ));
        }
        let (minute, _) = field(&MINUTE, fields[0])?;
        let (hour, _) = field(&HOUR, fields[1])?;
        let (dom, dom_star) = field(&DOM, fields[2])?;
        let (month, _) = field(&MONTH, fields[3])?;
        let (dow, dow_star) = field(&DOW, fields[4])?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first activation strictly after `after`, in `tz`; `None` when there is none within
    /// five years (`0 0 30 2 *`).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        // Whole minutes, strictly after.
        let mut t = DateTime::from_parts(
            start.date(),
            Time::new(start.hour(), start.minute(), 0, 0).ok()?,
        )
        .checked_add(1.minute())
        .ok()?;
        let limit = start.year() + 5;
        while t.year() <= limit {
            if self.month & (1 << t.month()) == 0 {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .with()
                    .hour(0)
                    .minute(0)
                    .build()
                    .ok()?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = DateTime::from_parts(t.date().checked_add(1.day()).ok()?, Time::midnight());
                continue;
            }
            if self.hour & (1 << t.hour()) == 0 {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minute & (1 << t.minute()) == 0 {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            return tz.to_ambiguous_timestamp(t).compatible().ok();
        }
        None
    }
}

/// The time zone a CronJob names (`spec.timeZone`), UTC when it names none.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("") | Some("UTC") | Some("Etc/UTC") => Ok(TimeZone::UTC),
        Some(n) => TimeZone::get(n).map_err(|e| format!("unknown time zone {n}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next_after(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn steps_ranges_lists_and_names() {
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:07:30Z"),
            "2026-01-01T10:15:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-01-01T10:15:00Z"),
            "2026-01-01T10:30:00Z"
        );
        assert_eq!(
            next("5-10/5 * * * *", "2026-01-01T10:06:00Z"),
            "2026-01-01T10:10:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-01-01T10:00:00Z"),
            "2026-01-01T13:00:00Z"
        );
        assert_eq!(
            next("0 0 1,15 * *", "2026-01-02T00:00:00Z"),
            "2026-01-15T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * FEB *", "2026-01-02T00:00:00Z"),
            "2026-02-01T00:00:00Z"
        );
        // 2026-01-01 is a Thursday: the next Monday is the 5th.
        assert_eq!(
            next("30 8 * * mon", "2026-01-01T00:00:00Z"),
            "2026-01-05T08:30:00Z"
        );
        assert_eq!(
            next("0 0 * * 0", "2026-01-01T00:00:00Z"),
            "2026-01-04T00:00:00Z"
        );
    }

    #[test]
    fn descriptors() {
        assert_eq!(
            next("@hourly", "2026-01-01T10:07:00Z"),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            next("@daily", "2026-01-01T10:07:00Z"),
            "2026-01-02T00:00:00Z"
        );
        assert_eq!(
            next("@weekly", "2026-01-01T10:07:00Z"),
            "2026-01-04T00:00:00Z"
        );
        assert_eq!(
            next("@monthly", "2026-01-01T10:07:00Z"),
            "2026-02-01T00:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-01-01T10:07:00Z"),
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_when_both_restricted() {
        // The 13th or any Friday: Friday 2026-01-02 comes first.
        assert_eq!(
            next("0 0 13 * fri", "2026-01-01T00:00:00Z"),
            "2026-01-02T00:00:00Z"
        );
        // Only the 13th when the weekday is `*`.
        assert_eq!(
            next("0 0 13 * *", "2026-01-01T00:00:00Z"),
            "2026-01-13T00:00:00Z"
        );
    }

    #[test]
    fn impossible_dates_and_bad_specs() {
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next_after(ts("2026-01-01T00:00:00Z"), &TimeZone::UTC),
            None
        );
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "5-1 * * * *",
            "@every 5m",
            "x * * * *",
            "0 0 * * 7",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_zones() {
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        let t = Schedule::parse("0 9 * * *")
            .unwrap()
            .next_after(ts("2026-01-01T00:00:00Z"), &berlin)
            .unwrap();
        assert_eq!(t.to_string(), "2026-01-01T08:00:00Z");
        assert!(time_zone(Some("Nowhere/Atlantis")).is_err());
    }
}
