//! Carries a [`Release`] out on a [`Target`]: records each phase before acting, performs the
//! machine's actions in order, waits for the times it asks for, makes health tries with their
//! timeout, and turns a cancellation into [`Input::Cancel`]. The decisions are the machine's;
//! this loop only does I/O and measures time. It never gives up on the way back: an action that
//! puts the previous release back is retried until it succeeds or the target says it cannot.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::release::{Action, Answer, Input, Outcome, Phase, Plan, Release, Step};

/// Where a release is carried out: the Docker host and its proxy, or Kubernetes.
#[allow(async_fn_in_trait)] // used with concrete targets only; no `Send` bound is needed
pub trait Target {
    /// Records that the release enters `phase`, before anything of the phase happens, so
    /// that [`crate::release::recover`] knows where a crash left it.
    async fn record(&mut self, phase: Phase) -> Result<(), String>;
    async fn start_candidate(&mut self) -> Result<(), String>;
    /// One health try at the candidate; it must end within `timeout`.
    async fn check_candidate(&mut self, timeout: Duration) -> Answer;
    async fn route_to_candidate(&mut self, drain: Duration) -> Result<(), String>;
    async fn route_to_previous(&mut self) -> Result<(), String>;
    async fn remove_candidate(&mut self) -> Result<(), String>;
    async fn retire_previous(&mut self) -> Result<(), String>;
    /// Says why a step of the way back failed, once per try (the driver retries).
    fn trouble(&mut self, action: &Action, error: &str);
}

/// How often, at most, the way back is tried before the release is reported as stuck.
const UNDO_TRIES: u32 = 10;

/// Runs `plan` on `target` until the release ends.
pub async fn drive<T: Target>(target: &mut T, plan: Plan, cancel: &CancellationToken) -> Outcome {
    let start = Instant::now();
    let timeout = plan.health.timeout;
    let (mut release, mut step) = Release::start(plan);
    let mut recorded = None;
    loop {
        if release.phase() != recorded
            && let Some(phase) = release.phase()
        {
            recorded = Some(phase);
            if let Err(e) = target.record(phase).await {
                // Without a record a crash could not be recovered: do not go on.
                let why = format!("recording the {} phase: {e}", phase.as_str());
                step = release
                    .step(start.elapsed(), Input::Failed(why))
                    .unwrap_or_else(unreachable);
            }
        }
        let Step { actions, outcome } = step;
        let mut next = None;
        for action in &actions {
            if let Some(input) = perform(target, action, timeout, start, cancel).await {
                next = Some(input);
                if outcome.is_none() {
                    break;
                }
            }
        }
        if let Some(o) = outcome {
            return o;
        }
        let input = match next {
            Some(i) => i,
            // The machine always asks for something that reports back; nothing is a bug.
            None => Input::Failed("the release asked for nothing to do".into()),
        };
        step = release
            .step(start.elapsed(), input)
            .unwrap_or_else(unreachable);
    }
}

fn unreachable(e: crate::release::machine::Unexpected) -> Step {
    // A driver bug: end the release the safe way.
    Step {
        actions: vec![Action::RouteToPrevious, Action::RemoveCandidate],
        outcome: Some(Outcome::Failed {
            phase: e.phase.unwrap_or(Phase::Prepare),
            reason: format!("internal error: {e}"),
        }),
    }
}

/// Performs one action; returns what it reports back to the machine, if anything.
async fn perform<T: Target>(
    target: &mut T,
    action: &Action,
    timeout: Duration,
    start: Instant,
    cancel: &CancellationToken,
) -> Option<Input> {
    let wait_until = |at: Duration| async move {
        tokio::select! {
            _ = tokio::time::sleep_until(start + at) => false,
            _ = cancel.cancelled() => true,
        }
    };
    let done = |r: Result<(), String>, ok: Input| Some(r.map_or_else(Input::Failed, |()| ok));
    match action {
        Action::StartCandidate => {
            if cancel.is_cancelled() {
                return Some(Input::Cancel);
            }
            let r = tokio::select! {
                r = target.start_candidate() => r,
                _ = cancel.cancelled() => return Some(Input::Cancel),
            };
            done(r, Input::Prepared)
        }
        Action::CheckCandidate { at } => {
            if wait_until(*at).await {
                return Some(Input::Cancel);
            }
            let answer = tokio::time::timeout(timeout, target.check_candidate(timeout))
                .await
                .unwrap_or(Answer::TimedOut);
            Some(Input::Health(answer))
        }
        Action::WakeAt(at) => {
            if wait_until(*at).await {
                return Some(Input::Cancel);
            }
            Some(Input::Tick)
        }
        Action::RouteToCandidate { drain } => {
            done(target.route_to_candidate(*drain).await, Input::Switched)
        }
        Action::RetirePrevious => done(target.retire_previous().await, Input::Retired),
        Action::RouteToPrevious | Action::RemoveCandidate => {
            undo(target, action).await;
            None
        }
    }
}

/// A step of the way back, retried with a growing pause: the previous release must serve.
async fn undo<T: Target>(target: &mut T, action: &Action) {
    let mut pause = Duration::from_millis(100);
    for _ in 0..UNDO_TRIES {
        let r = match action {
            Action::RouteToPrevious => target.route_to_previous().await,
            Action::RemoveCandidate => target.remove_candidate().await,
            _ => return,
        };
        match r {
            Ok(()) => return,
            Err(e) => target.trouble(action, &e),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted target (an in-memory stand-in for the trait, recording
    //! calls): the real targets are tested end to end with real containers.
    use super::*;
    use crate::release::{HealthPolicy, Rollback};

    #[derive(Default)]
    struct Script {
        calls: Vec<String>,
        healthy_after: u32,
        checks: u32,
        failing_route_back: u32,
        cancel_at_check: Option<(u32, CancellationToken)>,
    }

    impl Target for Script {
        async fn record(&mut self, phase: Phase) -> Result<(), String> {
            self.calls.push(format!("record {}", phase.as_str()));
            Ok(())
        }
        async fn start_candidate(&mut self) -> Result<(), String> {
            self.calls.push("start".into());
            Ok(())
        }
        async fn check_candidate(&mut self, _timeout: Duration) -> Answer {
            self.checks += 1;
            if let Some((n, c)) = &self.cancel_at_check
                && *n == self.checks
            {
                c.cancel();
            }
            if self.checks > self.healthy_after {
                Answer::Status(200)
            } else {
                Answer::Status(503)
            }
        }
        async fn route_to_candidate(&mut self, _drain: Duration) -> Result<(), String> {
            self.calls.push("route new".into());
            Ok(())
        }
        async fn route_to_previous(&mut self) -> Result<(), String> {
            self.calls.push("route old".into());
            if self.failing_route_back > 0 {
                self.failing_route_back -= 1;
                return Err("proxy busy".into());
            }
            Ok(())
        }
        async fn remove_candidate(&mut self) -> Result<(), String> {
            self.calls.push("remove new".into());
            Ok(())
        }
        async fn retire_previous(&mut self) -> Result<(), String> {
            self.calls.push("retire old".into());
            Ok(())
        }
        fn trouble(&mut self, _action: &Action, error: &str) {
            self.calls.push(format!("trouble {error}"));
        }
    }

    fn plan() -> Plan {
        let ms = Duration::from_millis;
        Plan {
            health: HealthPolicy {
                path: "/healthz".into(),
                status: None,
                successes: 2,
                interval: ms(5),
                timeout: ms(50),
                deadline: ms(500),
            },
            observe: ms(30),
            drain: ms(40),
            rollback: Rollback::Auto,
            has_previous: true,
        }
    }

    fn calls(s: &Script) -> Vec<&str> {
        s.calls
            .iter()
            .map(String::as_str)
            .filter(|c| !c.starts_with("check"))
            .collect()
    }

    #[tokio::test]
    async fn records_each_phase_before_acting_and_ends_live() {
        let mut t = Script {
            healthy_after: 3,
            ..Script::default()
        };
        let outcome = drive(&mut t, plan(), &CancellationToken::new()).await;
        assert_eq!(outcome, Outcome::Live);
        assert_eq!(
            calls(&t),
            [
                "record prepare",
                "start",
                "record verify",
                "record switch",
                "route new",
                "record observe",
                "record retire",
                "retire old"
            ]
        );
        assert!(
            t.checks >= 5,
            "2 to pass after 3 failures, then observed: {}",
            t.checks
        );
    }

    #[tokio::test]
    async fn a_cancel_while_observed_puts_the_old_release_back_retrying_until_it_is() {
        let cancel = CancellationToken::new();
        let mut t = Script {
            healthy_after: 0,
            failing_route_back: 2,
            cancel_at_check: Some((3, cancel.clone())),
            ..Script::default()
        };
        let outcome = drive(&mut t, plan(), &cancel).await;
        assert_eq!(
            outcome,
            Outcome::Cancelled {
                phase: Phase::Observe
            }
        );
        let c = calls(&t);
        let tail = &c[c.len() - 6..];
        assert_eq!(
            tail,
            [
                "route old",
                "trouble proxy busy",
                "route old",
                "trouble proxy busy",
                "route old",
                "remove new"
            ]
        );
    }
}
