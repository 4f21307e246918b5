//! The state machine driven through every way a release can go, as a target would drive it.

use std::time::Duration;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn plan(rollback: Rollback, has_previous: bool) -> Plan {
    Plan {
        health: HealthPolicy {
            path: "/healthz".into(),
            status: None,
            successes: 2,
            interval: secs(1),
            timeout: secs(1),
            deadline: secs(10),
        },
        observe: secs(5),
        drain: secs(8),
        rollback,
        has_previous,
    }
}

const OK: Answer = Answer::Status(200);

/// Starts a release and brings it to `Observe` at t=3 (prepared at 0, healthy at 1 and 2).
fn switched(p: Plan) -> Release {
    let (mut r, first) = Release::start(p);
    assert_eq!(first.actions, [Action::StartCandidate]);
    let s = r.step(secs(0), Input::Prepared).unwrap();
    assert_eq!(s.actions, [Action::CheckCandidate { at: secs(0) }]);
    let s = r.step(secs(1), Input::Health(OK)).unwrap();
    assert_eq!(s.actions, [Action::CheckCandidate { at: secs(2) }]);
    let s = r.step(secs(2), Input::Health(OK)).unwrap();
    assert_eq!(s.actions, [Action::RouteToCandidate { drain: secs(8) }]);
    assert_eq!(r.phase(), Some(Phase::Switch));
    let s = r.step(secs(3), Input::Switched).unwrap();
    assert_eq!(s.actions, [Action::CheckCandidate { at: secs(4) }]);
    assert_eq!(r.phase(), Some(Phase::Observe));
    r
}

#[test]
fn a_healthy_release_is_observed_then_retires_the_old_colour_after_the_drain() {
    let mut r = switched(plan(Rollback::Auto, true));
    for t in 4..7 {
        let s = r.step(secs(t), Input::Health(OK)).unwrap();
        assert_eq!(
            s.actions,
            [Action::CheckCandidate { at: secs(t + 1) }],
            "t={t}"
        );
    }
    // Observe ends at 3+5=8; the next try would be past it, so wake at the end.
    let s = r.step(secs(7), Input::Health(OK)).unwrap();
    assert_eq!(s.actions, [Action::WakeAt(secs(8))]);
    // Observed long enough, but the drain (8 s from the switch) runs until 11.
    let s = r.step(secs(8), Input::Tick).unwrap();
    assert_eq!(s.actions, [Action::WakeAt(secs(11))]);
    let s = r.step(secs(11), Input::Tick).unwrap();
    assert_eq!(s.actions, [Action::RetirePrevious]);
    assert_eq!(r.phase(), Some(Phase::Retire));
    // A cancel now undoes nothing: the release is live.
    assert_eq!(r.step(secs(11), Input::Cancel).unwrap().actions, []);
    let s = r.step(secs(12), Input::Retired).unwrap();
    assert_eq!(s.outcome, Some(Outcome::Live));
    assert!(
        r.step(secs(12), Input::Tick).is_err(),
        "a finished release takes nothing"
    );
}

#[test]
fn a_release_that_never_turns_healthy_is_removed_and_traffic_never_moves() {
    let (mut r, _) = Release::start(plan(Rollback::Auto, true));
    r.step(secs(0), Input::Prepared).unwrap();
    let mut last = None;
    for t in 0..=20 {
        let s = r.step(secs(t), Input::Health(Answer::Status(301))).unwrap();
        assert!(
            !s.actions
                .iter()
                .any(|a| matches!(a, Action::RouteToCandidate { .. })),
            "{s:?}"
        );
        if s.outcome.is_some() {
            last = Some(s);
            break;
        }
    }
    let s = last.expect("verify ends at its deadline");
    assert_eq!(s.actions, [Action::RemoveCandidate]);
    let Some(Outcome::Failed { phase, reason }) = s.outcome else {
        panic!("{s:?}")
    };
    assert_eq!(phase, Phase::Verify);
    assert!(
        reason.contains("GET /healthz → 2xx") && reason.contains("status 301"),
        "{reason}"
    );
}

#[test]
fn unhealthy_while_observed_switches_back_on_its_own() {
    let mut r = switched(plan(Rollback::Auto, true));
    let bad = Answer::Status(500);
    let mut t = 4;
    let s = loop {
        let s = r.step(secs(t), Input::Health(bad.clone())).unwrap();
        if s.outcome.is_some() {
            break s;
        }
        t += 1;
    };
    assert_eq!(t, 3 + u64::from(OBSERVE_FAILURES));
    assert_eq!(
        s.actions,
        [Action::RouteToPrevious, Action::RemoveCandidate]
    );
    assert!(
        matches!(&s.outcome, Some(Outcome::RolledBack { reason }) if reason.contains("status 500")),
        "{s:?}"
    );
}

#[test]
fn manual_rollback_or_no_previous_release_fails_the_stage_and_leaves_traffic() {
    for (rollback, previous) in [(Rollback::Manual, true), (Rollback::Auto, false)] {
        let mut r = switched(plan(rollback, previous));
        let s = r
            .step(secs(4), Input::Failed("container exited with 137".into()))
            .unwrap();
        assert_eq!(s.actions, [], "{rollback:?} {previous}");
        let Some(Outcome::Failed { phase, reason }) = s.outcome else {
            panic!("{s:?}")
        };
        assert_eq!(phase, Phase::Observe);
        assert!(reason.contains("137"), "{reason}");
    }
}

#[test]
fn every_way_out_before_retire_leaves_the_previous_release_serving() {
    // Cancel or failure in each phase before the switch: the new colour goes, traffic stays.
    for input in [Input::Cancel, Input::Failed("boom".into())] {
        let (mut r, _) = Release::start(plan(Rollback::Auto, true));
        let s = r.step(secs(0), input.clone()).unwrap();
        assert_eq!(s.actions, [Action::RemoveCandidate], "prepare {input:?}");

        let (mut r, _) = Release::start(plan(Rollback::Auto, true));
        r.step(secs(0), Input::Prepared).unwrap();
        let s = r.step(secs(0), input.clone()).unwrap();
        assert_eq!(s.actions, [Action::RemoveCandidate], "verify {input:?}");

        let mut r = switched(plan(Rollback::Auto, true));
        if input == Input::Cancel {
            let s = r.step(secs(4), input.clone()).unwrap();
            assert_eq!(
                s.actions,
                [Action::RouteToPrevious, Action::RemoveCandidate]
            );
            assert_eq!(
                s.outcome,
                Some(Outcome::Cancelled {
                    phase: Phase::Observe
                })
            );
        }
    }
    // A failed switch may have half happened: route back, then remove.
    let (mut r, _) = Release::start(plan(Rollback::Auto, true));
    r.step(secs(0), Input::Prepared).unwrap();
    r.step(secs(1), Input::Health(OK)).unwrap();
    r.step(secs(2), Input::Health(OK)).unwrap();
    let s = r
        .step(secs(2), Input::Failed("proxy unreachable".into()))
        .unwrap();
    assert_eq!(
        s.actions,
        [Action::RouteToPrevious, Action::RemoveCandidate]
    );
    assert!(matches!(
        s.outcome,
        Some(Outcome::Failed {
            phase: Phase::Switch,
            ..
        })
    ));
}

#[test]
fn inputs_out_of_order_are_refused_and_change_nothing() {
    let (mut r, _) = Release::start(plan(Rollback::Auto, true));
    let e = r.step(secs(0), Input::Switched).unwrap_err();
    assert_eq!(e.phase, Some(Phase::Prepare));
    assert_eq!(r.phase(), Some(Phase::Prepare));
    let e = r.step(secs(0), Input::Health(OK)).unwrap_err();
    assert!(e.to_string().contains("prepare"), "{e}");
}

#[test]
fn zero_observe_and_drain_retire_at_once() {
    let mut p = plan(Rollback::Auto, true);
    p.observe = Duration::ZERO;
    p.drain = Duration::ZERO;
    let (mut r, _) = Release::start(p);
    r.step(secs(0), Input::Prepared).unwrap();
    r.step(secs(0), Input::Health(OK)).unwrap();
    r.step(secs(1), Input::Health(OK)).unwrap();
    let s = r.step(secs(1), Input::Switched).unwrap();
    assert_eq!(s.actions, [Action::RetirePrevious]);
}

#[test]
fn recovery_never_resumes_half_way() {
    for phase in [Phase::Prepare, Phase::Verify] {
        let s = recover(phase);
        assert_eq!(s.actions, [Action::RemoveCandidate]);
        assert!(matches!(s.outcome, Some(Outcome::Failed { phase: p, .. }) if p == phase));
    }
    for phase in [Phase::Switch, Phase::Observe] {
        let s = recover(phase);
        assert_eq!(
            s.actions,
            [Action::RouteToPrevious, Action::RemoveCandidate]
        );
        let Some(Outcome::Failed { reason, .. }) = s.outcome else {
            panic!()
        };
        assert!(reason.contains("previous release serves"), "{reason}");
    }
    assert_eq!(recover(Phase::Retire).outcome, Some(Outcome::Live));
}
