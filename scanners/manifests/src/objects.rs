//! From YAML documents to workloads: which objects carry a pod template, where their pod spec
//! and pod metadata are, and their containers. An object of a workload kind whose pod spec
//! cannot be found, or whose fields have the wrong shape, is kept with its problems (see
//! `shape`), never dropped. Also the small typed accessors the checks
//! share, so that every check reads fields the same way (only real booleans and integers
//! count: `"true"` in quotes is a string, which the API server would refuse anyway).

use moat_pipelines::Pos;
use moat_pipelines::yaml::Node;

use super::shape::Problems;

/// The kinds whose objects create pods.
pub const WORKLOAD_KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicaSet",
    "ReplicationController",
];

/// `List` kinds nest (a List of Lists is legal); deeper than this is not a real manifest.
const MAX_LIST_DEPTH: usize = 8;

/// One object that creates pods.
#[derive(Debug)]
pub(crate) struct Workload<'a> {
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub object: &'a Node,
    pub metadata: Option<&'a Node>,
    /// The pod template's metadata (`None` for a Pod, whose metadata is its own).
    pub template_metadata: Option<&'a Node>,
    /// The `spec` key of the pod spec, where pod-level findings without a field point.
    pub spec_key: Pos,
    pub spec: &'a Node,
    /// Fields the checks read that have the wrong shape: each one is a finding.
    pub problems: Vec<(Pos, String)>,
}

/// An object of a workload (or `List`) kind that cannot be checked at all: no pod spec to be
/// found, or list items that are not a list. Each problem is a finding, so it never passes.
#[derive(Debug)]
pub(crate) struct Malformed<'a> {
    pub kind: &'a str,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub problems: Vec<(Pos, String)>,
}

impl<'a> Workload<'a> {
    /// The metadata the pod will have: its annotations are where AppArmor profiles live.
    pub fn pod_metadata(&self) -> Option<&'a Node> {
        if self.kind == "Pod" {
            self.metadata
        } else {
            self.template_metadata
        }
    }

    /// True for kinds whose pods run to completion, where probes make no sense.
    pub fn runs_to_completion(&self) -> bool {
        matches!(self.kind, "Job" | "CronJob")
    }
}

/// What a document holds.
#[derive(Debug, Default)]
pub(crate) struct Objects<'a> {
    /// Kubernetes objects seen (anything with a `kind`), list items included.
    pub objects: usize,
    pub workloads: Vec<Workload<'a>>,
    pub malformed: Vec<Malformed<'a>>,
}

/// Collects the workloads of one document, looking into `List` kinds.
pub(crate) fn collect<'a>(doc: &'a Node, out: &mut Objects<'a>) {
    collect_at(doc, out, 0);
}

fn collect_at<'a>(doc: &'a Node, out: &mut Objects<'a>, depth: usize) {
    let Some(kind) = doc.get("kind").and_then(Node::as_str) else {
        // Not a Kubernetes object (a Helm values file, a CI config): not ours to judge.
        return;
    };
    out.objects += 1;
    let metadata = doc.get("metadata").filter(|m| m.as_map().is_some());
    let text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Node::as_str);
    let name = text("name").or_else(|| text("generateName")).unwrap_or("");
    let namespace = text("namespace");
    let mut problems = Problems::default();
    let malformed = |problems: Problems| Malformed {
        kind,
        namespace,
        name,
        problems: problems.0,
    };
    if kind.ends_with("List") {
        match doc.get("items") {
            None => {}
            Some(items) if items.is_null() => {}
            Some(items) => match items.as_seq() {
                Some(_) if depth >= MAX_LIST_DEPTH => {
                    problems.0.push((
                        items.pos,
                        format!("`List` nested deeper than {MAX_LIST_DEPTH}: not checked"),
                    ));
                }
                Some(items) => {
                    for item in items {
                        if item.as_map().is_none() {
                            problems.0.push((
                                item.pos,
                                format!(
                                    "`items` holds {}, expected an object: it cannot be checked",
                                    item.describe()
                                ),
                            ));
                            continue;
                        }
                        collect_at(item, out, depth + 1);
                    }
                }
                None => problems.0.push((
                    items.pos,
                    format!(
                        "`items` is {}, expected a list: the objects cannot be checked",
                        items.describe()
                    ),
                )),
            },
        }
        if !problems.0.is_empty() {
            out.malformed.push(malformed(problems));
        }
        return;
    }
    if !WORKLOAD_KINDS.contains(&kind) {
        return;
    }
    problems.object(doc);
    let (template, pod, prefix) = match kind {
        "Pod" => (None, Some(doc), ""),
        "CronJob" => {
            let t = problems
                .step(doc, "", "spec")
                .and_then(|s| problems.step(s, "spec", "jobTemplate"))
                .and_then(|j| problems.step(j, "spec.jobTemplate", "spec"))
                .and_then(|s| problems.step(s, "spec.jobTemplate.spec", "template"));
            (t, t, "spec.jobTemplate.spec.template")
        }
        _ => {
            let t = problems
                .step(doc, "", "spec")
                .and_then(|s| problems.step(s, "spec", "template"));
            (t, t, "spec.template")
        }
    };
    if let Some(t) = template {
        problems.template(t, prefix);
    }
    let spec_prefix = if prefix.is_empty() {
        "spec".to_string()
    } else {
        format!("{prefix}.spec")
    };
    let Some(spec) = pod.and_then(|p| problems.step(p, prefix, "spec")) else {
        out.malformed.push(malformed(problems));
        return;
    };
    problems.pod_spec(spec, &spec_prefix);
    let spec_key = pod
        .and_then(|p| entry(p, "spec"))
        .map_or(spec.pos, |(k, _)| k.pos);
    out.workloads.push(Workload {
        kind,
        namespace,
        name,
        object: doc,
        metadata,
        template_metadata: template.and_then(|t| t.get("metadata")),
        spec_key,
        spec,
        problems: problems.0,
    });
}

/// Which list of the pod spec a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerKind {
    Init,
    Regular,
    Ephemeral,
}

#[derive(Debug)]
pub(crate) struct Container<'a> {
    pub kind: ContainerKind,
    /// Its `name`, or `containers[2]` when it has none.
    pub name: String,
    pub node: &'a Node,
}

impl Container<'_> {
    /// Where a finding about a field the container lacks points: its `securityContext` when
    /// it has one, else the container itself.
    pub fn missing_pos(&self) -> Pos {
        entry(self.node, "securityContext").map_or(self.node.pos, |(k, _)| k.pos)
    }
}

/// The containers of a pod spec: init containers, containers, ephemeral containers.
pub(crate) fn containers(spec: &Node) -> Vec<Container<'_>> {
    let mut out = Vec::new();
    for (field, kind) in [
        ("initContainers", ContainerKind::Init),
        ("containers", ContainerKind::Regular),
        ("ephemeralContainers", ContainerKind::Ephemeral),
    ] {
        let Some(items) = spec.get(field).and_then(Node::as_seq) else {
            continue;
        };
        for (i, node) in items.iter().enumerate() {
            if node.as_map().is_none() {
                continue;
            }
            let name = node
                .get("name")
                .and_then(Node::as_str)
                .map_or_else(|| format!("{field}[{i}]"), str::to_string);
            out.push(Container { kind, name, node });
        }
    }
    out
}

/// The key and value of `key` in a mapping.
pub(crate) fn entry<'a>(node: &'a Node, key: &str) -> Option<(&'a Node, &'a Node)> {
    node.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(k, v)| (k, v))
}

/// The node at a path of mapping keys.
pub(crate) fn path<'a>(node: &'a Node, keys: &[&str]) -> Option<&'a Node> {
    keys.iter().try_fold(node, |n, k| n.get(k))
}

/// The key and value at a path of mapping keys: findings point at the key.
pub(crate) fn field<'a>(node: &'a Node, keys: &[&str]) -> Option<(&'a Node, &'a Node)> {
    let (last, parents) = keys.split_last()?;
    entry(path(node, parents)?, last)
}

/// A plain integer scalar (`0x` hex included, as YAML writes them).
pub(crate) fn as_int(node: &Node) -> Option<i64> {
    let s = node.as_plain()?;
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let value = match digits.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<i64>().ok()?,
    };
    Some(if neg { -value } else { value })
}

/// The non-empty string values of a sequence of scalars, with their nodes.
pub(crate) fn strings(node: Option<&Node>) -> impl Iterator<Item = (&Node, &str)> {
    node.and_then(Node::as_seq)
        .unwrap_or(&[])
        .iter()
        .filter_map(|n| n.as_str().map(|s| (n, s)))
}

#[cfg(test)]
mod tests {
    use moat_pipelines::yaml::{Limits, parse_documents};

    use super::*;

    fn docs(src: &str) -> Vec<Node> {
        parse_documents(src, &Limits::default()).unwrap()
    }

    #[test]
    fn finds_pod_specs_of_every_workload_kind() {
        let src = "\
kind: Pod
metadata: {name: p, namespace: ns}
spec: {containers: [{name: a}]}
---
kind: CronJob
metadata: {name: c}
spec:
  jobTemplate:
    spec:
      template:
        metadata: {annotations: {x: y}}
        spec: {containers: [{name: b}]}
---
kind: List
items:
- kind: StatefulSet
  metadata: {generateName: s-}
  spec: {template: {spec: {initContainers: [{name: i}], containers: [{image: x}]}}}
- kind: Service
  metadata: {name: svc}
---
kind: Deployment
metadata: {name: no-template}
spec: {}
";
        let parsed = docs(src);
        let mut objects = Objects::default();
        for d in &parsed {
            collect(d, &mut objects);
        }
        assert_eq!(objects.objects, 6);
        let w: Vec<(&str, Option<&str>, &str)> = objects
            .workloads
            .iter()
            .map(|w| (w.kind, w.namespace, w.name))
            .collect();
        assert_eq!(
            w,
            [
                ("Pod", Some("ns"), "p"),
                ("CronJob", None, "c"),
                ("StatefulSet", None, "s-")
            ]
        );
        assert!(objects.workloads[0].pod_metadata().is_some());
        assert!(
            objects.workloads[1]
                .pod_metadata()
                .unwrap()
                .get("annotations")
                .is_some()
        );
        let names: Vec<String> = containers(objects.workloads[2].spec)
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["i", "containers[0]"]);
    }

    #[test]
    fn integers() {
        let d = &docs("a: 0\nb: -1\nc: 0x10\nd: '0'\ne: 1.5\n")[0];
        let int = |k: &str| as_int(d.get(k).unwrap());
        assert_eq!(int("a"), Some(0));
        assert_eq!(int("b"), Some(-1));
        assert_eq!(int("c"), Some(16));
        assert_eq!(int("d"), None);
        assert_eq!(int("e"), None);
    }
}
