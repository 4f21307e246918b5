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
            } else if h.interval * (h.successes - 1) >= h.deadline {
                // The last of the tries in a row must start before the deadline. Only
                // reachable with `successes` written: the default is one.
                ok = false;
                let pos = f.get("successes").map_or(f.pos(), |v| v.pos);
                self.err(
                    pos,
                    format!(
                        "health check needs {} successes {} apart, which cannot finish within \
                         its deadline ({})",
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
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline whose one stage deploys with `block` (flow-mapping entries) added to a
    /// docker target; line 5 holds the block, so every error is on line 5.
    fn deploy(block: &str) -> Result<DeploySpec, Vec<String>> {
        let src = format!(
            "version: 1\nstages:\n  - name: ship\n    kind: deploy\n    deploy: {{ target: \
             docker, image: app, port: 8080{}{block} }}\n",
            if block.is_empty() { "" } else { ", " }
        );
        match parse(src.as_bytes(), &Policy::default()) {
            Ok(p) => Ok(p.stages[0].deploy.clone().unwrap()),
            Err(d) => Err(d
                .iter()
                .map(|d| format!("{}: {}", d.pos, d.message))
                .collect()),
        }
    }

    fn errors(block: &str) -> Vec<String> {
        deploy(block).expect_err(block)
    }

    /// The column where `needle` starts on line 5 of [`deploy`]'s file.
    fn col(block: &str, needle: &str) -> usize {
        "    deploy: { target: docker, image: app, port: 8080, ".len()
            + block.find(needle).unwrap()
            + 1
    }

    fn one_error(block: &str, at: &str, message: &str) {
        assert_eq!(
            errors(block),
            [format!("5:{}: {message}", col(block, at))],
            "{block}"
        );
    }

    #[test]
    fn defaults() {
        let d = deploy("").unwrap();
        assert_eq!(d.health, HealthCheck::default());
        assert_eq!(d.health.path, "/");
        assert_eq!(d.health.status, None);
        assert_eq!(d.health.interval, Duration::from_secs(2));
        assert_eq!(d.health.timeout, Duration::from_secs(2));
        assert_eq!(d.health.successes, 1);
        assert_eq!(d.health.deadline, Duration::from_secs(60));
        assert_eq!(d.observe, Duration::from_secs(30));
        assert_eq!(d.drain, Duration::from_secs(30));
        assert_eq!(d.probe, None);
        // An empty health block and an empty probe take every default too.
        let d = deploy("health: {}, probe: {}").unwrap();
        assert_eq!(d.health, HealthCheck::default());
        assert_eq!(
            d.probe,
            Some(ProbeSpec {
                paths: vec!["/".to_string()],
                fail_on: Severity::High
            })
        );
    }

    #[test]
    fn every_key() {
        let d = deploy(
            "health: { path: /healthz, status: 200, interval: 1s, timeout: 2s, successes: 2, \
             deadline: 60s }, observe: 2m, drain: 45s, probe: { paths: [\"/\", \
             \"/search?q=x\"], fail_on: critical }",
        )
        .unwrap();
        assert_eq!(
            d.health,
            HealthCheck {
                path: "/healthz".to_string(),
                timeout: Duration::from_secs(2),
                interval: Duration::from_secs(1),
                status: Some(200),
                successes: 2,
                deadline: Duration::from_secs(60),
            }
        );
        assert_eq!(d.observe, Duration::from_secs(120));
        assert_eq!(d.drain, Duration::from_secs(45));
        let probe = d.probe.unwrap();
        assert_eq!(probe.paths, ["/", "/search?q=x"]);
        assert_eq!(probe.fail_on, Severity::Critical);
        // The bounds themselves are accepted.
        let d = deploy(
            "health: { status: 599, successes: 100, interval: 1s, timeout: 24h, deadline: 24h }, \
             observe: 24h, drain: 1ms",
        )
        .unwrap();
        assert_eq!(d.health.status, Some(599));
        assert_eq!(d.health.timeout, d.health.deadline);
        assert!(deploy("health: { status: 100 }").is_ok());
        assert!(deploy(&format!("health: {{ path: /{} }}", "a".repeat(1023))).is_ok());
    }

    #[test]
    fn health_path_errors() {
        let b = "health: { path: healthz }";
        one_error(
            b,
            "healthz",
            "health check path \"healthz\" must start with \"/\"",
        );
        let b = "health: { path: \"/a b\" }";
        one_error(
            b,
            "\"/a b\"",
            "health check path \"/a b\" may only contain printable ASCII characters without \
             spaces; percent-encode the others",
        );
        let b = "health: { path: \"/a\\tb\" }";
        one_error(
            b,
            "\"/a",
            "health check path \"/a\\tb\" may only contain printable ASCII characters without \
             spaces; percent-encode the others",
        );
        let b = "health: { path: /caf\u{e9} }";
        one_error(
            b,
            "/caf",
            "health check path \"/caf\\u{e9}\" may only contain printable ASCII characters \
             without spaces; percent-encode the others",
        );
        let b = format!("health: {{ path: /{} }}", "a".repeat(1024));
        one_error(
            &b,
            "/a",
            "health check path \"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is longer than 1024 bytes",
        );
        let b = "health: { path: [/] }";
        one_error(b, "[/]", "expected a string, found a list");
    }

    #[test]
    fn health_number_errors() {
        let b = "health: { status: 99 }";
        one_error(
            b,
            "99",
            "health check status must be between 100 and 599, found 99",
        );
        let b = "health: { status: 600 }";
        one_error(
            b,
            "600",
            "health check status must be between 100 and 599, found 600",
        );
        let b = "health: { status: ok }";
        one_error(b, "ok", "expected an integer, found a string");
        let b = "health: { successes: 0 }";
        one_error(
            b,
            "0",
            "health check successes must be between 1 and 100, found 0",
        );
        let b = "health: { successes: 101 }";
        one_error(
            b,
            "101",
            "health check successes must be between 1 and 100, found 101",
        );
    }

    #[test]
    fn health_duration_errors() {
        let b = "health: { interval: 0s }";
        one_error(b, "0s", "duration \"0s\" must be greater than zero");
        let b = "health: { timeout: 2 }";
        one_error(
            b,
            "2 ",
            "missing unit in duration \"2\"; use whole numbers with ms, s, m or h, like 500ms, \
             90s, 20m or 1h30m",
        );
        let b = "health: { deadline: 25h }";
        one_error(
            b,
            "25h",
            "health check deadline must be at most 24h, found 25h",
        );
        // The pair is reported at the shorter value when it was written...
        let b = "health: { timeout: 90s }";
        one_error(
            b,
            "90s",
            "health check timeout (90s) must not be longer than its deadline (1m)",
        );
        let b = "health: { interval: 2m, deadline: 1m }";
        one_error(
            b,
            "2m",
            "health check interval (2m) must not be longer than its deadline (1m)",
        );
        // ... else at the deadline (messages at one position sort by their text).
        let b = "health: { deadline: 1s }";
        assert_eq!(
            errors(b),
            [
                format!(
                    "5:{}: health check interval (2s) must not be longer than its deadline (1s)",
                    col(b, "1s")
                ),
                format!(
                    "5:{}: health check timeout (2s) must not be longer than its deadline (1s)",
                    col(b, "1s")
                ),
            ]
        );
        let b = "health: { successes: 31 }";
        one_error(
            b,
            "31",
            "health check needs 31 successes 2s apart, which cannot finish within its deadline (1m)",
        );
        // 30 tries 2s apart: the last one starts at 58s, inside the minute; the 31st would
        // start at the deadline itself.
        assert!(deploy("health: { successes: 30 }").is_ok());
        let b = "health: { retries: 3 }";
        one_error(
            b,
            "retries",
            "unknown key \"retries\" in the health check of stage \"ship\"",
        );
    }

    #[test]
    fn observe_and_drain_errors() {
        let b = "observe: 25h";
        one_error(b, "25h", "observe must be at most 24h, found 25h");
        let b = "drain: 1441m";
        one_error(b, "1441m", "drain must be at most 24h, found 1441m");
        let b = "drain: 0ms";
        one_error(b, "0ms", "duration \"0ms\" must be greater than zero");
        let b = "observe: soon";
        one_error(
            b,
            "soon",
            "invalid duration \"soon\"; use whole numbers with ms, s, m or h, like 500ms, 90s, \
             20m or 1h30m",
        );
    }

    #[test]
    fn probe_errors() {
        let b = "probe: { paths: [/, search] }";
        one_error(b, "search", "probe path \"search\" must start with \"/\"");
        let b = "probe: { paths: [/a, /b, /a] }";
        one_error(b, "/a]", "duplicate probe path \"/a\"");
        let b = "probe: { paths: [] }";
        one_error(b, "[]", "empty list; leave out \"paths\" to probe \"/\"");
        let b = "probe: { paths: /x }";
        one_error(b, "/x", "expected a list of paths, found a string");
        let many: Vec<String> = (0..101).map(|i| format!("/{i}")).collect();
        let b = format!("probe: {{ paths: [{}] }}", many.join(", "));
        one_error(
            &b,
            "[",
            "the probe lists 101 paths; at most 100 are allowed",
        );
        let b = "probe: { fail_on: severe }";
        one_error(
            b,
            "severe",
            "unknown severity \"severe\"; expected critical, high, medium or low",
        );
        let b = "probe: { path: / }";
        one_error(
            b,
            "path",
            "unknown key \"path\" in the probe of stage \"ship\"; did you mean \"paths\"?",
        );
        let b = "probe: yes";
        one_error(b, "yes", "expected a mapping, found a string");
    }
}
