//! Reporting: each round as it ends, against the targets, and the SQL statement profile.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Opts;
use crate::workloads::RoundResult;

const TARGET_JOBS_PER_SEC: f64 = 1000.0;
const TARGET_IDLE_P99: Duration = Duration::from_millis(50);

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m >= 100.0 {
        format!("{m:.0} ms")
    } else {
        format!("{m:.1} ms")
    }
}

pub(crate) fn print_round(backend: &str, opts: &Opts, r: &RoundResult) {
    let target = if backend == "sqlite" {
        format!(
            "(target ≥ {TARGET_JOBS_PER_SEC:.0} jobs/s on SQLite: {})",
            if r.jobs_per_sec >= TARGET_JOBS_PER_SEC {
                "met"
            } else {
                "MISSED"
            }
        )
    } else {
        "(no target for Postgres)".to_string()
    };
    println!(
        "  queued {} jobs ({} repositories × {} runs of 1 job) in {:.2} s",
        opts.jobs,
        opts.repos,
        opts.jobs.div_ceil(opts.repos),
        r.queue_secs
    );
    let how = if opts.direct {
        " — DIRECT store calls, no HTTP (diagnostic)"
    } else {
        ""
    };
    println!(
        "  drain{how}: {} jobs by {} slots ({} runners × {}) in {:.2} s = {:.0} jobs/s {target}",
        opts.jobs,
        opts.runners * opts.slots,
        opts.runners,
        opts.slots,
        r.drain_secs,
        r.jobs_per_sec
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "    CPU per job: coordinator {:.0} µs ({cores} cores at this cost ≈ {:.0} jobs/s), fake runners {:.0} µs",
        r.cpu_per_job.as_secs_f64() * 1e6,
        cores as f64 / r.cpu_per_job.as_secs_f64().max(1e-9),
        r.runner_cpu_per_job.as_secs_f64() * 1e6
    );
    println!(
        "    queue-to-claim latency: p50 {}, p99 {}, max {} (pre-filled queue: mostly waiting behind other jobs)",
        ms(r.queue_to_claim.p50),
        ms(r.queue_to_claim.p99),
        ms(r.queue_to_claim.max)
    );
    println!(
        "    claim request: p50 {}, p99 {}; complete request: p50 {}, p99 {}",
        ms(r.claim_rtt.p50),
        ms(r.claim_rtt.p99),
        ms(r.complete_rtt.p50),
        ms(r.complete_rtt.p99)
    );
    println!(
        "    fairness: the first {} claims went to {} distinct repositories",
        opts.repos.min(opts.jobs),
        r.first_round_repos
    );
    if opts.idle_jobs > 0 {
        let ok = if r.idle.p99 <= TARGET_IDLE_P99 {
            "met"
        } else {
            "MISSED"
        };
        println!(
            "  idle runners: {} jobs created one every {} ms while {} slots long-poll",
            opts.idle_jobs,
            opts.idle_interval.as_millis(),
            opts.runners * opts.slots
        );
        println!(
            "    claim latency (create_run returned → claim answer at the runner): p50 {}, p99 {}, max {} (target p99 ≤ {}: {ok}); {} empty long-poll answers",
            ms(r.idle.p50),
            ms(r.idle.p99),
            ms(r.idle.max),
            ms(TARGET_IDLE_P99),
            r.idle_empty_claims
        );
    }
    if let Some(st) = &r.statements {
        let total: u64 = st.values().sum();
        println!(
            "  SQL statements during the drain: {total} = {:.1} per job; {:.1} KiB written per job (write(2) of the whole process: database, WAL and sockets)",
            total as f64 / opts.jobs as f64,
            r.written_per_job as f64 / 1024.0
        );
        print_statements(st, opts.jobs);
    }
    if let Some(st) = &r.idle_statements {
        let total: u64 = st.values().sum();
        println!(
            "  SQL statements during the idle-runner phase: {total} = {:.1} per job",
            total as f64 / opts.idle_jobs.max(1) as f64
        );
        print_statements(st, opts.idle_jobs);
    }
}

fn print_statements(st: &BTreeMap<String, u64>, jobs: usize) {
    let mut by: Vec<(&String, &u64)> = st.iter().collect();
    by.sort_by(|a, b| b.1.cmp(a.1));
    for (summary, n) in by.into_iter().filter(|(_, n)| **n > 0) {
        println!("    {:>6.2}/job  {summary}", *n as f64 / jobs.max(1) as f64);
    }
}

pub(crate) fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}
