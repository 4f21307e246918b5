//! The expansion caps: a value may expand to at most 64 KiB and a plan to at most 1 MiB; a
//! file beyond them is refused by validation with the value's file:line:col, and planning a
//! pipeline built past validation fails the same way instead of allocating terabytes.

use moat_pipelines::plan::{
    Event, MAX_BRANCH_BYTES, MAX_PLAN_BYTES, MAX_VALUE_BYTES, PlanError, check_expansion,
};
use moat_pipelines::{EventKind, Pos, parse, plan};

fn push(branch: &str) -> Event {
    Event {
        kind: EventKind::Push,
        branch: Some(branch.into()),
        target_branch: None,
        tag: None,
        commit: "c0ffee".into(),
        repo: "acme/shop".into(),
        run_id: "42".into(),
    }
}

/// `V0: "ab"`, then each variable twice the previous one: `V{n}` is 2^(n+1) bytes.
fn doubling(n: usize) -> String {
    let mut s = String::from("version: 1\nenv:\n  V0: \"ab\"\n");
    for i in 1..n {
        s.push_str(&format!("  V{i}: \"${{V{}}}${{V{}}}\"\n", i - 1, i - 1));
    }
    s.push_str("stages:\n  - name: t\n    kind: test\n    image: alpine\n");
    s
}

#[test]
fn the_nested_bomb_is_refused_at_the_value_that_overflows() {
    let src = doubling(40);
    assert!(src.len() < 1200, "a small file: {}", src.len());
    let d = parse(&src).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    // V15 is exactly 64 KiB; V16 (line 3 + 16) is the first value past the cap.
    assert_eq!(d.0[0].pos, Pos::new(19, 8), "{d}");
    assert!(d.0[0].message.contains("env value V16"), "{d}");
    assert!(d.0[0].message.contains("64 KiB"), "{d}");
    let rendered = d.render(".moat.yml");
    assert!(rendered.starts_with(".moat.yml:19:8: "), "{rendered}");
}

#[test]
fn a_value_exactly_at_the_cap_plans() {
    let p = parse(&doubling(16)).unwrap_or_else(|e| panic!("{e}"));
    let plan = plan(&p, &push("main")).unwrap();
    let v15 = plan.stages[0].env.iter().find(|(k, _)| k == "V15").unwrap();
    assert_eq!(v15.1.len(), MAX_VALUE_BYTES);
}

#[test]
fn one_value_with_many_references_is_capped() {
    let big = "x".repeat(1000);
    let refs = "${A}".repeat(66);
    let src = format!(
        "version: 1\nstages:\n  - name: t\n    kind: test\n    image: alpine\n    env:\n      A: \"{big}\"\n      B: \"{refs}\"\n"
    );
    let d = parse(&src).unwrap_err();
    assert_eq!(d.0[0].pos, Pos::new(8, 10), "{d}");
    assert!(d.0[0].message.contains("env value B in stage \"t\""), "{d}");
}

#[test]
fn images_and_build_values_are_capped_too() {
    let src = format!(
        "version: 1\nenv:\n  A: \"{}\"\nstages:\n  - name: b\n    kind: build\n    build:\n      tag: \"${{A}}${{A}}\"\n",
        "y".repeat(40_000)
    );
    let d = parse(&src).unwrap_err();
    assert_eq!(d.0[0].pos, Pos::new(8, 12), "{d}");
    assert!(
        d.0[0].message.contains("the build tag of stage \"b\""),
        "{d}"
    );
}

#[test]
fn many_stages_each_near_the_cap_hit_the_plan_total() {
    // Each stage holds one 60 000-byte value: 17 stages pass 1 MiB.
    let value = "z".repeat(30_000);
    let mut src = format!("version: 1\nenv:\n  HALF: \"{value}\"\nstages:\n");
    for i in 0..20 {
        src.push_str(&format!(
            "  - name: s{i}\n    kind: test\n    image: alpine\n    env:\n      FULL: \"${{HALF}}${{HALF}}\"\n"
        ));
    }
    assert!(src.len() < 40_000);
    let d = parse(&src).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert!(d.0[0].message.contains("1024 KiB"), "{d}");
    // The stage that crosses it: (30 000 + 4 + 60 000 + 4) bytes a stage.
    let stage = MAX_PLAN_BYTES / 90_008;
    assert!(
        d.0[0].message.contains(&format!("stage \"s{stage}\"")),
        "{d}"
    );
    // Fewer stages fit.
    let fewer: String = src.lines().take(4 + 5 * 10).collect::<Vec<_>>().join("\n") + "\n";
    parse(&fewer).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn validation_assumes_the_largest_builtins() {
    // 257 branch names fit in a value, 258 do not: validation counts MAX_BRANCH_BYTES for
    // each, so no branch an event may carry can make a validated file overflow.
    let fits = 65_536 / MAX_BRANCH_BYTES;
    let file = |n: usize| {
        format!(
            "version: 1\nstages:\n  - name: t\n    kind: test\n    image: alpine\n    env:\n      B: \"{}\"\n",
            "${MOAT_BRANCH}".repeat(n)
        )
    };
    let p = parse(&file(fits)).unwrap_or_else(|e| panic!("{e}"));
    let long = "b".repeat(MAX_BRANCH_BYTES);
    assert!(plan(&p, &push(&long)).is_ok());
    let d = parse(&file(fits + 1)).unwrap_err();
    assert_eq!(d.0[0].pos, Pos::new(7, 10), "{d}");
    assert!(check_expansion(&p).is_ok());
}

#[test]
fn an_event_beyond_the_bounds_is_refused() {
    let p = parse("version: 1\nstages:\n  - name: t\n    kind: test\n    image: alpine\n").unwrap();
    let long = "b".repeat(MAX_BRANCH_BYTES + 1);
    assert_eq!(
        plan(&p, &push(&long)).unwrap_err(),
        PlanError::EventTooLong {
            field: "branch name",
            len: MAX_BRANCH_BYTES + 1,
            max: MAX_BRANCH_BYTES
        }
    );
}

#[test]
fn planning_a_pipeline_built_past_validation_fails_located() {
    // A pipeline deserialized from elsewhere has not been through validation: planning
    // still refuses it, at the stage's position when the value has none.
    let mut p =
        parse("version: 1\nstages:\n  - name: t\n    kind: test\n    image: alpine\n").unwrap();
    p.env.push(("A".into(), "a".repeat(1000)));
    p.env.push(("B".into(), "${A}".repeat(100)));
    match plan(&p, &push("main")).unwrap_err() {
        PlanError::Located { pos, message } => {
            assert_eq!(pos, Pos::new(3, 5));
            assert!(message.contains("env value B (top-level env)"), "{message}");
        }
        e => panic!("{e}"),
    }
}

#[test]
fn an_interpolated_image_is_checked_once_the_event_is_known() {
    let src =
        "version: 1\nstages:\n  - name: t\n    kind: test\n    image: \"app:${MOAT_BRANCH}\"\n";
    let p = parse(src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan(&p, &push("main")).unwrap().stages[0].image.as_deref(),
        Some("app:main")
    );
    let e = plan(&p, &push("feature/x")).unwrap_err();
    assert_eq!(e.pos(), Pos::new(5, 12));
    assert!(
        e.render(".moat.yml").starts_with(
            ".moat.yml:5:12: the image of stage \"t\" is \"app:feature/x\" after interpolation"
        ),
        "{e}"
    );
    // A stage `when:` skips is not refused for its references.
    let tagged = parse(&format!(
        "{}    when: {{ event: [tag] }}\n",
        src.replace("MOAT_BRANCH", "MOAT_TAG")
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let p2 = plan(&tagged, &push("main")).unwrap();
    assert!(p2.stages[0].skip.is_some());
    // A hostile branch name is escaped in the message.
    let e = plan(&p, &push("x\u{202e}\n")).unwrap_err();
    assert!(e.message().contains("\"app:x\\u{202e}\\n\""), "{e}");
}
