//! A stage's `deploy:` block (target, environment, strategy, rollback) and its health check.

use super::*;

impl Checker<'_> {
    pub(super) fn deploy(
        &mut self,
        node: &Node,
        label: &str,
        known: &[String],
    ) -> Option<DeploySpec> {
        let f = self.fields(
            node,
            DEPLOY_KEYS,
            &format!("in the deploy block of {label}"),
        )?;
        let block = format!("the deploy block of {label}");
        let target = match f.get("target") {
            None => {
                self.err(
                    f.pos(),
                    format!("{block} needs a target (docker or kubernetes)"),
                );
                None
            }
            Some(v) => self
                .one_of(v, "deploy target", &["docker", "kubernetes"])
                .map(|t| {
                    if t == "docker" {
                        DeployTarget::Docker
                    } else {
                        DeployTarget::Kubernetes
                    }
                }),
        };
        let strategy = match f.get("strategy") {
            None => Some(Strategy::BlueGreen),
            Some(v) => self
                .one_of(v, "strategy", &["blue-green", "recreate"])
                .map(|s| {
                    if s == "blue-green" {
                        Strategy::BlueGreen
                    } else {
                        Strategy::Recreate
                    }
                }),
        };
        let image = match f.get("image") {
            None => {
                self.err(f.pos(), format!("{block} needs an image"));
                None
            }
            Some(v) => self.image(v, known),
        };
        let port = match f.get("port") {
            None => {
                if target == Some(DeployTarget::Docker) {
                    self.err(f.pos(), format!("{block} needs a port for target docker"));
                }
                Some(0)
            }
            Some(v) => match self.integer(v) {
                Some(p) if (1..=65535).contains(&p) => u16::try_from(p).ok(),
                Some(p) => {
                    self.err(
                        v.pos,
                        format!("port must be between 1 and 65535, found {p}"),
                    );
                    None
                }
                None => None,
            },
        };
        let health = match f.get("health") {
            None => Some(HealthCheck {
                path: "/".to_string(),
                timeout: Duration::from_secs(60),
                interval: Duration::from_secs(2),
            }),
            Some(v) => self.health(v, label),
        };
        let rollback = match f.get("rollback") {
            None => Some(Rollback::Auto),
            Some(v) => self.one_of(v, "rollback", &["auto", "manual"]).map(|r| {
                if r == "auto" {
                    Rollback::Auto
                } else {
                    Rollback::Manual
                }
            }),
        };
        let namespace = f.get("namespace").and_then(|v| {
            let ns = self.string(v)?;
            if target == Some(DeployTarget::Docker) {
                let k = f.key("namespace").map_or(v.pos, |k| k.pos);
                self.err(
                    k,
                    format!("{block} has a namespace but its target is docker"),
                );
                return None;
            }
            if !DNS_LABEL.is_match(&ns) {
                self.err(
                    v.pos,
                    format!(
                        "invalid namespace \"{ns}\"; use up to 63 lower-case letters, digits \
                         and \"-\""
                    ),
                );
                return None;
            }
            Some(ns)
        });
        let app = f.get("app").and_then(|v| {
            let app = self.string(v)?;
            if !DNS_LABEL.is_match(&app) {
                self.err(
                    v.pos,
                    format!(
                        "invalid app name \"{app}\"; use up to 63 lower-case letters, digits \
                         and \"-\""
                    ),
                );
                return None;
            }
            Some(app)
        });
        Some(DeploySpec {
            target: target?,
            strategy: strategy?,
            image: image?,
            port: port?,
            health: health?,
            rollback: rollback?,
            namespace,
            app,
        })
    }

    pub(super) fn health(&mut self, node: &Node, label: &str) -> Option<HealthCheck> {
        let f = self.fields(
            node,
            HEALTH_KEYS,
            &format!("in the health check of {label}"),
        )?;
        let mut h = HealthCheck {
            path: "/".to_string(),
            timeout: Duration::from_secs(60),
            interval: Duration::from_secs(2),
        };
        let mut ok = true;
        let mut timeout_ok = true;
        if let Some(v) = f.get("path") {
            match self.string(v) {
                Some(p) if p.starts_with('/') => h.path = p,
                Some(p) => {
                    ok = false;
                    self.err(
                        v.pos,
                        format!("health check path \"{p}\" must start with \"/\""),
                    );
                }
                None => ok = false,
            }
        }
        if let Some(v) = f.get("timeout") {
            match self.duration(v) {
                Some(d) => h.timeout = d,
                None => timeout_ok = false,
            }
        }
        if let Some(v) = f.get("interval") {
            match self.duration(v) {
                Some(d) if timeout_ok && d >= h.timeout => {
                    ok = false;
                    self.err(
                        v.pos,
                        "health check interval must be shorter than its timeout",
                    );
                }
                Some(d) => h.interval = d,
                None => ok = false,
            }
        }
        (ok && timeout_ok).then_some(h)
    }
}
