//! Cron expressions (the `cron` crate's syntax: seconds first) evaluated in a time zone, with
//! the daylight-saving rules people expect from cron:
//!
//! - a job that fires at fixed hours runs **once** on the day clocks fall back (at the first of
//!   the two repeated wall times), and a time skipped when clocks spring forward runs at the
//!   first instant after the gap;
//! - a job that fires every hour or more often follows real time: it neither pauses nor doubles.

use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use cron::TimeUnitSpec;

/// A time zone: the system's local one, or a named IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// The system's local zone.
    Local,
    /// A named zone, e.g. `Asia/Shanghai`.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses `local` or an IANA zone name.
    pub fn parse(name: &str) -> Result<Zone, String> {
        if name.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        chrono_tz::Tz::from_str(name).map(Zone::Named).map_err(|_| {
            format!("unknown time zone \"{name}\" (expected an IANA name such as \"Asia/Shanghai\", or \"local\")")
        })
    }

    /// The zone's name.
    pub fn name(&self) -> String {
        match self {
            Zone::Local => "local".into(),
            Zone::Named(tz) => tz.name().into(),
        }
    }
}

/// A parsed cron expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSpec {
    /// The expression as written.
    pub expr: String,
    /// The zone.
    pub zone: Zone,
    schedule: cron::Schedule,
}

impl CronSpec {
    /// Parses `expr` (6 or 7 fields, seconds first).
    pub fn parse(expr: &str, zone: Zone) -> Result<CronSpec, String> {
        let schedule = cron::Schedule::from_str(expr.trim()).map_err(|e| {
            format!("invalid cron expression \"{expr}\": {e} (fields: sec min hour day month weekday [year])")
        })?;
        Ok(CronSpec { expr: expr.trim().to_owned(), zone, schedule })
    }

    /// The first fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => next_in(&self.schedule, &chrono::Local, after),
            Zone::Named(tz) => next_in(&self.schedule, &tz, after),
        }
    }

    /// Whether some fire time lies in `(from, to]`.
    pub fn fired_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.next_after(from).is_some_and(|t| t <= to)
    }
}

fn next_in<Z: TimeZone>(schedule: &cron::Schedule, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if schedule.hours().is_all() {
        // Hourly or more often: evaluate in the offset in force now, so real time flows on.
        let offset = tz.offset_from_utc_datetime(&after.naive_utc()).fix();
        return schedule.after(&after.with_timezone(&offset)).next().map(|t| t.with_timezone(&Utc));
    }
    // Fixed hours: walk wall-clock times (as naive), then map each to a real instant.
    let mut wall = after.with_timezone(tz).naive_local();
    for _ in 0..10_000 {
        let candidate = schedule.after(&Utc.from_utc_datetime(&wall)).next()?.naive_utc();
        let instant = match tz.from_local_datetime(&candidate) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(first, _second) => Some(first),
            LocalResult::None => first_valid_after(tz, candidate),
        };
        if let Some(t) = instant.map(|t| t.with_timezone(&Utc)).filter(|t| *t > after) {
            return Some(t);
        }
        wall = candidate;
    }
    None
}

/// The first wall time that exists after `wall`, which a DST gap swallowed: gaps end on a
/// whole minute, so the minutes after `wall` are tried in turn (the earlier instant of a
/// repeated one). `time::` resolves a time in a gap the same way.
pub fn first_valid_after<Z: TimeZone>(tz: &Z, wall: NaiveDateTime) -> Option<DateTime<Z>> {
    let minute = wall.date().and_hms_opt(wall.hour(), wall.minute(), 0)?;
    (1..=24 * 60).find_map(|m| tz.from_local_datetime(&(minute + Duration::minutes(m))).earliest())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn berlin(expr: &str) -> CronSpec {
        CronSpec::parse(expr, Zone::parse("Europe/Berlin").unwrap()).unwrap()
    }

    fn fires(spec: &CronSpec, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = spec.next_after(t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn daily_in_a_named_zone() {
        let spec = CronSpec::parse("0 0 8 * * *", Zone::parse("Asia/Shanghai").unwrap()).unwrap();
        assert_eq!(fires(&spec, "2026-11-27T00:00:00Z", 2), ["2026-11-28T00:00:00+00:00", "2026-11-29T00:00:00+00:00"]);
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_right_after_the_gap() {
        // Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist that day.
        let spec = berlin("0 30 2 * * *");
        assert_eq!(
            fires(&spec, "2026-03-27T12:00:00Z", 3),
            ["2026-03-28T01:30:00+00:00", "2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
        let spec = berlin("0 30 2 * * *");
        assert_eq!(
            fires(&spec, "2026-10-24T12:00:00Z", 3),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00", "2026-10-27T01:30:00+00:00"]
        );
    }

    #[test]
    fn frequent_jobs_follow_real_time_across_both_changes() {
        let spec = berlin("0 0,30 * * * *");
        // Fall back: 01:30Z is 02:30 CET, right after 02:30 CEST (00:30Z): every half hour, no gap.
        assert_eq!(
            fires(&spec, "2026-10-24T23:45:00Z", 4),
            [
                "2026-10-25T00:00:00+00:00",
                "2026-10-25T00:30:00+00:00",
                "2026-10-25T01:00:00+00:00",
                "2026-10-25T01:30:00+00:00"
            ]
        );
        // Spring forward: 01:00Z is 03:00 CEST, half an hour after 01:30 CET (00:30Z).
        assert_eq!(fires(&spec, "2026-03-29T00:15:00Z", 2), ["2026-03-29T00:30:00+00:00", "2026-03-29T01:00:00+00:00"]);
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(CronSpec::parse("every day", Zone::Local).unwrap_err().contains("sec min hour"));
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
    }
}
