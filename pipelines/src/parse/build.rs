//! A stage's `build:` block: context, Dockerfile, tag, args, target, push and labels.

use super::*;

impl Checker<'_> {
    pub(super) fn build(
        &mut self,
        node: &Node,
        label: &str,
        known: &[String],
    ) -> Option<BuildSpec> {
        let f = self.fields(node, BUILD_KEYS, &format!("in the build block of {label}"))?;
        let mut spec = BuildSpec {
            context: ".".to_string(),
            dockerfile: "Dockerfile".to_string(),
            tag: None,
            args: Vec::new(),
            target: None,
            push: false,
            labels: Vec::new(),
        };
        let mut ok = true;
        if let Some(v) = f.get("context") {
            match self.workspace_path(v, "context") {
                Some(c) => spec.context = c,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("dockerfile") {
            match self.workspace_path(v, "dockerfile") {
                Some(d) => spec.dockerfile = d,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("tag") {
            match self.text(v, "tag") {
                Some(tag) => {
                    self.references(v, &tag, known);
                    self.reference_grammar(v, &tag, "build tag");
                    spec.tag = Some(tag);
                }
                None => ok = false,
            }
        }
        if let Some(v) = f.get("args") {
            spec.args = self.variables(v, "build arg", false);
            if let Some(map) = v.as_map() {
                for (_, value) in map {
                    if let Some(s) = value.as_str() {
                        self.references(value, s, known);
                    }
                }
            }
        }
        if let Some(v) = f.get("target") {
            spec.target = self.text(v, "target");
            ok &= spec.target.is_some();
        }
        if let Some(v) = f.get("push") {
            match self.boolean(v) {
                Some(b) => spec.push = b,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("labels") {
            let Some(map) = v.as_map() else {
                self.expected(v, "a mapping of label names to values");
                return None;
            };
            for (k, val) in map {
                match (k.as_str(), val.as_str()) {
                    (Some(k), Some(val)) if !k.is_empty() => {
                        spec.labels.push((k.to_string(), val.to_string()));
                    }
                    (Some(_), Some(_)) => self.err(k.pos, "label name must not be empty"),
                    (None, _) => self.expected(k, "a label name"),
                    (_, None) => self.expected(val, "a string"),
                }
            }
        }
        ok.then_some(spec)
    }
}
