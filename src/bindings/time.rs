//! `time::` — the clock and the calendar in a time zone (the config's `timezone` unless a call
//! names one). Instants are milliseconds since 1970 (`time::now()`); durations are
//! milliseconds too, so `time::now() + time::hours(2)` is two hours from now.
//!
//! ```rhai
//! let today = time::today();                        // "2026-11-30" in the configured zone
//! let streak_day = time::day(time::now());          // a day number: yesterday is one less
//! time::format(time::now(), "%H:%M", "Asia/Shanghai");
//! let t = time::parse("2026-12-24 20:00", "%Y-%m-%d %H:%M");
//! ```

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rhai::{Dynamic, EvalAltResult, INT, Map, Module};

use super::convert::script_error;
use super::documented;
use crate::scheduler::{Zone, cron_time};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// How far scripts' clock is ahead of the machine's: moved only by `rhaibot test`'s virtual
/// clock (`advance`), so a scenario's days pass at once.
static OFFSET_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Moves scripts' clock `ms` ahead (scenario tests).
pub fn advance_clock(ms: i64) {
    OFFSET_MS.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
}

/// Sets scripts' clock to `ms` now (scenario tests start at a fixed instant).
pub fn set_clock(ms: i64) {
    let system = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    OFFSET_MS.store(ms - system, std::sync::atomic::Ordering::SeqCst);
}

/// Now by scripts' clock, as the scheduler takes it.
pub fn now_utc() -> chrono::DateTime<chrono::Utc> {
    DateTime::from_timestamp_millis(now_ms()).unwrap_or_else(chrono::Utc::now)
}

/// Milliseconds since 1970 now, by scripts' clock.
pub fn now_ms() -> INT {
    let system = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as INT);
    system + OFFSET_MS.load(std::sync::atomic::Ordering::SeqCst)
}

/// The zone a call names.
fn zone(name: &str) -> RhaiResult<Zone> {
    Zone::parse(name).map_err(|e| script_error(format!("time: {e}")))
}

/// The wall-clock date and time of `ms` in `zone`.
fn local(ms: INT, zone: &Zone) -> RhaiResult<NaiveDateTime> {
    let utc = DateTime::from_timestamp_millis(ms).ok_or_else(|| script_error(format!("time: {ms} is out of range")))?;
    let offset = zone.offset_at(utc.naive_utc());
    utc.naive_utc().checked_add_offset(offset).ok_or_else(|| script_error(format!("time: {ms} is out of range")))
}

/// The instant of wall-clock `naive` in `zone`: the earlier one when a DST change repeats it,
/// the first one that exists after a DST gap (as a cron job's time is resolved).
fn instant(naive: NaiveDateTime, zone: &Zone) -> RhaiResult<INT> {
    match zone.resolve(naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
        LocalResult::None => cron_time::first_valid_after(zone, naive),
    }
    .map(|t| t.timestamp_millis())
    .ok_or_else(|| script_error(format!("time: {naive} does not exist in {}", zone.name())))
}

/// Checks a strftime pattern (chrono panics on bad ones when formatting).
fn pattern(p: &str) -> RhaiResult<chrono::format::StrftimeItems<'_>> {
    let items = chrono::format::StrftimeItems::new(p);
    if items.clone().any(|i| matches!(i, chrono::format::Item::Error)) {
        return Err(script_error(format!("time: bad pattern {p:?} (strftime: %Y-%m-%d %H:%M:%S, ...)")));
    }
    Ok(items)
}

fn format(ms: INT, p: &str, z: &Zone) -> RhaiResult<String> {
    use std::fmt::Write;
    let items = pattern(p)?;
    let utc = DateTime::from_timestamp_millis(ms).ok_or_else(|| script_error(format!("time: {ms} is out of range")))?;
    let mut out = String::new();
    // Written, not `to_string()`: a pattern the instant cannot fill is an error, not a panic.
    let written = match z {
        Zone::Local => write!(out, "{}", utc.with_timezone(&chrono::Local).format_with_items(items)),
        Zone::Named(tz) => {
            let offset = Abbreviated::of(tz, utc.timestamp());
            let wall = utc.naive_utc().checked_add_offset(offset.fixed).unwrap_or(utc.naive_utc());
            let text =
                chrono::format::DelayedFormat::new_with_offset(Some(wall.date()), Some(wall.time()), &offset, items);
            write!(out, "{text}")
        }
    };
    written.map_err(|_| script_error(format!("time::format: the pattern {p:?} cannot be filled")))?;
    Ok(out)
}

/// A named zone's offset at an instant, shown by `%Z` as its abbreviation ("CEST").
#[derive(Debug, Clone)]
struct Abbreviated {
    fixed: chrono::FixedOffset,
    abbreviation: String,
}

impl Abbreviated {
    fn of(tz: &jiff::tz::TimeZone, secs: i64) -> Abbreviated {
        let info = tz.to_offset_info(cron_time::timestamp(secs));
        Abbreviated { fixed: cron_time::fixed(info.offset()), abbreviation: info.abbreviation().to_owned() }
    }
}

impl chrono::Offset for Abbreviated {
    fn fix(&self) -> chrono::FixedOffset {
        self.fixed
    }
}

impl std::fmt::Display for Abbreviated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.abbreviation)
    }
}

fn parse(text: &str, p: &str, z: &Zone) -> RhaiResult<INT> {
    pattern(p)?;
    let naive = NaiveDateTime::parse_from_str(text, p)
        .or_else(|_| NaiveDate::parse_from_str(text, p).map(|d| d.and_time(NaiveTime::MIN)))
        .map_err(|e| script_error(format!("time::parse: {text:?} does not match {p:?}: {e}")))?;
    instant(naive, z)
}

fn start_of_day(ms: INT, z: &Zone) -> RhaiResult<INT> {
    instant(local(ms, z)?.date().and_time(NaiveTime::MIN), z)
}

/// Days since 1970-01-01 of the local date of `ms`.
fn day(ms: INT, z: &Zone) -> RhaiResult<INT> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    Ok((local(ms, z)?.date() - epoch).num_days())
}

fn add_days(ms: INT, n: INT, z: &Zone) -> RhaiResult<INT> {
    let t = local(ms, z)?;
    let moved = t
        .checked_add_signed(chrono::Duration::try_days(n).unwrap_or(chrono::Duration::MAX))
        .ok_or_else(|| script_error(format!("time::add_days: {n} days is out of range")))?;
    instant(moved, z)
}

fn parts(ms: INT, z: &Zone) -> RhaiResult<Map> {
    let t = local(ms, z)?;
    let mut m = Map::new();
    for (k, v) in [
        ("year", t.year() as INT),
        ("month", t.month() as INT),
        ("day", t.day() as INT),
        ("hour", t.hour() as INT),
        ("minute", t.minute() as INT),
        ("second", t.second() as INT),
        ("weekday", t.weekday().number_from_monday() as INT),
    ] {
        m.insert(k.into(), Dynamic::from_int(v));
    }
    Ok(m)
}

/// Builds the `time` module; calls without a zone use `default`.
pub fn module(default: Zone) -> Module {
    let mut m = Module::new();
    let d = default;
    documented("now", &[], "milliseconds since 1970, now").set_into_module(&mut m, now_ms);
    documented("now_secs", &[], "seconds since 1970, now").set_into_module(&mut m, || now_ms() / 1000);
    for (name, factor, doc) in [
        ("seconds", 1_000, "`n` seconds in milliseconds"),
        ("minutes", 60_000, "`n` minutes in milliseconds"),
        ("hours", 3_600_000, "`n` hours in milliseconds"),
        ("days", 86_400_000, "`n` days of 24 hours in milliseconds (time::add_days counts calendar days)"),
    ] {
        documented(name, &["n: int"], doc).set_into_module(&mut m, move |n: INT| n.saturating_mul(factor));
    }
    documented("today", &[], "today's date, \"YYYY-MM-DD\"").set_into_module(&mut m, {
        let d = d.clone();
        move || format(now_ms(), "%Y-%m-%d", &d)
    });
    documented("today", &["zone: string"], "today's date in `zone`")
        .set_into_module(&mut m, move |z: &str| format(now_ms(), "%Y-%m-%d", &zone(z)?));
    documented("date", &["ms: int"], "the date of an instant, \"YYYY-MM-DD\"").set_into_module(&mut m, {
        let d = d.clone();
        move |ms: INT| format(ms, "%Y-%m-%d", &d)
    });
    documented("date", &["ms: int", "zone: string"], "the date of an instant in `zone`")
        .set_into_module(&mut m, move |ms: INT, z: &str| format(ms, "%Y-%m-%d", &zone(z)?));
    documented("day", &["ms: int"], "the day number of an instant (days since 1970-01-01, local date)")
        .set_into_module(&mut m, {
            let d = d.clone();
            move |ms: INT| day(ms, &d)
        });
    documented("day", &["ms: int", "zone: string"], "the day number of an instant in `zone`")
        .set_into_module(&mut m, move |ms: INT, z: &str| day(ms, &zone(z)?));
    documented("weekday", &[], "today's weekday, 1 (Monday) to 7 (Sunday)").set_into_module(&mut m, {
        let d = d.clone();
        move || parts(now_ms(), &d).map(|p| p["weekday"].clone())
    });
    documented("weekday", &["ms: int"], "the weekday of an instant, 1 (Monday) to 7 (Sunday)").set_into_module(
        &mut m,
        {
            let d = d.clone();
            move |ms: INT| parts(ms, &d).map(|p| p["weekday"].clone())
        },
    );
    documented("weekday", &["ms: int", "zone: string"], "the weekday of an instant in `zone`")
        .set_into_module(&mut m, move |ms: INT, z: &str| parts(ms, &zone(z)?).map(|p| p["weekday"].clone()));
    documented("parts", &["ms: int"], "#{year, month, day, hour, minute, second, weekday} of an instant")
        .set_into_module(&mut m, {
            let d = d.clone();
            move |ms: INT| parts(ms, &d)
        });
    documented("parts", &["ms: int", "zone: string"], "the parts of an instant in `zone`")
        .set_into_module(&mut m, move |ms: INT, z: &str| parts(ms, &zone(z)?));
    documented("format", &["ms: int", "pattern: string"], "an instant as text, strftime pattern (\"%Y-%m-%d %H:%M\")")
        .set_into_module(&mut m, {
            let d = d.clone();
            move |ms: INT, p: &str| format(ms, p, &d)
        });
    documented("format", &["ms: int", "pattern: string", "zone: string"], "an instant as text in `zone`")
        .set_into_module(&mut m, move |ms: INT, p: &str, z: &str| format(ms, p, &zone(z)?));
    documented("parse", &["text: string", "pattern: string"], "the instant a text names (strftime pattern)")
        .set_into_module(&mut m, {
            let d = d.clone();
            move |t: &str, p: &str| parse(t, p, &d)
        });
    documented("parse", &["text: string", "pattern: string", "zone: string"], "the instant a text names in `zone`")
        .set_into_module(&mut m, move |t: &str, p: &str, z: &str| parse(t, p, &zone(z)?));
    documented("start_of_day", &["ms: int"], "midnight of the instant's day").set_into_module(&mut m, {
        let d = d.clone();
        move |ms: INT| start_of_day(ms, &d)
    });
    documented("start_of_day", &["ms: int", "zone: string"], "midnight of the instant's day in `zone`")
        .set_into_module(&mut m, move |ms: INT, z: &str| start_of_day(ms, &zone(z)?));
    documented(
        "add_days",
        &["ms: int", "days: int"],
        "the same wall-clock time `days` calendar days later (DST-aware)",
    )
    .set_into_module(&mut m, {
        let d = d.clone();
        move |ms: INT, n: INT| add_days(ms, n, &d)
    });
    documented("add_days", &["ms: int", "days: int", "zone: string"], "add_days in `zone`")
        .set_into_module(&mut m, move |ms: INT, n: INT, z: &str| add_days(ms, n, &zone(z)?));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> Zone {
        Zone::parse("Europe/Berlin").unwrap()
    }

    #[test]
    fn formatting_and_days_follow_the_zone_across_a_dst_change() {
        // 2026-03-29 01:00 UTC: Berlin jumps from 02:00 CET to 03:00 CEST.
        let before = parse("2026-03-29 01:59", "%Y-%m-%d %H:%M", &berlin()).unwrap();
        let after = before + 60_000;
        assert_eq!(format(after, "%H:%M %Z", &berlin()).unwrap(), "03:00 CEST");
        // A day across the change has 23 hours; add_days keeps the wall-clock time.
        let noon = parse("2026-03-28 12:00", "%Y-%m-%d %H:%M", &berlin()).unwrap();
        let next = add_days(noon, 1, &berlin()).unwrap();
        assert_eq!((next - noon) / 3_600_000, 23);
        assert_eq!(format(next, "%Y-%m-%d %H:%M", &berlin()).unwrap(), "2026-03-29 12:00");
        assert_eq!(day(next, &berlin()).unwrap() - day(noon, &berlin()).unwrap(), 1);
        // A time inside the gap is moved to the first one that exists, as cron jobs are.
        for inside in ["02:00", "02:15", "02:30", "02:59:30"] {
            let pattern = if inside.len() > 5 { "%Y-%m-%d %H:%M:%S" } else { "%Y-%m-%d %H:%M" };
            let gap = parse(&format!("2026-03-29 {inside}"), pattern, &berlin()).unwrap();
            assert_eq!(format(gap, "%H:%M:%S", &berlin()).unwrap(), "03:00:00", "{inside}");
        }
        assert_eq!(format(start_of_day(next, &berlin()).unwrap(), "%H:%M", &berlin()).unwrap(), "00:00");
    }

    #[test]
    fn bad_patterns_and_texts_are_errors_not_panics() {
        assert!(format(0, "%Q", &berlin()).is_err());
        assert!(parse("yesterday", "%Y-%m-%d", &berlin()).is_err());
        assert_eq!(parse("1970-01-02", "%Y-%m-%d", &Zone::parse("UTC").unwrap()).unwrap(), 86_400_000);
        assert_eq!(parts(0, &Zone::parse("UTC").unwrap()).unwrap()["weekday"].as_int().unwrap(), 4, "a Thursday");
    }

    #[test]
    fn instants_at_the_edge_of_the_range_are_errors_not_panics() {
        let east = Zone::parse("Pacific/Kiritimati").unwrap();
        let west = Zone::parse("Etc/GMT+12").unwrap();
        let last = 8_210_266_876_799_999; // the last instant chrono represents
        let first = -8_334_601_228_800_000;
        for r in [parts(last, &east).map(|_| 0), day(last, &east), start_of_day(last, &east), add_days(last, 1, &east)]
        {
            let _ = r; // an error is fine; a panic is not
        }
        let _ = start_of_day(first, &west);
    }
}
