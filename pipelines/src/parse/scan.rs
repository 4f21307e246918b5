//! A stage's `scan:` block: image, `fail_on` severity, manifests, dependencies and ignores
//! (each with a reason and an expiry date).

use super::*;

impl Checker<'_> {
    pub(super) fn scan(&mut self, node: &Node, label: &str, known: &[String]) -> Option<ScanSpec> {
        let f = self.fields(node, SCAN_KEYS, &format!("in the scan block of {label}"))?;
        let image = f.get("image").and_then(|v| self.image(v, known));
        let fail_on = match f.get("fail_on") {
            None => Severity::High,
            Some(v) => self
                .one_of(v, "severity", SEVERITIES)
                .and_then(Severity::parse)
                .unwrap_or(Severity::High),
        };
        let manifests = f
            .get("manifests")
            .and_then(|v| self.workspace_path(v, "manifests"));
        let dependencies = f
            .get("dependencies")
            .and_then(|v| self.boolean(v))
            .unwrap_or(false);
        let only_fixed = f
            .get("only_fixed")
            .and_then(|v| self.boolean(v))
            .unwrap_or(false);
        let mut ignore = Vec::new();
        if let Some(v) = f.get("ignore") {
            match v.as_seq() {
                None => self.expected(v, "a list of ignore rules"),
                Some(items) => {
                    for item in items {
                        if let Some(rule) = self.ignore_rule(item, label) {
                            ignore.push(rule);
                        }
                    }
                }
            }
        }
        if f.key("image").is_none() && f.key("manifests").is_none() && !dependencies {
            self.err(
                f.pos(),
                format!(
                    "the scan block of {label} has nothing to scan; give image, manifests or \
                     dependencies: true"
                ),
            );
        }
        Some(ScanSpec {
            image,
            fail_on,
            manifests,
            dependencies,
            only_fixed,
            ignore,
        })
    }

    pub(super) fn ignore_rule(&mut self, node: &Node, label: &str) -> Option<IgnoreRule> {
        let f = self.fields(node, IGNORE_KEYS, &format!("in an ignore rule of {label}"))?;
        let id = match f.get("id") {
            None => {
                self.err(f.pos(), format!("an ignore rule of {label} has no id"));
                None
            }
            Some(v) => self.text(v, "id"),
        };
        let rule = match &id {
            Some(id) => format!("ignore rule \"{id}\""),
            None => "the ignore rule".to_string(),
        };
        let reason = match f.get("reason") {
            Some(v) if v.as_str().is_some_and(|s| s.trim().is_empty()) || v.is_null() => {
                self.err(v.pos, format!("{rule} needs a reason"));
                None
            }
            Some(v) => self.string(v),
            None => {
                self.err(f.pos(), format!("{rule} needs a reason"));
                None
            }
        };
        let expires = match f.get("expires") {
            None => {
                self.err(
                    f.pos(),
                    format!("{rule} needs an expiry date (expires: YYYY-MM-DD)"),
                );
                None
            }
            Some(v) => {
                let s = self.string(v)?;
                let d = parse_date(&s);
                if d.is_none() {
                    self.err(
                        v.pos,
                        format!("invalid date \"{s}\"; expected a real date as YYYY-MM-DD"),
                    );
                }
                d
            }
        };
        Some(IgnoreRule {
            id: id?,
            reason: reason?,
            expires: expires?,
            pos: node.pos,
        })
    }
}
