//! A stage's `deploy:` block (target, strategy, image, port, rollback, observe, drain) with its
//! health check and its pre-switch probe.

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
            None => Some(HealthCheck::default()),
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
        let observe = match f.get("observe") {
            None => Some(DeploySpec::DEFAULT_OBSERVE),
            Some(v) => self.wait(v, "observe"),
        };
        let drain = match f.get("drain") {
            None => Some(DeploySpec::DEFAULT_DRAIN),
            Some(v) => self.wait(v, "drain"),
        };
        let probe = match f.get("probe") {
            None => Some(None),
            Some(v) => self.probe(v, label).map(Some),
        };
        Some(DeploySpec {
            target: target?,
            strategy: strategy?,
            image: image?,
            port: port?,
            health: health?,
            rollback: rollback?,
            namespace,
            app,
            observe: observe?,
            drain: drain?,
            probe: probe?,
        })
    }

    pub(super) fn health(&mut self, node: &Node, label: &str) -> Option<HealthCheck> {
        let f = self.fields(
            node,
            HEALTH_KEYS,
            &format!("in the health check of {label}"),
        )?;
        let mut h = HealthCheck::default();
        let mut ok = true;
        if let Some(v) = f.get("path") {
            match self.request_path(v, "health check path") {
                Some(p) => h.path = p,
                None => ok = false,
            }
        }
        if let Some(v) = f.get("status") {
            match self.integer(v) {
                Some(n) if (100..=599).contains(&n) => h.status = u16::try_from(n).ok(),
                Some(n) => {
                    ok = false;
                    self.err(
                        v.pos,
                        format!("health check status must be between 100 and 599, found {n}"),
                    );
                }
                None => ok = false,
            }
        }
        if let Some(v) = f.get("successes") {
            let max = HealthCheck::MAX_SUCCESSES;
            match self.integer(v) {
                Some(n) if (1..=i64::from(max)).contains(&n) => {
                    h.successes = u32::try_from(n).unwrap_or(max);
                }
                Some(n) => {
                    ok = false;
                    self.err(
                        v.pos,
                        format!("health check successes must be between 1 and {max}, found {n}"),
                    );
                }
                None => ok = false,
            }
        }
        // The durations; the checks between them only run on the ones that were read.
        let read = |c: &mut Self, key: &str, slot: &mut Duration| match f.get(key) {
            None => true,
            Some(v) => match c.duration(v) {
                Some(d) => {
                    *slot = d;
                    true
                }
                None => false,
            },
        };
        let interval_ok = read(self, "interval", &mut h.interval);
        let timeout_ok = read(self, "timeout", &mut h.timeout);
        let mut deadline_ok = read(self, "deadline", &mut h.deadline);
        if deadline_ok && h.deadline > MAX_DEPLOY_WAIT {
            deadline_ok = false;
            if let Some(v) = f.get("deadline") {
                self.err(
                    v.pos,
                    format!(
                        "health check deadline must be at most {}, found {}",
                        show(MAX_DEPLOY_WAIT),
                        show(h.deadline)
                    ),
                );
            }
        }
        ok &= interval_ok && timeout_ok && deadline_ok;
        // Reported at the shorter value when it was written, else at the deadline.
        let at = |key: &str| f.get(key).or_else(|| f.get("deadline")).map(|v| v.pos);
        if timeout_ok && deadline_ok && h.timeout > h.deadline {
            ok = false;
            let pos = at("timeout").unwrap_or(f.pos());
            self.err(
                pos,
                format!(
                    "health check timeout ({}) must not be longer than its deadline ({})",
                    show(h.timeout),
                    show(h.deadline)
                ),
            );
        }
        if interval_ok && deadline_ok {
            if h.interval > h.deadline {
                ok = false;
                let pos = at("interval").unwrap_or(f.pos());
                self.err(
                    pos,
                    format!(
                        "health check interval ({}) must not be longer than its deadline ({})",
                        show(h.interval),
                        show(h.deadline)
                    ),
                );
            } else if h.interval * (h.successes - 1) > h.deadline {
                // Only reachable with `successes` written: the default is one.
                ok = false;
                let pos = f.get("successes").map_or(f.pos(), |v| v.pos);
                self.err(
                    pos,
                    format!(
                        "health check needs {} successes {} apart, which takes longer than its \
                         deadline ({})",
                        h.successes,
                        show(h.interval),
                        show(h.deadline)
                    ),
                );
            }
        }
        ok.then_some(h)
    }

    /// `probe:` — the paths probed before the switch and the severity that stops the release.
    fn probe(&mut self, node: &Node, label: &str) -> Option<ProbeSpec> {
        let f = self.fields(node, PROBE_KEYS, &format!("in the probe of {label}"))?;
        let mut ok = true;
        let mut paths: Vec<String> = Vec::new();
        match f.get("paths") {
            None => paths.push(HealthCheck::DEFAULT_PATH.to_string()),
            Some(v) => match v.as_seq() {
                None => {
                    ok = false;
                    self.expected(v, "a list of paths");
                }
                Some([]) => {
                    ok = false;
                    self.err(v.pos, "empty list; leave out \"paths\" to probe \"/\"");
                }
                Some(items) if items.len() > ProbeSpec::MAX_PATHS => {
                    ok = false;
                    self.err(
                        v.pos,
                        format!(
                            "the probe lists {} paths; at most {} are allowed",
                            items.len(),
                            ProbeSpec::MAX_PATHS
                        ),
                    );
                }
                Some(items) => {
                    for item in items {
                        match self.request_path(item, "probe path") {
                            Some(p) if paths.contains(&p) => {
                                ok = false;
                                self.err(
                                    item.pos,
                                    format!("duplicate probe path {}", crate::reference::quote(&p)),
                                );
                            }
                            Some(p) => paths.push(p),
                            None => ok = false,
                        }
                    }
                }
            },
        }
        let fail_on = match f.get("fail_on") {
            None => Some(Severity::High),
            Some(v) => self
                .one_of(v, "severity", SEVERITIES)
                .and_then(Severity::parse),
        };
        match (ok, fail_on) {
            (true, Some(fail_on)) => Some(ProbeSpec { paths, fail_on }),
            _ => None,
        }
    }

    /// `observe:` or `drain:`: a positive duration of at most a day.
    fn wait(&mut self, node: &Node, key: &str) -> Option<Duration> {
        let d = self.duration(node)?;
        if d > MAX_DEPLOY_WAIT {
            self.err(
                node.pos,
                format!(
                    "{key} must be at most {}, found {}",
                    show(MAX_DEPLOY_WAIT),
                    show(d)
                ),
            );
            return None;
        }
        Some(d)
    }

    /// The target of an HTTP request to the release: starts with `/`, printable ASCII
    /// without spaces, at most [`HealthCheck::MAX_PATH`] bytes.
    fn request_path(&mut self, node: &Node, what: &str) -> Option<String> {
        let p = self.string(node)?;
        let max = HealthCheck::MAX_PATH;
        let problem = if p.len() > max {
            format!("is longer than {max} bytes")
        } else if !p.starts_with('/') {
            "must start with \"/\"".to_string()
        } else if !p.bytes().all(|b| b.is_ascii_graphic()) {
            "may only contain printable ASCII characters without spaces; percent-encode the \
             others"
                .to_string()
        } else {
            return Some(p);
        };
        self.err(
            node.pos,
            format!("{what} {} {problem}", crate::reference::quote(&p)),
        );
        None
    }
}

/// A duration the way the file writes one: `500ms`, `90s`, `2m`, `1h`.
fn show(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}
