//! The `on:` section: which events (push, pull_request, tag, manual) run the pipeline, and
//! their branch and tag patterns. It must not look at stages.

use super::*;

impl Checker<'_> {
    pub(super) fn triggers(&mut self, node: &Node) -> Triggers {
        let mut t = Triggers::default();
        let Some(f) = self.fields(node, ON_KEYS, "in \"on\"") else {
            return t;
        };
        if let Some(v) = f.get("push") {
            t.push = self.trigger(v, "push", "branches", "any branch");
        }
        if let Some(v) = f.get("pull_request") {
            t.pull_request = self.trigger(v, "pull_request", "branches", "any branch");
        }
        if let Some(v) = f.get("tag") {
            t.tag = self.trigger(v, "tag", "pattern", "any tag");
        }
        if let Some(v) = f.get("manual") {
            t.manual = self.boolean(v).unwrap_or(false);
        }
        t
    }

    /// One event of `on:`: `true`, `{}` or null for "always", `false` for "never", or a
    /// mapping with the patterns under `key`.
    pub(super) fn trigger(
        &mut self,
        node: &Node,
        event: &str,
        key: &str,
        all: &str,
    ) -> Option<Vec<Pattern>> {
        match &node.kind {
            NodeKind::Null => return Some(Vec::new()),
            NodeKind::Map(_) => {}
            _ => match node.as_bool() {
                Some(true) => return Some(Vec::new()),
                Some(false) => return None,
                None => {
                    self.expected(node, &format!("a mapping like {{ {key}: [...] }}, or true"));
                    return None;
                }
            },
        }
        let f = self.fields(node, &[key], &format!("in \"on.{event}\""))?;
        match f.get(key) {
            None => Some(Vec::new()),
            Some(v) => self.patterns(v, key, all),
        }
    }
}
