//! Measuring: latency distributions, the process's and the fake runners' CPU time, bytes
//! written, and (`--profile`) the coordinator's SQL statements counted through tracing.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Statistics.

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p99 and max of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dist {
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Dist {
    pub(crate) fn of(mut v: Vec<Duration>) -> Dist {
        v.sort();
        Dist {
            p50: percentile(&v, 50.0),
            p99: percentile(&v, 99.0),
            max: v.last().copied().unwrap_or_default(),
        }
    }
}

/// CPU time (user + system, all threads) this process has used: the coordinator and the fake
/// runners together. Less sensitive than wall time to other load on the machine.
pub(crate) fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may contain spaces): utime and stime are the 12th
    // and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// Bytes this process has handed to `write` so far (`wchar` of `/proc/self/io`): SQLite's WAL
/// and database writes, for `--profile`.
pub(crate) fn bytes_written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time of this process's threads whose name starts with `prefix`.
pub(crate) fn threads_cpu(prefix: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if !stat[open + 1..close].starts_with(prefix) {
            continue;
        }
        ticks += stat[close + 1..]
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse::<u64>().ok())
            .sum::<u64>();
    }
    Duration::from_millis(ticks * 10)
}

// ---------------------------------------------------------------------------------------------
// Counting the coordinator's SQL statements (`--profile`): sqlx reports every statement as a
// tracing event with target `sqlx::query` and the first words of the SQL as `summary`.

#[derive(Default)]
pub(crate) struct QueryCounter {
    counts: Mutex<BTreeMap<String, u64>>,
}

impl QueryCounter {
    pub(crate) fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().expect("counts"))
    }
}

struct CountLayer(Arc<QueryCounter>);

struct Summary(String);

impl tracing::field::Visit for Summary {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.0 = value.to_string();
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = format!("{value:?}").trim_matches('"').to_string();
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut s = Summary(String::new());
        event.record(&mut s);
        let key = s.0.trim_end_matches(" …").to_string();
        *self
            .0
            .counts
            .lock()
            .expect("counts")
            .entry(key)
            .or_default() += 1;
    }
}

pub(crate) fn init_tracing(profile: bool) -> Option<Arc<QueryCounter>> {
    use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            EnvFilter::try_from_env("MOAT_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,sqlx::pool::acquire=error")),
        );
    if profile {
        let counter = Arc::new(QueryCounter::default());
        let layer = CountLayer(counter.clone())
            .with_filter(Targets::new().with_target("sqlx::query", LevelFilter::TRACE));
        tracing_subscriber::registry().with(fmt).with(layer).init();
        Some(counter)
    } else {
        tracing_subscriber::registry().with(fmt).init();
        None
    }
}
