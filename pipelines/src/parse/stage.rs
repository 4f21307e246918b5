//! One stage: its keys, kind-specific rules, `when:`, resources and services. The kind's own
//! block is read by `build`, `scan` and `deploy`; relations between stages by `graph`.

use super::*;

impl Checker<'_> {
    pub(super) fn stages(&mut self, node: &Node) -> Vec<Stage> {
        let Some(items) = node.as_seq() else {
            self.expected(node, "a list of stages");
            return Vec::new();
        };
        if items.is_empty() {
            self.err(node.pos, "no stages; a pipeline needs at least one stage");
            return Vec::new();
        }
        let mut infos: Vec<StageInfo> = items
            .iter()
            .enumerate()
            .map(|(i, item)| self.stage(item, i))
            .collect();
        self.cross_stage(&infos);
        infos.iter_mut().filter_map(|i| i.stage.take()).collect()
    }

    pub(super) fn stage(&mut self, node: &Node, index: usize) -> StageInfo {
        let mut info = StageInfo {
            name: None,
            pos: node.pos,
            needs: None,
            services: Vec::new(),
            stage: None,
        };
        let label = match node.get("name").and_then(Node::as_str) {
            Some(n) => format!("stage \"{n}\""),
            None => format!("stage {}", index + 1),
        };
        let Some(f) = self.fields(node, STAGE_KEYS, &format!("in {label}")) else {
            return info;
        };

        match f.get("name") {
            None => self.err(f.pos(), format!("{label} has no name")),
            Some(v) => {
                if let Some(name) = self.string(v) {
                    if STAGE_NAME.is_match(&name) {
                        info.name = Some((name, v.pos));
                    } else {
                        self.err(
                            v.pos,
                            format!(
                                "invalid stage name \"{name}\"; use up to 63 letters, digits, \
                                 \".\", \"_\" or \"-\", starting with a letter or digit"
                            ),
                        );
                    }
                }
            }
        }
        let kind = match f.get("kind") {
            None => {
                self.err(
                    f.pos(),
                    format!("{label} has no kind; expected {}", or_list(KINDS)),
                );
                None
            }
            Some(v) => self.one_of(v, "kind", KINDS).map(|k| match k {
                "test" => StageKind::Test,
                "build" => StageKind::Build,
                "scan" => StageKind::Scan,
                _ => StageKind::Deploy,
            }),
        };

        let env = match f.get("env") {
            None => Vec::new(),
            Some(v) => self.variables(v, "env", true),
        };
        let mut known: Vec<String> = self.top_env.clone();
        known.extend(env.iter().map(|(k, _)| k.clone()));

        let image = f.get("image").and_then(|v| self.image(v, &known));
        let commands = match f.get("commands") {
            None => Vec::new(),
            Some(v) => self
                .string_or_list(v)
                .unwrap_or_default()
                .into_iter()
                .map(|(s, _)| s)
                .collect(),
        };
        if let (Some(key), Some(v)) = (f.key("needs"), f.get("needs")) {
            let names = self.string_list(v).unwrap_or_default();
            info.needs = Some((key.pos, names));
        }
        let when = f.get("when").map(|v| self.when(v, &label)).unwrap_or(None);
        let timeout = f.get("timeout").and_then(|v| self.duration(v));
        let no_output_timeout = f.get("no_output_timeout").and_then(|v| self.duration(v));
        let resources = f
            .get("resources")
            .map(|v| self.resources(v, &label))
            .unwrap_or_default();
        let services = match f.get("services") {
            None => Vec::new(),
            Some(v) => self.services(v, &label, &known, &mut info.services),
        };
        let secrets = match f.get("secrets") {
            None => Vec::new(),
            Some(v) => self.granted_secrets(v, &label, kind),
        };
        let environment = f.get("environment").and_then(|v| {
            let name = self.string(v)?;
            if STAGE_NAME.is_match(&name) {
                Some(name)
            } else {
                self.err(
                    v.pos,
                    format!(
                        "invalid environment name \"{name}\"; use up to 63 letters, digits, \
                         \".\", \"_\" or \"-\", starting with a letter or digit"
                    ),
                );
                None
            }
        });
        let approval = f
            .get("approval")
            .and_then(|v| self.one_of(v, "approval", &["required", "none"]))
            .map_or(Approval::None, |a| {
                if a == "required" {
                    Approval::Required
                } else {
                    Approval::None
                }
            });
        let mut privileged = false;
        if let Some(v) = f.get("privileged") {
            privileged = self.boolean(v).unwrap_or(false);
            if let (true, Err(e)) = (privileged, lint::check_privileged(self.policy)) {
                self.err(v.pos, e);
            }
        }
        let mut mounts = Vec::new();
        if let Some(v) = f.get("volumes") {
            for (spec, pos) in self.string_list(v).unwrap_or_default() {
                match lint::check_volume(&spec, self.policy) {
                    Ok(vol) => mounts.push(Mount {
                        source: vol.source,
                        target: vol.target,
                        read_only: vol.read_only,
                    }),
                    Err(e) => self.err(pos, e),
                }
            }
        }
        let build = f.get("build").and_then(|v| self.build(v, &label, &known));
        let scan = f.get("scan").and_then(|v| self.scan(v, &label, &known));
        let deploy = f.get("deploy").and_then(|v| self.deploy(v, &label, &known));

        if let Some(kind) = kind {
            self.kind_rules(&f, &label, kind);
        }

        if let (Some((name, _)), Some(kind)) = (&info.name, kind) {
            info.stage = Some(Stage {
                name: name.clone(),
                pos: node.pos,
                kind,
                image,
                commands,
                needs: info
                    .needs
                    .as_ref()
                    .map(|(_, n)| n.iter().map(|(s, _)| s.clone()).collect()),
                when,
                env,
                timeout,
                no_output_timeout,
                resources,
                services,
                secrets,
                environment,
                approval,
                privileged,
                mounts,
                build,
                scan,
                deploy,
                spans: stage_spans(&f),
            });
        }
        info
    }

    /// What a stage of each kind must have and must not have.
    pub(super) fn kind_rules(&mut self, f: &Fields<'_>, label: &str, kind: StageKind) {
        let own_block = match kind {
            StageKind::Test => None,
            StageKind::Build => Some("build"),
            StageKind::Scan => Some("scan"),
            StageKind::Deploy => Some("deploy"),
        };
        for block in ["build", "scan", "deploy"] {
            if let Some(k) = f.key(block).filter(|_| Some(block) != own_block) {
                self.err(
                    k.pos,
                    format!("{label} has a {block} block but its kind is {kind}"),
                );
            }
        }
        match own_block {
            None => {
                if f.key("image").is_none() {
                    self.err(f.pos(), format!("{label} of kind test needs an image"));
                }
            }
            Some(block) => {
                if f.key(block).is_none() {
                    self.err(
                        f.pos(),
                        format!("{label} of kind {kind} needs a {block} block"),
                    );
                }
                for key in ["image", "commands", "services"] {
                    if let Some(k) = f.key(key) {
                        self.err(
                            k.pos,
                            format!(
                                "{label} of kind {kind} takes no {key}; its {block} block says \
                                 what to do"
                            ),
                        );
                    }
                }
            }
        }
        if kind != StageKind::Deploy {
            if let Some(k) = f.key("environment") {
                self.err(
                    k.pos,
                    format!("{label} has an environment but its kind is {kind}"),
                );
            }
            if let Some(k) = f.key("approval") {
                self.err(
                    k.pos,
                    format!("{label} has an approval setting but its kind is {kind}"),
                );
            }
        }
    }

    pub(super) fn when(&mut self, node: &Node, label: &str) -> Option<When> {
        let f = self.fields(node, WHEN_KEYS, &format!("in \"when\" of {label}"))?;
        let mut when = When::default();
        if let Some(v) = f.get("branch") {
            when.branch = self.patterns(v, "branch", "any branch").unwrap_or_default();
        }
        if let Some(v) = f.get("tag") {
            when.tag = self.patterns(v, "tag", "any tag").unwrap_or_default();
        }
        if let Some(v) = f.get("event") {
            let items = self.string_or_list(v).unwrap_or_default();
            if items.is_empty() && v.as_seq().is_some() {
                self.err(v.pos, "empty list; leave out \"event\" to match any event");
            }
            for (s, pos) in items {
                match EventKind::parse(&s) {
                    Some(e) if !when.event.contains(&e) => when.event.push(e),
                    Some(_) => {}
                    None => self.err(
                        pos,
                        format!("unknown event \"{s}\"; expected {}", or_list(EVENTS)),
                    ),
                }
            }
        }
        Some(when)
    }

    pub(super) fn resources(&mut self, node: &Node, label: &str) -> Resources {
        let mut r = Resources::default();
        let Some(f) = self.fields(node, RESOURCE_KEYS, &format!("in the resources of {label}"))
        else {
            return r;
        };
        if let Some(v) = f.get("cpus") {
            match v.as_plain().and_then(|s| s.parse::<f64>().ok()) {
                Some(c) if c.is_finite() && c > 0.0 && c <= MAX_CPUS => r.cpus = Some(c),
                Some(_) => self.err(
                    v.pos,
                    format!(
                        "cpus must be more than 0 and at most 256, found {}",
                        v.as_str().unwrap_or_default()
                    ),
                ),
                None => self.expected(v, "a number of CPUs"),
            }
        }
        if let Some(v) = f.get("memory") {
            match self.string(v).map(|s| (parse_size(&s), s)) {
                Some((Ok(bytes), s)) if bytes < MIN_MEMORY => self.err(
                    v.pos,
                    format!("memory \"{s}\" is too small; Docker's minimum is 6m"),
                ),
                Some((Ok(bytes), _)) => r.memory = Some(bytes),
                Some((Err(e), _)) => self.err(v.pos, e),
                None => {}
            }
        }
        if let Some(v) = f.get("pids") {
            match self.integer(v) {
                Some(n) if n >= MIN_PIDS => r.pids = u64::try_from(n).ok(),
                Some(n) => self.err(
                    v.pos,
                    format!("pids must be at least {MIN_PIDS}, found {n}"),
                ),
                None => {}
            }
        }
        r
    }

    pub(super) fn services(
        &mut self,
        node: &Node,
        label: &str,
        known: &[String],
        names: &mut Vec<(String, Pos)>,
    ) -> Vec<Service> {
        let Some(items) = node.as_seq() else {
            self.expected(node, "a list of services");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, Pos> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let slabel = match item.get("name").and_then(Node::as_str) {
                Some(n) => format!("service \"{n}\" of {label}"),
                None => format!("service {} of {label}", i + 1),
            };
            let Some(f) = self.fields(item, SERVICE_KEYS, &format!("in {slabel}")) else {
                continue;
            };
            let name = match f.get("name") {
                None => {
                    self.err(f.pos(), format!("{slabel} has no name"));
                    None
                }
                Some(v) => self.string(v).and_then(|n| {
                    if !DNS_LABEL.is_match(&n) {
                        self.err(
                            v.pos,
                            format!(
                                "invalid service name \"{n}\"; use up to 63 lower-case letters, \
                                 digits and \"-\" (a DNS label)"
                            ),
                        );
                        return None;
                    }
                    if let Some(first) = seen.get(&n) {
                        self.err(
                            v.pos,
                            format!(
                                "duplicate service name \"{n}\" in {label} (first at line {})",
                                first.line
                            ),
                        );
                        return None;
                    }
                    seen.insert(n.clone(), v.pos);
                    names.push((n.clone(), v.pos));
                    Some(n)
                }),
            };
            let image = match f.get("image") {
                None => {
                    self.err(f.pos(), format!("{slabel} needs an image"));
                    None
                }
                Some(v) => self.image(v, known),
            };
            let env = f
                .get("env")
                .map(|v| self.variables(v, "env", true))
                .unwrap_or_default();
            let command = match f.get("command") {
                None => Vec::new(),
                Some(v) if v.as_str().is_some() => {
                    match split_words(v.as_str().unwrap_or_default()) {
                        Ok(words) if words.is_empty() => {
                            self.err(v.pos, "command must not be empty");
                            Vec::new()
                        }
                        Ok(words) => words,
                        Err(e) => {
                            self.err(v.pos, e);
                            Vec::new()
                        }
                    }
                }
                Some(v) => self
                    .string_or_list(v)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(s, _)| s)
                    .collect(),
            };
            if let (Some(name), Some(image)) = (name, image) {
                out.push(Service {
                    name,
                    image,
                    env,
                    command,
                });
            }
        }
        out
    }
}
