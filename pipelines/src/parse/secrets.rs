//! Secrets: the top-level `secrets:` declarations (sealed values, `deploy_only`) and the
//! stage-level grants that must name them. It must not decide who may read a secret at run
//! time (the coordinator's claims do); only that the file is consistent.

use super::*;

impl Checker<'_> {
    pub(super) fn secret_decls(&mut self, node: &Node) -> Vec<SecretDecl> {
        let Some(map) = node.as_map() else {
            self.expected(node, "a mapping of secret names");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (k, v) in map {
            let Some(name) = k.as_str() else {
                self.err(
                    k.pos,
                    format!("expected a secret name, found {}", k.describe()),
                );
                continue;
            };
            let name_ok = self.var_name(name, k.pos, "secret");
            let mut decl = SecretDecl {
                name: name.to_string(),
                source: SecretSource::Store,
                deploy_only: false,
            };
            match &v.kind {
                NodeKind::Null => {}
                NodeKind::Map(_) => {
                    let place = format!("in secret \"{name}\"");
                    if let Some(f) = self.fields(v, SECRET_KEYS, &place) {
                        if let Some(sealed) = f.get("sealed").and_then(|n| self.sealed(n, name)) {
                            decl.source = sealed;
                        }
                        if let Some(d) = f.get("deploy_only") {
                            decl.deploy_only = self.boolean(d).unwrap_or(false);
                        }
                    }
                }
                NodeKind::Scalar { .. } => self.err(
                    v.pos,
                    format!(
                        "secret \"{name}\" must be {{}} or {{ sealed: \"moat:v1:...\" }}; a \
                         plaintext value does not belong in the file"
                    ),
                ),
                NodeKind::Seq(_) => self.expected(v, "a mapping"),
            }
            if name_ok {
                out.push(decl);
            }
        }
        out
    }

    /// A `moat seal` value; anything else would be a plaintext secret or a typo.
    pub(super) fn sealed(&mut self, node: &Node, name: &str) -> Option<SecretSource> {
        let text = self.string(node)?;
        match text.strip_prefix("moat:v1:") {
            Some(rest) if !rest.is_empty() => Some(SecretSource::Sealed(text)),
            _ => {
                self.err(
                    node.pos,
                    format!(
                        "sealed value of secret \"{name}\" must start with \"moat:v1:\"; make it \
                         with moat seal"
                    ),
                );
                None
            }
        }
    }
}

impl Checker<'_> {
    pub(super) fn granted_secrets(
        &mut self,
        node: &Node,
        label: &str,
        kind: Option<StageKind>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let mut granted = HashSet::new();
        let declared = quoted_list(
            &self
                .secrets
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
        );
        for (name, pos) in self.string_list(node).unwrap_or_default() {
            match self.secret_index.get(&name).map(|&i| &self.secrets[i]) {
                None => {
                    let msg = if self.secrets.is_empty() {
                        format!(
                            "{label} is granted secret \"{name}\", which is not declared; this \
                             file declares no secrets"
                        )
                    } else {
                        format!(
                            "{label} is granted secret \"{name}\", which is not declared; \
                             declared: {declared}"
                        )
                    };
                    self.err(pos, msg);
                }
                Some((_, deploy_only)) => {
                    if *deploy_only && kind.is_some_and(|k| k != StageKind::Deploy) {
                        let kind = kind.map(StageKind::as_str).unwrap_or_default();
                        self.err(
                            pos,
                            format!(
                                "secret \"{name}\" is deploy_only and {label} is of kind {kind}"
                            ),
                        );
                    }
                    if granted.insert(name.clone()) {
                        out.push(name);
                    } else {
                        self.err(pos, format!("secret \"{name}\" is granted twice"));
                    }
                }
            }
        }
        out
    }
}
