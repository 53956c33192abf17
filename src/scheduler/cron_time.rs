//! Cron expressions (the `cron` crate's syntax: seconds first) evaluated in a time zone, with
//! the daylight-saving rules people expect from cron:
//!
//! - a job that fires at fixed hours runs **once** on the day clocks fall back (at the first of
//!   the two repeated wall times), and a time skipped when clocks spring forward runs at the
//!   first instant after the gap;
//! - a job that fires every hour or more often follows real time: it neither pauses nor doubles.

use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use cron::TimeUnitSpec;

/// A time zone: the system's local one, or a named IANA zone.
///
/// Named zones come from jiff's database: the system's `/usr/share/zoneinfo` (or `TZDIR`), and
/// for a name it lacks, the copy built in. Not chrono-tz: its tables are ~29,000 pointers the loader relocates
/// at every start, about 1.1 MiB of private memory whether a zone is used or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// The system's local zone.
    Local,
    /// A named zone, e.g. `Asia/Shanghai`.
    Named(jiff::tz::TimeZone),
}

impl Zone {
    /// Parses `local` or an IANA zone name.
    pub fn parse(name: &str) -> Result<Zone, String> {
        if name.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        // The system's database first (kept current by the OS), then the built-in copy, which
        // also has the names a trimmed system one lacks (`US/Eastern` without tzdata-legacy).
        let found = jiff::tz::TimeZone::get(name).or_else(|_| jiff::tz::TimeZoneDatabase::bundled().get(name));
        match found {
            // Not `Etc/Unknown`, which jiff answers for a zone it cannot name.
            Ok(tz) if tz.iana_name().is_some_and(|n| n != "Etc/Unknown") => Ok(Zone::Named(tz)),
            _ => Err(format!(
                "unknown time zone \"{name}\" (expected an IANA name such as \"Asia/Shanghai\", or \"local\")"
            )),
        }
    }

    /// The zone's name.
    pub fn name(&self) -> String {
        match self {
            Zone::Local => "local".into(),
            Zone::Named(tz) => tz.iana_name().unwrap_or("?").into(),
        }
    }

    /// The offset from UTC in force at `utc`.
    pub fn offset_at(&self, utc: NaiveDateTime) -> FixedOffset {
        match self {
            Zone::Local => chrono::Local.offset_from_utc_datetime(&utc).fix(),
            Zone::Named(tz) => fixed(tz.to_offset(timestamp(utc.and_utc().timestamp()))),
        }
    }

    /// The wall-clock time of `utc` in this zone; `None` past the end of the calendar.
    pub fn wall_time(&self, utc: DateTime<Utc>) -> Option<NaiveDateTime> {
        utc.naive_utc().checked_add_offset(self.offset_at(utc.naive_utc()))
    }

    /// The instants that wall-clock time `wall` names here: one, two when clocks fall back
    /// (earlier first), or none in the gap when they spring forward.
    pub fn resolve(&self, wall: NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        use jiff::tz::AmbiguousOffset;
        let tz = match self {
            Zone::Local => return chrono::Local.from_local_datetime(&wall).map(|t| t.with_timezone(&Utc)),
            Zone::Named(tz) => tz,
        };
        let at = |offset: FixedOffset| wall.checked_sub_offset(offset).map(|t| Utc.from_utc_datetime(&t));
        let Some(civil) = civil(wall) else {
            // Past jiff's years (±9999): the offset in force at its last (or first) instant.
            return at(self.offset_at(wall)).map_or(LocalResult::None, LocalResult::Single);
        };
        let at = |offset: jiff::tz::Offset| at(fixed(offset));
        match tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => at(offset).map_or(LocalResult::None, LocalResult::Single),
            AmbiguousOffset::Fold { before, after } => match (at(before), at(after)) {
                (Some(first), Some(second)) => LocalResult::Ambiguous(first, second),
                _ => LocalResult::None,
            },
            AmbiguousOffset::Gap { .. } => LocalResult::None,
        }
    }
}

/// The instant `secs` after 1970 as jiff's, clamped to its years (±9999): beyond them a zone's
/// rules are those of its last (or first) instant.
pub fn timestamp(secs: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(secs).unwrap_or(if secs < 0 { jiff::Timestamp::MIN } else { jiff::Timestamp::MAX })
}

/// jiff's offset as chrono's (both lie within ±26 hours).
pub fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    FixedOffset::east_opt(offset.seconds()).unwrap_or(FixedOffset::east_opt(0).expect("zero is a valid offset"))
}

/// chrono's wall-clock time as jiff's, to the second; `None` outside jiff's years (±9999).
fn civil(wall: NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::Datelike;
    let year = i16::try_from(wall.year()).ok()?;
    jiff::civil::DateTime::new(
        year,
        wall.month() as i8,
        wall.day() as i8,
        wall.hour() as i8,
        wall.minute() as i8,
        wall.second() as i8,
        0,
    )
    .ok()
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
        next_in(&self.schedule, &self.zone, after)
    }

    /// Whether some fire time lies in `(from, to]`.
    pub fn fired_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.next_after(from).is_some_and(|t| t <= to)
    }
}

fn next_in(schedule: &cron::Schedule, zone: &Zone, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if schedule.hours().is_all() {
        // Hourly or more often: evaluate in the offset in force now, so real time flows on.
        let offset = zone.offset_at(after.naive_utc());
        return schedule.after(&after.with_timezone(&offset)).next().map(|t| t.with_timezone(&Utc));
    }
    // Fixed hours: walk wall-clock times (as naive), then map each to a real instant.
    let mut wall = zone.wall_time(after)?;
    for _ in 0..10_000 {
        let candidate = schedule.after(&Utc.from_utc_datetime(&wall)).next()?.naive_utc();
        let instant = match zone.resolve(candidate) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(first, _second) => Some(first),
            LocalResult::None => first_valid_after(zone, candidate),
        };
        if let Some(t) = instant.filter(|t| *t > after) {
            return Some(t);
        }
        wall = candidate;
    }
    None
}

/// The first wall time that exists after `wall`, which a DST gap swallowed: gaps end on a
/// whole minute, so the minutes after `wall` are tried in turn (the earlier instant of a
/// repeated one). `time::` resolves a time in a gap the same way.
pub fn first_valid_after(zone: &Zone, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let minute = wall.date().and_hms_opt(wall.hour(), wall.minute(), 0)?;
    (1..=24 * 60).find_map(|m| zone.resolve(minute.checked_add_signed(Duration::minutes(m))?).earliest())
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
    fn instants_past_the_zone_databases_years_keep_the_last_rules() {
        // Kiritimati was at -10:40 in 1970 and has been at +14 since 1995.
        let zone = Zone::parse("Pacific/Kiritimati").unwrap();
        let far = utc("2026-01-01T00:00:00Z").naive_utc() + Duration::days(365 * 20_000);
        assert_eq!(zone.offset_at(far).local_minus_utc(), 14 * 3600);
        assert!(matches!(zone.resolve(far), LocalResult::Single(_)));
        assert!(Zone::parse("Etc/Unknown").is_err(), "a name that names no zone");
    }

    #[test]
    fn bad_input_is_explained() {
        assert!(CronSpec::parse("every day", Zone::Local).unwrap_err().contains("sec min hour"));
        assert!(Zone::parse("Mars/Olympus").unwrap_err().contains("Mars/Olympus"));
    }
}
