//! Health checks judged: what one try answered, whether it counts as healthy, and when a series
//! of tries has proved a colour healthy (verify) or unhealthy (verify's deadline, or observe's
//! consecutive failures). Pure: the target makes the requests and hands in what it got, with the
//! time it got it; nothing here sleeps or reads a clock.

use std::time::Duration;

/// How a colour's health is checked, from the stage's `health:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// `GET` this path on the colour.
    pub path: String,
    /// The status a healthy answer has; `None` accepts any 2xx. A redirect is never healthy
    /// unless asked for: a `301` to HTTPS says the check points at the wrong place.
    pub status: Option<u16>,
    /// Consecutive healthy answers that prove a colour healthy during verify.
    pub successes: u32,
    /// Time between tries.
    pub interval: Duration,
    /// How long one try may take.
    pub timeout: Duration,
    /// How long verify may take in all.
    pub deadline: Duration,
}

/// Consecutive failed tries that make a live colour unhealthy while it is observed: one lost
/// answer is a blip, three in a row (as Kubernetes' default `failureThreshold`) is a fault.
pub const OBSERVE_FAILURES: u32 = 3;

/// What one try got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The colour answered with this status.
    Status(u16),
    /// No answer within the try's timeout.
    TimedOut,
    /// No HTTP answer at all (connection refused or reset, not HTTP), in words.
    Unreachable(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Status(s) => write!(f, "status {s}"),
            Answer::TimedOut => f.write_str("no answer within the timeout"),
            Answer::Unreachable(why) => write!(f, "no answer ({why})"),
        }
    }
}

impl HealthPolicy {
    /// Whether `answer` is a healthy one.
    pub fn healthy(&self, answer: &Answer) -> bool {
        match (answer, self.status) {
            (Answer::Status(got), Some(want)) => *got == want,
            (Answer::Status(got), None) => (200..300).contains(got),
            _ => false,
        }
    }

    /// What is expected, for messages: `GET /healthz → 200` or `… → 2xx`.
    pub fn describe(&self) -> String {
        match self.status {
            Some(s) => format!("GET {} → {s}", self.path),
            None => format!("GET {} → 2xx", self.path),
        }
    }
}

/// One try: when it ended (since its series started) and what it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Try {
    pub at: Duration,
    pub answer: Answer,
}

/// A series of tries that ended badly: the check, the last answer, how many tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub check: String,
    pub last: Answer,
    pub tries: u32,
    pub reason: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Where a series of tries stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided: try again after `interval`.
    Pending,
    Healthy,
    Unhealthy(Failure),
}

/// The tries that must prove a new colour healthy before it gets traffic: `successes` healthy
/// answers in a row before `deadline`.
#[derive(Debug, Clone)]
pub struct Verification {
    policy: HealthPolicy,
    in_a_row: u32,
    tries: u32,
}

impl Verification {
    pub fn new(policy: HealthPolicy) -> Self {
        Verification {
            policy,
            in_a_row: 0,
            tries: 0,
        }
    }

    pub fn policy(&self) -> &HealthPolicy {
        &self.policy
    }

    /// Counts one try. A try that ends past the deadline does not count, however it went:
    /// the deadline is the promise to the user.
    pub fn record(&mut self, t: &Try) -> Verdict {
        self.tries += 1;
        let healthy = self.policy.healthy(&t.answer);
        if t.at > self.policy.deadline {
            return Verdict::Unhealthy(self.failure(&t.answer, "did not pass within its deadline"));
        }
        if healthy {
            self.in_a_row += 1;
            if self.in_a_row >= self.policy.successes.max(1) {
                return Verdict::Healthy;
            }
        } else {
            self.in_a_row = 0;
        }
        // A next try would start past the deadline: say so now rather than wait for it.
        if t.at + self.policy.interval > self.policy.deadline {
            return Verdict::Unhealthy(self.failure(&t.answer, "did not pass within its deadline"));
        }
        Verdict::Pending
    }

    fn failure(&self, last: &Answer, why: &str) -> Failure {
        let check = self.policy.describe();
        Failure {
            reason: format!(
                "health check {check} {why} ({:?}, {} tries; the last got {last})",
                self.policy.deadline, self.tries
            ),
            check,
            last: last.clone(),
            tries: self.tries,
        }
    }
}

/// The tries that keep watching a colour after it got traffic: [`OBSERVE_FAILURES`] failed
/// answers in a row make it unhealthy.
#[derive(Debug, Clone)]
pub struct Observation {
    policy: HealthPolicy,
    failed_in_a_row: u32,
    tries: u32,
}

impl Observation {
    pub fn new(policy: HealthPolicy) -> Self {
        Observation {
            policy,
            failed_in_a_row: 0,
            tries: 0,
        }
    }

    /// Counts one try: `Pending` while the colour holds, `Unhealthy` once it does not.
    pub fn record(&mut self, t: &Try) -> Verdict {
        self.tries += 1;
        if self.policy.healthy(&t.answer) {
            self.failed_in_a_row = 0;
            return Verdict::Pending;
        }
        self.failed_in_a_row += 1;
        if self.failed_in_a_row < OBSERVE_FAILURES {
            return Verdict::Pending;
        }
        let check = self.policy.describe();
        Verdict::Unhealthy(Failure {
            reason: format!(
                "health check {check} failed {OBSERVE_FAILURES} times in a row while observed \
                 (after {:?}); the last got {}",
                t.at, t.answer
            ),
            check,
            last: t.answer.clone(),
            tries: self.tries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn policy(status: Option<u16>, successes: u32) -> HealthPolicy {
        HealthPolicy {
            path: "/healthz".into(),
            status,
            successes,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(10),
        }
    }

    fn at(secs: u64, answer: Answer) -> Try {
        Try {
            at: Duration::from_secs(secs),
            answer,
        }
    }

    #[test]
    fn any_2xx_unless_a_status_is_asked_for() {
        let any = policy(None, 1);
        assert!(any.healthy(&Answer::Status(204)));
        assert!(
            !any.healthy(&Answer::Status(301)),
            "a redirect is not healthy"
        );
        assert!(!any.healthy(&Answer::TimedOut));
        let exact = policy(Some(301), 1);
        assert!(exact.healthy(&Answer::Status(301)));
        assert!(!exact.healthy(&Answer::Status(200)));
        assert_eq!(exact.describe(), "GET /healthz → 301");
    }

    #[test]
    fn verify_needs_consecutive_successes() {
        let mut v = Verification::new(policy(None, 2));
        assert_eq!(v.record(&at(1, Answer::Status(200))), Verdict::Pending);
        assert_eq!(v.record(&at(2, Answer::Status(500))), Verdict::Pending);
        assert_eq!(v.record(&at(3, Answer::Status(200))), Verdict::Pending);
        assert_eq!(v.record(&at(4, Answer::Status(200))), Verdict::Healthy);
    }

    #[test]
    fn verify_fails_at_its_deadline_naming_the_check_and_the_answer() {
        let mut v = Verification::new(policy(Some(200), 1));
        for s in 1..=9 {
            assert_eq!(
                v.record(&at(s, Answer::Status(301))),
                Verdict::Pending,
                "{s}"
            );
        }
        let Verdict::Unhealthy(f) = v.record(&at(10, Answer::Status(301))) else {
            panic!("the next try would start past the deadline");
        };
        assert_eq!(f.check, "GET /healthz → 200");
        assert_eq!(f.last, Answer::Status(301));
        assert!(f.reason.contains("status 301"), "{}", f.reason);
        assert_eq!(f.tries, 10);
    }

    #[test]
    fn a_healthy_answer_past_the_deadline_does_not_count() {
        let mut v = Verification::new(policy(None, 1));
        assert!(matches!(
            v.record(&at(11, Answer::Status(200))),
            Verdict::Unhealthy(_)
        ));
    }

    #[test]
    fn observe_tolerates_blips_and_fails_on_consecutive_failures() {
        let mut o = Observation::new(policy(None, 1));
        assert_eq!(o.record(&at(1, Answer::TimedOut)), Verdict::Pending);
        assert_eq!(o.record(&at(2, Answer::Status(503))), Verdict::Pending);
        assert_eq!(o.record(&at(3, Answer::Status(200))), Verdict::Pending);
        for s in 4..4 + u64::from(OBSERVE_FAILURES) - 1 {
            assert_eq!(o.record(&at(s, Answer::Status(500))), Verdict::Pending);
        }
        let Verdict::Unhealthy(f) = o.record(&at(9, Answer::Status(500))) else {
            panic!("{OBSERVE_FAILURES} failures in a row");
        };
        assert_eq!(f.last, Answer::Status(500));
        assert!(f.reason.contains("GET /healthz → 2xx"), "{}", f.reason);
    }
}
