//! The shape of every field the checks read: a workload whose `containers` is a mapping, whose
//! `spec` is a list or whose `securityContext` is a string cannot be judged, and the checks
//! would read "nothing there" and pass it. This module lists those fields with the YAML shape
//! they must have and reports each mismatch (and a workload without a pod spec at all) as a
//! located problem, which becomes an unsuppressable `MOAT-K8S-MALFORMED-WORKLOAD` finding.
//!
//! It only looks at shapes (mapping, list); what values mean is the checks' business. A null
//! value is an absent field, as it is for the API server.

use moat_pipelines::Pos;
use moat_pipelines::yaml::Node;

/// A field's YAML shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Map,
    Seq,
    /// A list whose items are mappings (containers, volumes, ports, env).
    SeqOfMaps,
}

impl Shape {
    fn fits(self, node: &Node) -> bool {
        match self {
            Shape::Map => node.as_map().is_some(),
            Shape::Seq => node.as_seq().is_some(),
            Shape::SeqOfMaps => node.as_seq().is_some(),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Shape::Map => "a mapping",
            Shape::Seq | Shape::SeqOfMaps => "a list",
        }
    }
}

/// The metadata fields read on every workload object and on a pod template (Deployment and
/// the like, relative to the template): `metadata` holds the ignore annotation.
const METADATA: &[(&[&str], Shape)] = &[
    (&["metadata"], Shape::Map),
    (&["metadata", "annotations"], Shape::Map),
];

/// The security contexts' nested fields, read on pods and containers alike.
const SECURITY_CONTEXT: &[(&[&str], Shape)] = &[
    (&["securityContext"], Shape::Map),
    (&["securityContext", "seLinuxOptions"], Shape::Map),
    (&["securityContext", "seccompProfile"], Shape::Map),
    (&["securityContext", "appArmorProfile"], Shape::Map),
    (&["securityContext", "windowsOptions"], Shape::Map),
];

/// The pod-spec fields the checks read.
const POD_SPEC: &[(&[&str], Shape)] = &[
    (&["initContainers"], Shape::SeqOfMaps),
    (&["containers"], Shape::SeqOfMaps),
    (&["ephemeralContainers"], Shape::SeqOfMaps),
    (&["volumes"], Shape::SeqOfMaps),
    (&["os"], Shape::Map),
    (&["securityContext", "sysctls"], Shape::SeqOfMaps),
];

/// The container fields the checks read.
const CONTAINER: &[(&[&str], Shape)] = &[
    (&["securityContext", "capabilities"], Shape::Map),
    (&["securityContext", "capabilities", "add"], Shape::Seq),
    (&["securityContext", "capabilities", "drop"], Shape::Seq),
    (&["ports"], Shape::SeqOfMaps),
    (&["env"], Shape::SeqOfMaps),
    (&["resources"], Shape::Map),
    (&["resources", "limits"], Shape::Map),
    (&["resources", "requests"], Shape::Map),
];

/// The lists of containers in a pod spec.
const CONTAINER_LISTS: &[&str] = &["initContainers", "containers", "ephemeralContainers"];

/// Located shape problems of one workload-kind object.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<(Pos, String)>);

impl Problems {
    /// Checks `fields` under `node`, whose own path in messages is `prefix`.
    fn fields(&mut self, node: &Node, prefix: &str, fields: &[(&[&str], Shape)]) {
        for (keys, shape) in fields {
            self.field(node, prefix, keys, *shape);
        }
    }

    fn field(&mut self, node: &Node, prefix: &str, keys: &[&str], shape: Shape) {
        let mut at = node;
        let mut key_pos = node.pos;
        for key in keys {
            // A parent of the wrong shape is reported by its own entry (each parent is listed
            // before its children), so stop quietly here.
            let Some((k, v)) = at
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
            else {
                return;
            };
            if v.is_null() {
                return;
            }
            key_pos = k.pos;
            at = v;
        }
        let name = join(prefix, keys);
        if !shape.fits(at) {
            self.0.push((
                key_pos,
                format!(
                    "`{name}` is {}, expected {}: the object cannot be checked",
                    at.describe(),
                    shape.expected()
                ),
            ));
            return;
        }
        if shape == Shape::SeqOfMaps {
            for (i, item) in at.as_seq().unwrap_or(&[]).iter().enumerate() {
                if item.as_map().is_none() {
                    self.0.push((
                        item.pos,
                        format!(
                            "`{name}[{i}]` is {}, expected a mapping: the object cannot be checked",
                            item.describe()
                        ),
                    ));
                }
            }
        }
    }

    /// Checks a pod spec (`spec` at `prefix`) and every container in it.
    pub(crate) fn pod_spec(&mut self, spec: &Node, prefix: &str) {
        self.fields(spec, prefix, SECURITY_CONTEXT);
        self.fields(spec, prefix, POD_SPEC);
        for list in CONTAINER_LISTS {
            let items = spec.get(list).and_then(Node::as_seq).unwrap_or(&[]);
            for (i, c) in items.iter().filter(|c| c.as_map().is_some()).enumerate() {
                let at = format!("{}[{i}]", join(prefix, &[list]));
                self.fields(c, &at, SECURITY_CONTEXT);
                self.fields(c, &at, CONTAINER);
            }
        }
    }

    /// Checks the object-level fields every workload kind has.
    pub(crate) fn object(&mut self, object: &Node) {
        self.fields(object, "", METADATA);
    }

    /// Checks a pod template's own fields (its metadata).
    pub(crate) fn template(&mut self, template: &Node, prefix: &str) {
        self.fields(template, prefix, METADATA);
    }

    /// Walks the mapping keys to the pod spec of a workload, reporting the first step that is
    /// missing or not a mapping: Moat cannot judge a workload it cannot find the pod spec of.
    pub(crate) fn step<'a>(&mut self, node: &'a Node, prefix: &str, key: &str) -> Option<&'a Node> {
        let name = join(prefix, &[key]);
        match node
            .as_map()
            .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(key)))
        {
            Some((_, v)) if v.as_map().is_some() => Some(v),
            Some((k, v)) => {
                self.0.push((
                    k.pos,
                    format!(
                        "`{name}` is {}, expected a mapping: the object cannot be checked",
                        v.describe()
                    ),
                ));
                None
            }
            None => {
                self.0.push((
                    node.pos,
                    format!("`{name}` is missing: the object cannot be checked"),
                ));
                None
            }
        }
    }
}

fn join(prefix: &str, keys: &[&str]) -> String {
    let mut out = prefix.to_string();
    for k in keys {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(k);
    }
    out
}
