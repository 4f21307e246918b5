//! The `moat.dev/ignore` annotation: `"ID=reason[,ID2=reason]"` on an object or on its pod
//! template suppresses those checks for that object. A reason is required so that every
//! exception explains itself in review; an entry without one, or naming no known check, is
//! not honoured and becomes a finding of its own (`MOAT-K8S-IGNORE-INVALID`), which cannot be
//! ignored. Reasons cannot contain commas, which separate entries.

use moat_pipelines::Pos;

use super::objects::{Workload, entry};
use super::rules::{self, Check, IGNORE_INVALID};

/// The annotation read on the object and on its pod template.
pub const IGNORE_ANNOTATION: &str = "moat.dev/ignore";

#[derive(Debug, Default)]
pub(crate) struct Ignores {
    /// Honoured entries: the check and why.
    pub honoured: Vec<(&'static Check, String)>,
    /// Entries not honoured: where and why not.
    pub problems: Vec<(Pos, String)>,
}

impl Ignores {
    /// The reason `check` is ignored, if it is.
    pub fn reason(&self, id: &str) -> Option<&str> {
        self.honoured
            .iter()
            .find(|(c, _)| c.id == id)
            .map(|(_, r)| r.as_str())
    }
}

pub(crate) fn read(w: &Workload<'_>) -> Ignores {
    let mut out = Ignores::default();
    for metadata in [w.metadata, w.template_metadata].into_iter().flatten() {
        let Some((k, v)) = metadata
            .get("annotations")
            .and_then(|a| entry(a, IGNORE_ANNOTATION))
        else {
            continue;
        };
        match v.as_str() {
            Some(text) => parse(text, k.pos, &mut out),
            None => out.problems.push((
                k.pos,
                format!("{IGNORE_ANNOTATION} must be a string \"ID=reason[,ID2=reason]\""),
            )),
        }
    }
    out
}

fn parse(text: &str, pos: Pos, out: &mut Ignores) {
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, reason) = match part.split_once('=') {
            Some((id, reason)) => (id.trim(), reason.trim()),
            None => (part, ""),
        };
        let Some(check) = rules::by_id(id) else {
            out.problems.push((
                pos,
                format!("{IGNORE_ANNOTATION} names {id:?}, which is not a check ID; it suppresses nothing"),
            ));
            continue;
        };
        if check == IGNORE_INVALID {
            out.problems.push((
                pos,
                format!("{IGNORE_ANNOTATION} cannot suppress {}", check.id),
            ));
        } else if reason.is_empty() {
            out.problems.push((
                pos,
                format!(
                    "{IGNORE_ANNOTATION} gives no reason for {}, so it is not honoured (write {}=reason)",
                    check.id, check.id
                ),
            ));
        } else {
            out.honoured.push((check, reason.to_string()));
        }
    }
}

/// Test helper and documentation of the grammar: the honoured IDs and problem count.
#[cfg(test)]
fn parsed(text: &str) -> (Vec<(&'static str, String)>, Vec<String>) {
    let mut out = Ignores::default();
    parse(text, Pos::new(1, 1), &mut out);
    (
        out.honoured
            .iter()
            .map(|(c, r)| (c.id, r.clone()))
            .collect(),
        out.problems.into_iter().map(|(_, m)| m).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        let (ok, bad) =
            parsed(" PSS-BASELINE-PRIVILEGED = needs /dev access , moat-k8s-latest-tag=dev only");
        assert_eq!(
            ok,
            [
                ("PSS-BASELINE-PRIVILEGED", "needs /dev access".to_string()),
                ("MOAT-K8S-LATEST-TAG", "dev only".to_string())
            ]
        );
        assert!(bad.is_empty());

        let (ok, bad) = parsed("PSS-BASELINE-PRIVILEGED,MOAT-K8S-LATEST-TAG=  ,NOPE=x,,");
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].contains("no reason for PSS-BASELINE-PRIVILEGED"));
        assert!(bad[1].contains("no reason for MOAT-K8S-LATEST-TAG"));
        assert!(bad[2].contains("\"NOPE\""));

        let (ok, bad) = parsed("MOAT-K8S-IGNORE-INVALID=because");
        assert!(ok.is_empty());
        assert!(bad[0].contains("cannot suppress"));
    }

    #[test]
    fn read_looks_at_object_and_template() {
        let src = "\
kind: Deployment
metadata:
  name: d
  annotations:
    moat.dev/ignore: PSS-BASELINE-PRIVILEGED=debug pod
spec:
  template:
    metadata:
      annotations:
        moat.dev/ignore: MOAT-K8S-LATEST-TAG
    spec:
      containers: [{name: a}]
";
        let docs =
            moat_pipelines::yaml::parse_documents(src, &moat_pipelines::yaml::Limits::default())
                .unwrap();
        let mut objects = super::super::objects::Objects::default();
        super::super::objects::collect(&docs[0], &mut objects);
        let ignores = read(&objects.workloads[0]);
        assert_eq!(ignores.reason("PSS-BASELINE-PRIVILEGED"), Some("debug pod"));
        assert_eq!(ignores.reason("MOAT-K8S-LATEST-TAG"), None);
        assert_eq!(ignores.problems.len(), 1);
        assert_eq!(ignores.problems[0].0, Pos::new(10, 9));
    }
}
