//! The release state machine every target shares: prepare → verify → switch → observe →
//! retire, and the way back from each step. [`Release::step`] takes what the target reports
//! (a phase's I/O done or failed, a health answer, a cancellation, the time) and says what the
//! target must do next, in order. Pure: it starts no container, routes no traffic and reads no
//! clock; the target does all three and records each [`Phase`] it enters, so that a killed
//! runner resumes with [`recover`].
//!
//! The promise it keeps: traffic moves to the new colour only after verify proved it healthy,
//! and every way out before the switch, or back after it, leaves the previous release serving.

use std::time::Duration;

use super::health::{Answer, HealthPolicy, Observation, Try, Verdict, Verification};

/// What the stage asked for, with what the target knows.
#[derive(Debug, Clone)]
pub struct Plan {
    pub health: HealthPolicy,
    /// How long the new colour is watched after the switch (the old one keeps running).
    pub observe: Duration,
    /// How long requests in flight on the old colour may take after the switch.
    pub drain: Duration,
    /// Whether an unhealthy new colour is switched back on its own.
    pub rollback: Rollback,
    /// Whether a release is live now: without one there is nothing to switch back to.
    pub has_previous: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    Auto,
    Manual,
}

/// The phases a release goes through, in order; what the target records before it acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Prepare,
    Verify,
    Switch,
    Observe,
    Retire,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Prepare => "prepare",
            Phase::Verify => "verify",
            Phase::Switch => "switch",
            Phase::Observe => "observe",
            Phase::Retire => "retire",
        }
    }
}

/// What the target reports. Each comes with the time since the release started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The new colour's containers run.
    Prepared,
    /// One health try at the new colour got this.
    Health(Answer),
    /// Traffic goes to the new colour.
    Switched,
    /// The old colour is stopped.
    Retired,
    /// The I/O of the current phase failed, in words (the container died, the proxy refused).
    Failed(String),
    /// The run was cancelled.
    Cancel,
    /// The time asked for with [`Action::WakeAt`] has come.
    Tick,
}

/// What the target must do, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the new colour beside the live one (by digest, sandboxed), then report
    /// [`Input::Prepared`].
    StartCandidate,
    /// Make one health try at the new colour once `at` has come, then report its
    /// [`Input::Health`].
    CheckCandidate { at: Duration },
    /// Send new requests to the new colour; the old one drains for `drain`. Then report
    /// [`Input::Switched`].
    RouteToCandidate { drain: Duration },
    /// Send new requests back to the release that was live before (none if there was none).
    RouteToPrevious,
    /// Stop and remove the new colour's containers.
    RemoveCandidate,
    /// Stop the old colour (its image stays, for a rollback), then report [`Input::Retired`].
    RetirePrevious,
    /// Report [`Input::Tick`] once `at` has come.
    WakeAt(Duration),
}

/// How a release ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new colour serves; the old one is retired.
    Live,
    /// The new colour never served, or serves but failed while observed with `rollback:
    /// manual` or nothing to go back to.
    Failed { phase: Phase, reason: String },
    /// The new colour served, turned unhealthy and was switched back from.
    RolledBack { reason: String },
    /// The run was cancelled; the previous release serves.
    Cancelled { phase: Phase },
}

/// An input the current phase cannot take: the target's bug, never the user's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a release in phase {} cannot take {input:?}", phase.map_or("done", Phase::as_str))]
pub struct Unexpected {
    pub phase: Option<Phase>,
    pub input: Input,
}

#[derive(Debug, Clone)]
enum State {
    Preparing,
    Verifying {
        since: Duration,
        tries: Verification,
    },
    Switching,
    Observing {
        since: Duration,
        tries: Observation,
    },
    Retiring,
    Done(Outcome),
}

/// One release attempt on one environment.
#[derive(Debug, Clone)]
pub struct Release {
    plan: Plan,
    state: State,
}

/// What a step decided: the actions to carry out in order and, when the release is over, how
/// it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub actions: Vec<Action>,
    pub outcome: Option<Outcome>,
}

impl Release {
    /// A release about to start, and its first action.
    pub fn start(plan: Plan) -> (Release, Step) {
        let release = Release {
            plan,
            state: State::Preparing,
        };
        (release, step(vec![Action::StartCandidate], None))
    }

    /// The phase it is in (`None` once it has ended).
    pub fn phase(&self) -> Option<Phase> {
        match self.state {
            State::Preparing => Some(Phase::Prepare),
            State::Verifying { .. } => Some(Phase::Verify),
            State::Switching => Some(Phase::Switch),
            State::Observing { .. } => Some(Phase::Observe),
            State::Retiring => Some(Phase::Retire),
            State::Done(_) => None,
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Done(o) => Some(o),
            _ => None,
        }
    }

    /// Takes what the target reports at `now` (since the release started).
    pub fn step(&mut self, now: Duration, input: Input) -> Result<Step, Unexpected> {
        let phase = self.phase();
        let unexpected = |input| Unexpected { phase, input };
        let health = self.plan.health.clone();
        match (&mut self.state, input) {
            (State::Done(_), input) => Err(unexpected(input)),

            // Before the switch every way out removes the new colour: traffic never moved.
            (State::Preparing | State::Verifying { .. }, Input::Cancel) => {
                Ok(self.end(vec![Action::RemoveCandidate], cancelled(phase)))
            }
            (State::Preparing | State::Verifying { .. }, Input::Failed(why)) => {
                Ok(self.fail(vec![Action::RemoveCandidate], phase, why))
            }
            (State::Preparing, Input::Prepared) => {
                self.state = State::Verifying {
                    since: now,
                    tries: Verification::new(health),
                };
                Ok(step(vec![Action::CheckCandidate { at: now }], None))
            }
            (State::Verifying { since, tries }, Input::Health(answer)) => {
                let t = Try {
                    at: now.saturating_sub(*since),
                    answer,
                };
                match tries.record(&t) {
                    Verdict::Healthy => {
                        self.state = State::Switching;
                        Ok(step(
                            vec![Action::RouteToCandidate {
                                drain: self.plan.drain,
                            }],
                            None,
                        ))
                    }
                    Verdict::Pending => Ok(step(
                        vec![Action::CheckCandidate {
                            at: now + health.interval,
                        }],
                        None,
                    )),
                    Verdict::Unhealthy(f) => {
                        Ok(self.fail(vec![Action::RemoveCandidate], phase, f.reason))
                    }
                }
            }

            // A failed or interrupted switch may or may not have happened: route back (the
            // proxy's swap is idempotent) and remove the new colour.
            (State::Switching, Input::Failed(why)) => Ok(self.fail(undo(), phase, why)),
            (State::Switching, Input::Cancel) => Ok(self.end(undo(), cancelled(phase))),
            (State::Switching, Input::Switched) => {
                self.state = State::Observing {
                    since: now,
                    tries: Observation::new(health),
                };
                Ok(self.observe_or_retire(now, now))
            }

            (State::Observing { .. }, Input::Cancel) => Ok(self.end(undo(), cancelled(phase))),
            (State::Observing { since, tries }, Input::Health(answer)) => {
                let since = *since;
                let t = Try {
                    at: now.saturating_sub(since),
                    answer,
                };
                match tries.record(&t) {
                    Verdict::Unhealthy(f) => Ok(self.unhealthy_after_switch(f.reason)),
                    _ => Ok(self.observe_or_retire(since, now)),
                }
            }
            (State::Observing { .. }, Input::Failed(why)) => Ok(self
                .unhealthy_after_switch(format!("the new release failed while observed: {why}"))),
            (State::Observing { since, .. }, Input::Tick) => {
                let since = *since;
                Ok(self.observe_or_retire(since, now))
            }

            // Past observe the new release is live: a cancel no longer undoes it, and an old
            // colour that would not stop is the target's to clean up, not a failed release.
            (State::Retiring, Input::Cancel) => Ok(step(Vec::new(), None)),
            (State::Retiring, Input::Retired | Input::Failed(_)) => {
                Ok(self.end(Vec::new(), Outcome::Live))
            }

            (_, input) => Err(unexpected(input)),
        }
    }

    /// While observed: the next try, or, once both the observe window and the drain are over,
    /// the retirement of the old colour.
    fn observe_or_retire(&mut self, switched: Duration, now: Duration) -> Step {
        let observe_end = switched + self.plan.observe;
        let retire_at = switched + self.plan.observe.max(self.plan.drain);
        if now >= retire_at {
            self.state = State::Retiring;
            return step(vec![Action::RetirePrevious], None);
        }
        if now >= observe_end {
            // Watched long enough; the old colour still drains.
            return step(vec![Action::WakeAt(retire_at)], None);
        }
        let next = now + self.plan.health.interval;
        if next >= observe_end {
            step(vec![Action::WakeAt(retire_at.min(observe_end))], None)
        } else {
            step(vec![Action::CheckCandidate { at: next }], None)
        }
    }

    fn unhealthy_after_switch(&mut self, reason: String) -> Step {
        if self.plan.rollback == Rollback::Auto && self.plan.has_previous {
            self.end(undo(), Outcome::RolledBack { reason })
        } else {
            // Manual rollback: the human decides (`moat rollback`); the old colour keeps
            // running for that. With nothing to go back to, the new colour is all there is.
            let reason = if self.plan.has_previous {
                format!("{reason}; `rollback: manual` leaves it serving")
            } else {
                format!("{reason}; no earlier release to switch back to")
            };
            self.end(
                Vec::new(),
                Outcome::Failed {
                    phase: Phase::Observe,
                    reason,
                },
            )
        }
    }

    fn fail(&mut self, actions: Vec<Action>, phase: Option<Phase>, reason: String) -> Step {
        let phase = phase.unwrap_or(Phase::Prepare);
        self.end(actions, Outcome::Failed { phase, reason })
    }

    fn end(&mut self, actions: Vec<Action>, outcome: Outcome) -> Step {
        self.state = State::Done(outcome.clone());
        step(actions, Some(outcome))
    }
}

fn step(actions: Vec<Action>, outcome: Option<Outcome>) -> Step {
    Step { actions, outcome }
}

fn undo() -> Vec<Action> {
    vec![Action::RouteToPrevious, Action::RemoveCandidate]
}

fn cancelled(phase: Option<Phase>) -> Outcome {
    Outcome::Cancelled {
        phase: phase.unwrap_or(Phase::Prepare),
    }
}

/// What a target does with a release it finds recorded in `phase` after a crash (of the
/// runner, the coordinator or the machine): nothing is resumed half-way. Before the retire
/// phase the previous release is put back and the new colour removed; in it, the new release
/// had passed its observe window and is live, so only the old colour's retirement is finished.
pub fn recover(phase: Phase) -> Step {
    match phase {
        Phase::Prepare | Phase::Verify => {
            step(vec![Action::RemoveCandidate], Some(interrupted(phase)))
        }
        Phase::Switch | Phase::Observe => step(undo(), Some(interrupted(phase))),
        Phase::Retire => step(vec![Action::RetirePrevious], Some(Outcome::Live)),
    }
}

fn interrupted(phase: Phase) -> Outcome {
    Outcome::Failed {
        phase,
        reason: format!(
            "the deploy was interrupted during {} (the runner stopped); the previous release serves",
            phase.as_str()
        ),
    }
}
