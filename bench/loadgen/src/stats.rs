//! Latency percentiles, and CPU time and peak memory of another process read from `/proc`.

use std::process::Command;

/// p50, p90, p99 and max of a set of latencies, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u32,
    /// 90th percentile.
    pub p90: u32,
    /// 99th percentile.
    pub p99: u32,
    /// Largest value.
    pub max: u32,
}

impl Percentiles {
    /// Sorts `samples` and summarizes them; `None` when there are none.
    pub fn of(samples: &mut [u32]) -> Option<Self> {
        samples.sort_unstable();
        let max = *samples.last()?;
        Some(Percentiles {
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            max,
        })
    }
}

/// The nearest-rank `p`th percentile (0 < p <= 100) of non-empty, sorted `sorted`.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Clock ticks per second, the unit of CPU times in `/proc/PID/stat` (`getconf CLK_TCK`, else 100).
pub fn clock_ticks_per_sec() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// User plus system CPU time of process `pid` so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `utime + stime` (fields 14 and 15) from the text of `/proc/PID/stat`.
///
/// Field 2, `comm`, is in parentheses and may itself contain spaces and `)`, so fields are
/// counted from after the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // The first field after comm is field 3 (state), so utime (14) is the 12th.
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Peak resident set size of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    parse_peak_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The `VmHWM:` value (KiB) from the text of `/proc/PID/status`.
pub fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).rev().collect();
        let p = Percentiles::of(&mut samples).unwrap();
        assert_eq!(p, Percentiles { p50: 50, p90: 90, p99: 99, max: 100 });

        let mut one = vec![7];
        assert_eq!(Percentiles::of(&mut one), Some(Percentiles { p50: 7, p90: 7, p99: 7, max: 7 }));

        let mut ten: Vec<u32> = (1..=10).collect();
        let p = Percentiles::of(&mut ten).unwrap();
        assert_eq!((p.p50, p.p90, p.p99, p.max), (5, 9, 10, 10));

        assert_eq!(Percentiles::of(&mut []), None);
    }

    #[test]
    fn parses_stat_with_a_tricky_comm() {
        let stat = "4242 (rhai bot) (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 350 27 0 0 20 0 9 0 \
                    100 123456789 4096 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(377));
        assert_eq!(parse_cpu_ticks("1 (short) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn parses_own_stat() {
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_cpu_ticks(&own).is_some());
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\trhaibot\nVmPeak:\t  200000 kB\nVmHWM:\t   46080 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(46080));
        assert_eq!(parse_peak_rss_kib("Name:\tx\n"), None);
    }
}
