//! `moat validate` on the pipeline files in tests/pipelines: every invalid file gives exactly
//! the located messages its `# expect:` lines list; every valid file is OK.

mod common;

use common::*;

fn files(sub: &str) -> Vec<std::path::PathBuf> {
    let dir = tests_dir().join("pipelines").join(sub);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn invalid_files_give_their_located_messages() {
    let files = files("invalid");
    assert!(files.len() >= 20, "only {} invalid files", files.len());
    for path in files {
        let src = std::fs::read(&path).unwrap();
        let expected: Vec<String> = String::from_utf8_lossy(&src)
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .map(|l| format!("{}:{l}", path.display()))
            .collect();
        assert!(
            !expected.is_empty(),
            "{} has no # expect: line",
            path.display()
        );
        let out = moat().arg("validate").arg(&path).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: {}",
            path.display(),
            describe(&out)
        );
        let got: Vec<String> = text(&out.stderr).lines().map(str::to_string).collect();
        assert_eq!(got, expected, "{}", path.display());
    }
}

#[test]
fn valid_files_are_ok() {
    let files = files("valid");
    assert!(files.len() >= 5);
    for path in files {
        let out = moat().arg("validate").arg(&path).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}",
            path.display(),
            describe(&out)
        );
        let stdout = text(&out.stdout);
        assert!(
            stdout.starts_with(&format!("{}: OK (", path.display())),
            "{stdout}"
        );
    }
}

#[test]
fn unreadable_input_exits_two() {
    let dir = TempDir::new("validate").expect("temp dir");
    let out = moat()
        .arg("validate")
        .arg(dir.path().join("missing.yml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(text(&out.stderr).contains("cannot read"));
    // A directory is not a file either.
    let out = moat().arg("validate").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

#[test]
fn default_file_is_dot_moat_yml() {
    let dir = TempDir::new("validate-default").expect("temp dir");
    std::fs::write(
        dir.path().join(".moat.yml"),
        "version: 1\nstages:\n  - name: t\n    kind: test\n    image: busybox\n",
    )
    .unwrap();
    let out = moat()
        .arg("validate")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(text(&out.stdout), ".moat.yml: OK (1 stage)\n");
}
