//! Latency percentiles, and CPU time, context switches and peak memory of another process read
//! from `/proc`: per thread, from `/proc/PID/task/TID/{schedstat,status,comm}` (nanoseconds on a
//! CPU, not clock ticks).

use std::collections::{BTreeMap, HashMap};

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

/// The counters of one thread of another process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadCounters {
    /// The thread's name (`comm`).
    pub name: String,
    /// Time on a CPU, in ns (first field of `schedstat`).
    pub cpu_ns: u64,
    /// Voluntary plus involuntary context switches.
    pub switches: u64,
}

/// The live threads of a process at one moment, by thread id.
#[derive(Clone, Debug, Default)]
pub struct Threads(HashMap<u32, ThreadCounters>);

/// What a process's threads used between two [`Threads`] snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time, in ns.
    pub cpu_ns: u64,
    /// Context switches.
    pub switches: u64,
    /// CPU time by thread name, in ns (threads of one name summed).
    pub by_name: BTreeMap<String, u64>,
}

impl Threads {
    /// Reads every thread of process `pid` from `/proc/PID/task`; threads that end while being
    /// read are skipped.
    pub fn of(pid: u32) -> Option<Threads> {
        let dir = format!("/proc/{pid}/task");
        let mut threads = HashMap::new();
        for entry in std::fs::read_dir(&dir).ok()?.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let read = |file: &str| std::fs::read_to_string(format!("{dir}/{tid}/{file}")).ok();
            let counters = (|| {
                Some(ThreadCounters {
                    name: read("comm")?.trim_end().to_owned(),
                    cpu_ns: parse_schedstat_ns(&read("schedstat")?)?,
                    switches: parse_ctxt_switches(&read("status")?)?,
                })
            })();
            if let Some(counters) = counters {
                threads.insert(tid, counters);
            }
        }
        Some(Threads(threads))
    }

    /// What was used since `before`. A thread started since counts whole; a thread that ended since
    /// is lost, with all it used after `before`.
    pub fn since(&self, before: &Threads) -> Usage {
        let mut usage = Usage::default();
        let zero = ThreadCounters::default();
        for (tid, now) in &self.0 {
            let then = before.0.get(tid).filter(|then| then.name == now.name).unwrap_or(&zero);
            let cpu_ns = now.cpu_ns.saturating_sub(then.cpu_ns);
            usage.cpu_ns += cpu_ns;
            usage.switches += now.switches.saturating_sub(then.switches);
            *usage.by_name.entry(now.name.clone()).or_default() += cpu_ns;
        }
        usage
    }
}

/// Time on a CPU in ns: the first field of `/proc/PID/task/TID/schedstat`.
pub fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// `voluntary_ctxt_switches` plus `nonvoluntary_ctxt_switches` from the text of a `status` file.
pub fn parse_ctxt_switches(status: &str) -> Option<u64> {
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find_map(|line| line.strip_prefix(name))?;
        line.trim_start_matches(':').trim().parse().ok()
    };
    Some(field("voluntary_ctxt_switches")? + field("nonvoluntary_ctxt_switches")?)
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
    fn parses_schedstat_and_context_switches() {
        assert_eq!(parse_schedstat_ns("123456789 2345 67\n"), Some(123_456_789));
        assert_eq!(parse_schedstat_ns(""), None);
        let status = "Name:\trhaibot\nvoluntary_ctxt_switches:\t150\nnonvoluntary_ctxt_switches:\t7\n";
        assert_eq!(parse_ctxt_switches(status), Some(157));
        assert_eq!(parse_ctxt_switches("voluntary_ctxt_switches:\t1\n"), None);
    }

    #[test]
    fn usage_is_the_difference_per_thread_summed_by_name() {
        let t = |name: &str, cpu_ns, switches| ThreadCounters { name: name.into(), cpu_ns, switches };
        let before = Threads(HashMap::from([(1, t("main", 1000, 5)), (2, t("worker", 500, 1)), (3, t("gone", 9, 9))]));
        let after =
            Threads(HashMap::from([(1, t("main", 4000, 6)), (2, t("worker", 700, 4)), (4, t("worker", 300, 2))]));
        let usage = after.since(&before);
        assert_eq!((usage.cpu_ns, usage.switches), (3500, 6));
        assert_eq!(usage.by_name, BTreeMap::from([("main".into(), 3000), ("worker".into(), 500)]));
    }

    #[test]
    fn reads_own_threads() {
        let threads = Threads::of(std::process::id()).expect("own /proc");
        assert!(!threads.0.is_empty());
        assert!(threads.0.values().any(|t| t.cpu_ns > 0 && !t.name.is_empty()));
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn parses_status() {
        let status = "Name:\trhaibot\nVmPeak:\t  200000 kB\nVmHWM:\t   46080 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(46080));
        assert_eq!(parse_peak_rss_kib("Name:\tx\n"), None);
    }
}
