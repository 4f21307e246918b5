//! The one scheduling rule, shared by `moat run` (the local executor) and the coordinator's
//! store: which waiting stages may start, which are skipped and why, and how a run ends once
//! every stage is decided. Pure: callers load the states, ask, and store the answers.
//!
//! The rule: a stage is decided once every need is decided. A need that passed, or that
//! `when:` excluded, is satisfied; a need that failed, was cancelled or was itself skipped
//! skips the stage, naming the first such need. A stage whose needs are satisfied runs, unless
//! it waits for an approval. Skips cascade within one call.

use std::fmt;

/// Where a stage stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waits for its needs (or for an approval).
    Pending,
    /// Decided to run and not finished yet: started, queued for a runner, or running.
    Running,
    Passed,
    Failed,
    Cancelled,
    /// Excluded by `when:` (or not selected): satisfies its dependants.
    Excluded,
    /// Not run because a need did not pass.
    Skipped,
}

impl State {
    /// Finished for good: nothing about this stage will change.
    pub fn is_finished(self) -> bool {
        !matches!(self, State::Pending | State::Running)
    }

    /// How this state reads to a dependant: `Ok(true)` satisfied, `Ok(false)` undecided,
    /// `Err(end)` blocking.
    fn as_need(self) -> Result<bool, NeedEnd> {
        match self {
            State::Passed | State::Excluded => Ok(true),
            State::Pending | State::Running => Ok(false),
            State::Failed => Err(NeedEnd::Failed),
            State::Cancelled => Err(NeedEnd::Cancelled),
            State::Skipped => Err(NeedEnd::Skipped),
        }
    }
}

/// One stage as the rule sees it. `needs` are positions in the slice given to [`settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageView<'a> {
    pub name: &'a str,
    pub needs: &'a [usize],
    pub state: State,
    /// Must be approved before it may run, and is not yet.
    pub awaits_approval: bool,
}

/// How a blocking need ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeedEnd {
    Failed,
    Cancelled,
    Skipped,
}

/// Why a stage is skipped: the first of its needs that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked<'a> {
    pub need: &'a str,
    pub end: NeedEnd,
}

impl fmt::Display for Blocked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.end {
            NeedEnd::Failed => "failed",
            NeedEnd::Cancelled => "was cancelled",
            NeedEnd::Skipped => "was skipped",
        };
        write!(f, "needs {}, which {why}", self.need)
    }
}

/// What becomes of a pending stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Every need is satisfied: start it.
    Run,
    /// A need did not pass.
    Skip(Blocked<'a>),
    /// Every need is satisfied, but it waits for `moat approve`.
    AwaitApproval,
}

/// The reason a waiting stage shows while it waits for its approval.
pub const AWAITING_APPROVAL: &str = "waiting for approval";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("stage {stage} needs position {need}, which does not exist")]
    UnknownNeed { stage: String, need: usize },
}

/// Decides every pending stage that can be decided now, in stage order, with skips cascading:
/// a stage skipped here decides its dependants in the same call. Stages still waiting for an
/// undecided need are left out.
pub fn settle<'a>(stages: &[StageView<'a>]) -> Result<Vec<(usize, Decision<'a>)>, ScheduleError> {
    for s in stages {
        if let Some(&need) = s.needs.iter().find(|&&n| n >= stages.len()) {
            return Err(ScheduleError::UnknownNeed {
                stage: s.name.to_string(),
                need,
            });
        }
    }
    let mut states: Vec<State> = stages.iter().map(|s| s.state).collect();
    let mut decided: Vec<Option<Decision<'a>>> = vec![None; stages.len()];
    loop {
        let mut changed = false;
        for (i, s) in stages.iter().enumerate() {
            if states[i] != State::Pending || decided[i].is_some() {
                continue;
            }
            let mut undecided = false;
            let mut blocker = None;
            for &n in s.needs {
                match states[n].as_need() {
                    Ok(true) => {}
                    Ok(false) => {
                        undecided = true;
                        break;
                    }
                    Err(end) => {
                        blocker.get_or_insert(Blocked {
                            need: stages[n].name,
                            end,
                        });
                    }
                }
            }
            if undecided {
                continue;
            }
            let decision = match blocker {
                Some(b) => {
                    states[i] = State::Skipped;
                    changed = true;
                    Decision::Skip(b)
                }
                None if s.awaits_approval => Decision::AwaitApproval,
                None => {
                    states[i] = State::Running;
                    Decision::Run
                }
            };
            decided[i] = Some(decision);
        }
        if !changed {
            break;
        }
    }
    Ok(decided
        .into_iter()
        .enumerate()
        .filter_map(|(i, d)| d.map(|d| (i, d)))
        .collect())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion<'a> {
    Passed,
    /// The stage that made it fail and how it ended.
    Failed {
        stage: &'a str,
        end: NeedEnd,
    },
    Cancelled,
}

impl Conclusion<'_> {
    /// The run's reason, when its status alone does not say it.
    pub fn reason(&self) -> Option<String> {
        match self {
            Conclusion::Failed { stage, end } => Some(match end {
                NeedEnd::Failed => format!("stage {stage} failed"),
                NeedEnd::Cancelled => format!("stage {stage} was cancelled"),
                NeedEnd::Skipped => format!("stage {stage} was skipped"),
            }),
            Conclusion::Passed | Conclusion::Cancelled => None,
        }
    }
}

/// The run's end once every stage is finished (`None` before): cancelled when a cancel was
/// asked for; failed, naming the first failed stage, else the first cancelled one, else the
/// first skipped one; passed when every stage passed or was excluded.
pub fn conclude<'a>(stages: &[StageView<'a>], cancel_requested: bool) -> Option<Conclusion<'a>> {
    if !stages.iter().all(|s| s.state.is_finished()) {
        return None;
    }
    if cancel_requested {
        return Some(Conclusion::Cancelled);
    }
    for end in [NeedEnd::Failed, NeedEnd::Cancelled, NeedEnd::Skipped] {
        if let Some(s) = stages.iter().find(|s| s.state.as_need() == Err(end)) {
            return Some(Conclusion::Failed { stage: s.name, end });
        }
    }
    Some(Conclusion::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    fn views<'a>(spec: &'a [(State, &'a [usize], bool)]) -> Vec<StageView<'a>> {
        spec.iter()
            .enumerate()
            .map(|(i, (state, needs, approval))| StageView {
                name: NAMES[i],
                needs,
                state: *state,
                awaits_approval: *approval,
            })
            .collect()
    }

    fn decide(spec: &[(State, &[usize], bool)]) -> Vec<(usize, String)> {
        settle(&views(spec))
            .unwrap()
            .into_iter()
            .map(|(i, d)| {
                let d = match d {
                    Decision::Run => "run".to_string(),
                    Decision::AwaitApproval => "approval".to_string(),
                    Decision::Skip(b) => b.to_string(),
                };
                (i, d)
            })
            .collect()
    }

    /// One need in every state, alone: what its dependant becomes.
    #[test]
    fn a_single_need_in_every_state() {
        use State::*;
        let table: [(State, Option<&str>); 7] = [
            (Pending, None),
            (Running, None),
            (Passed, Some("run")),
            (Excluded, Some("run")),
            (Failed, Some("needs a, which failed")),
            (Cancelled, Some("needs a, which was cancelled")),
            (Skipped, Some("needs a, which was skipped")),
        ];
        for (need, expect) in table {
            let got = decide(&[(need, &[], false), (Pending, &[0], false)]);
            let got: Vec<_> = got.into_iter().filter(|(i, _)| *i == 1).collect();
            match expect {
                None => assert!(got.is_empty(), "{need:?}: {got:?}"),
                Some(e) => assert_eq!(got, vec![(1, e.to_string())], "{need:?}"),
            }
        }
    }

    /// Every pair of need states: undecided wins over blocking (wait for all needs), and the
    /// first blocking need in `needs:` order is named.
    #[test]
    fn every_pair_of_need_states() {
        use State::*;
        let all = [
            Pending, Running, Passed, Excluded, Failed, Cancelled, Skipped,
        ];
        for x in all {
            for y in all {
                let got = decide(&[(x, &[], false), (y, &[], false), (Pending, &[0, 1], false)]);
                let got: Vec<_> = got.into_iter().filter(|(i, _)| *i == 2).collect();
                let undecided = |s: State| matches!(s, Pending | Running);
                let ok = |s: State| matches!(s, Passed | Excluded);
                if undecided(x) || undecided(y) {
                    assert!(got.is_empty(), "{x:?} {y:?}: {got:?}");
                } else if ok(x) && ok(y) {
                    assert_eq!(got, vec![(2, "run".to_string())], "{x:?} {y:?}");
                } else {
                    let (name, s) = if ok(x) { ("b", y) } else { ("a", x) };
                    let end = s.as_need().unwrap_err();
                    let want = Blocked { need: name, end }.to_string();
                    assert_eq!(got, vec![(2, want)], "{x:?} {y:?}");
                }
            }
        }
    }

    #[test]
    fn skips_cascade_and_runs_do_not() {
        use State::*;
        // a failed: b skipped, c (needs b) skipped naming b; d (no needs) runs.
        assert_eq!(
            decide(&[
                (Failed, &[], false),
                (Pending, &[0], false),
                (Pending, &[1], false),
                (Pending, &[], false),
            ]),
            vec![
                (1, "needs a, which failed".to_string()),
                (2, "needs b, which was skipped".to_string()),
                (3, "run".to_string()),
            ]
        );
        // a runs now; b waits for it to finish.
        assert_eq!(
            decide(&[(Pending, &[], false), (Pending, &[0], false)]),
            vec![(0, "run".to_string())]
        );
    }

    #[test]
    fn approvals_wait_only_once_needs_are_satisfied() {
        use State::*;
        assert_eq!(
            decide(&[(Passed, &[], false), (Pending, &[0], true)]),
            vec![(1, "approval".to_string())]
        );
        assert_eq!(
            decide(&[(Running, &[], false), (Pending, &[0], true)]),
            vec![]
        );
        // A blocked stage is skipped whether or not it was approved.
        assert_eq!(
            decide(&[(Failed, &[], false), (Pending, &[0], true)]),
            vec![(1, "needs a, which failed".to_string())]
        );
        // Something waiting for an approval is not decided: its dependants wait too.
        assert_eq!(
            decide(&[(Pending, &[], true), (Pending, &[0], false)]),
            vec![(0, "approval".to_string())]
        );
    }

    #[test]
    fn finished_stages_are_left_alone_and_bad_needs_are_errors() {
        use State::*;
        assert_eq!(
            decide(&[(Passed, &[], false), (Skipped, &[0], false)]),
            vec![]
        );
        let bad = views(&[(Pending, &[3], false)]);
        assert_eq!(
            settle(&bad).unwrap_err(),
            ScheduleError::UnknownNeed {
                stage: "a".into(),
                need: 3
            }
        );
    }

    #[test]
    fn conclusions() {
        use State::*;
        fn run(
            spec: &'static [(State, &'static [usize], bool)],
            cancel: bool,
        ) -> Option<(Conclusion<'static>, Option<String>)> {
            conclude(&views(spec), cancel).map(|c| {
                let reason = c.reason();
                (c, reason)
            })
        }
        assert_eq!(
            run(&[(Passed, &[], false), (Running, &[], false)], false),
            None
        );
        assert_eq!(
            run(&[(Passed, &[], false), (Pending, &[], false)], true),
            None
        );
        assert_eq!(
            run(&[(Passed, &[], false), (Excluded, &[], false)], false),
            Some((Conclusion::Passed, None))
        );
        assert_eq!(
            run(&[(Failed, &[], false), (Passed, &[], false)], true),
            Some((Conclusion::Cancelled, None))
        );
        // A failure is named before a cancellation before a skip, whatever the order.
        assert_eq!(
            run(
                &[
                    (Skipped, &[], false),
                    (Cancelled, &[], false),
                    (Failed, &[], false)
                ],
                false
            ),
            Some((
                Conclusion::Failed {
                    stage: "c",
                    end: NeedEnd::Failed
                },
                Some("stage c failed".into())
            ))
        );
        assert_eq!(
            run(&[(Skipped, &[], false), (Cancelled, &[], false)], false)
                .unwrap()
                .1,
            Some("stage b was cancelled".into())
        );
        assert_eq!(
            run(&[(Skipped, &[], false), (Passed, &[], false)], false)
                .unwrap()
                .1,
            Some("stage a was skipped".into())
        );
        assert_eq!(run(&[], false), Some((Conclusion::Passed, None)));
    }
}
