//! The Pod Security Standards, baseline and restricted profiles, with the semantics of the
//! standard (kubernetes.io/docs/concepts/security/pod-security-standards) and of the admission
//! controller that enforces it: which fields are read at pod level and which per container
//! (init, regular and ephemeral containers alike), which must be set and which must not be.
//!
//! Where a pod-level value is inherited by containers that do not set their own (seccomp,
//! runAsNonRoot), an explicitly bad pod-level value gives one finding at the pod, not one more
//! per inheriting container: fixing the pod fixes them all.

use std::ops::RangeInclusive;

use moat_pipelines::yaml::Node;

use super::ScanOptions;
use super::Sink;
use super::objects::{Container, Workload, as_int, containers, entry, field, path, strings};
use super::rules::{
    APPARMOR, CAPABILITIES, HOST_NAMESPACES, HOST_PATH, HOST_PORTS, HOST_PROCESS,
    PRIVILEGE_ESCALATION, PRIVILEGED, PROC_MOUNT, RESTRICTED_CAPABILITIES, RESTRICTED_SECCOMP,
    RUN_AS_NON_ROOT, RUN_AS_USER, SECCOMP, SELINUX, SYSCTLS, VOLUME_TYPES,
};

/// Capabilities a baseline container may add. Matched exactly, as the admission controller
/// does: `CAP_CHOWN` or `chown` are not on the list.
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The namespaced sysctls the standard calls safe (as of Kubernetes 1.29).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types a baseline pod may ask for (an empty type is the same as none).
const SELINUX_TYPES: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];

/// Volume sources of the restricted profile.
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Runs every baseline and restricted check on one workload.
pub(crate) fn check(w: &Workload<'_>, options: &ScanOptions, sink: &mut Sink<'_>) {
    let spec = w.spec;
    let cs = containers(spec);
    // Baseline.
    host_process(spec, &cs, sink);
    host_namespaces(spec, sink);
    for c in &cs {
        privileged(c, sink);
        baseline_capabilities(c, sink);
        host_ports(c, &options.allowed_host_ports, sink);
        proc_mount(c, sink);
    }
    host_path(spec, sink);
    apparmor(w, &cs, sink);
    selinux(spec, None, options, sink);
    seccomp_baseline(spec, None, sink);
    for c in &cs {
        selinux(c.node, Some(&c.name), options, sink);
        seccomp_baseline(c.node, Some(&c.name), sink);
    }
    sysctls(spec, sink);
    // Restricted.
    volume_types(spec, sink);
    run_as_non_root(spec, &cs, sink);
    run_as_user(spec, &cs, sink);
    // These three are Linux-only controls since Kubernetes 1.25: a pod that declares itself
    // Windows (`spec.os.name: windows`) is exempt, as the admission controller does.
    let windows = path(spec, &["os", "name"]).and_then(Node::as_str) == Some("windows");
    if !windows {
        for c in &cs {
            privilege_escalation(c, sink);
            restricted_capabilities(c, sink);
        }
        seccomp_restricted(spec, &cs, sink);
    }
}

/// "the pod" or "container \"x\"", to start a message.
fn who(container: Option<&str>) -> String {
    container.map_or_else(|| "the pod".to_string(), |c| format!("container \"{c}\""))
}

/// The text of a scalar for a message, `null` for nothing.
fn shown(node: &Node) -> &str {
    node.as_str().unwrap_or(if node.is_null() {
        "null"
    } else {
        "a non-scalar value"
    })
}

fn is_true(node: &Node) -> bool {
    node.as_bool() == Some(true)
}

fn host_process(spec: &Node, cs: &[Container<'_>], sink: &mut Sink<'_>) {
    const HOST_PROCESS_FIELD: &[&str] = &["securityContext", "windowsOptions", "hostProcess"];
    if let Some((k, v)) = field(spec, HOST_PROCESS_FIELD)
        && is_true(v)
    {
        sink.push(
            HOST_PROCESS,
            k.pos,
            None,
            "the pod sets securityContext.windowsOptions.hostProcess: true",
        );
    }
    for c in cs {
        if let Some((k, v)) = field(c.node, HOST_PROCESS_FIELD)
            && is_true(v)
        {
            sink.push(
                HOST_PROCESS,
                k.pos,
                Some(&c.name),
                format!(
                    "{} sets securityContext.windowsOptions.hostProcess: true",
                    who(Some(&c.name))
                ),
            );
        }
    }
}

fn host_namespaces(spec: &Node, sink: &mut Sink<'_>) {
    for (key, namespace) in [
        ("hostNetwork", "network"),
        ("hostPID", "process ID"),
        ("hostIPC", "IPC"),
    ] {
        if let Some((k, v)) = entry(spec, key)
            && is_true(v)
        {
            sink.push(
                HOST_NAMESPACES,
                k.pos,
                None,
                format!("the pod shares the host's {namespace} namespace ({key}: true)"),
            );
        }
    }
}

fn privileged(c: &Container<'_>, sink: &mut Sink<'_>) {
    if let Some((k, v)) = field(c.node, &["securityContext", "privileged"])
        && is_true(v)
    {
        sink.push(
            PRIVILEGED,
            k.pos,
            Some(&c.name),
            format!(
                "{} is privileged (securityContext.privileged: true)",
                who(Some(&c.name))
            ),
        );
    }
}

fn baseline_capabilities(c: &Container<'_>, sink: &mut Sink<'_>) {
    let add = path(c.node, &["securityContext", "capabilities", "add"]);
    let bad: Vec<(&Node, &str)> = strings(add)
        .filter(|(_, cap)| !BASELINE_CAPABILITIES.contains(cap))
        .collect();
    if let Some((first, _)) = bad.first() {
        let names: Vec<&str> = bad.iter().map(|(_, cap)| *cap).collect();
        sink.push(
            CAPABILITIES,
            first.pos,
            Some(&c.name),
            format!(
                "{} adds capabilities outside the baseline set: {}",
                who(Some(&c.name)),
                names.join(", ")
            ),
        );
    }
}

fn host_ports(c: &Container<'_>, allowed: &[RangeInclusive<u16>], sink: &mut Sink<'_>) {
    let ports = c.node.get("ports").and_then(Node::as_seq).unwrap_or(&[]);
    for port in ports {
        let Some((k, v)) = entry(port, "hostPort") else {
            continue;
        };
        if v.is_null() {
            continue;
        }
        let message = match as_int(v) {
            Some(0) => continue,
            Some(p) if u16::try_from(p).is_ok_and(|p| allowed.iter().any(|r| r.contains(&p))) => {
                continue;
            }
            Some(p) => format!("{} uses host port {p}", who(Some(&c.name))),
            // Not a number the API server would take; it cannot be shown to be 0.
            None => format!("{} sets hostPort to {}", who(Some(&c.name)), shown(v)),
        };
        sink.push(HOST_PORTS, k.pos, Some(&c.name), message);
    }
}

fn proc_mount(c: &Container<'_>, sink: &mut Sink<'_>) {
    if let Some((k, v)) = field(c.node, &["securityContext", "procMount"])
        && !v.is_null()
        && v.as_str() != Some("Default")
    {
        sink.push(
            PROC_MOUNT,
            k.pos,
            Some(&c.name),
            format!("{} sets procMount: {}", who(Some(&c.name)), shown(v)),
        );
    }
}

fn host_path(spec: &Node, sink: &mut Sink<'_>) {
    for volume in spec.get("volumes").and_then(Node::as_seq).unwrap_or(&[]) {
        if let Some((k, source)) = entry(volume, "hostPath") {
            let name = volume.get("name").and_then(Node::as_str).unwrap_or("?");
            let host = source.get("path").and_then(Node::as_str).unwrap_or("?");
            sink.push(
                HOST_PATH,
                k.pos,
                None,
                format!("volume \"{name}\" mounts the host path {host}"),
            );
        }
    }
}

fn apparmor(w: &Workload<'_>, cs: &[Container<'_>], sink: &mut Sink<'_>) {
    // The annotations of the pod (a controller's pod template), not of the controller.
    let annotations = w
        .pod_metadata()
        .and_then(|m| m.get("annotations"))
        .and_then(Node::as_map)
        .unwrap_or(&[]);
    for (k, v) in annotations {
        let Some(container) = k.as_str().and_then(|k| k.strip_prefix(APPARMOR_ANNOTATION)) else {
            continue;
        };
        let profile = v.as_str().unwrap_or("");
        if profile == "runtime/default" || profile.starts_with("localhost/") {
            continue;
        }
        sink.push(
            APPARMOR,
            k.pos,
            Some(container),
            format!(
                "container \"{container}\" has the AppArmor profile \"{profile}\" (annotation)"
            ),
        );
    }
    let mut fields = vec![(w.spec, None)];
    fields.extend(cs.iter().map(|c| (c.node, Some(c.name.as_str()))));
    for (node, container) in fields {
        if let Some((k, v)) = field(node, &["securityContext", "appArmorProfile", "type"])
            && !v.is_null()
            && !matches!(v.as_str(), Some("RuntimeDefault" | "Localhost"))
        {
            sink.push(
                APPARMOR,
                k.pos,
                container,
                format!("{} sets appArmorProfile.type: {}", who(container), shown(v)),
            );
        }
    }
}

/// The SELinux options of the pod (`container` = `None`) or of one container.
fn selinux(node: &Node, container: Option<&str>, options: &ScanOptions, sink: &mut Sink<'_>) {
    let Some(opts) = path(node, &["securityContext", "seLinuxOptions"]) else {
        return;
    };
    if let Some((k, v)) = entry(opts, "type")
        && !v.is_null()
    {
        let t = v.as_str().unwrap_or("?");
        // container_engine_t joined the list in Kubernetes 1.31; policies written for earlier
        // versions (and Kyverno's) still refuse it, so it is opt-in.
        let allowed = SELINUX_TYPES.contains(&t)
            || (options.allow_selinux_container_engine_t && t == "container_engine_t");
        if !allowed {
            sink.push(
                SELINUX,
                k.pos,
                container,
                format!("{} sets the SELinux type {t}", who(container)),
            );
        }
    }
    for key in ["user", "role"] {
        if let Some((k, v)) = entry(opts, key)
            && !v.is_null()
            && v.as_str() != Some("")
        {
            sink.push(
                SELINUX,
                k.pos,
                container,
                format!("{} sets the SELinux {key} {}", who(container), shown(v)),
            );
        }
    }
}

fn seccomp_type(node: &Node) -> Option<(&Node, &Node)> {
    field(node, &["securityContext", "seccompProfile", "type"]).filter(|(_, v)| !v.is_null())
}

fn valid_seccomp(v: &Node) -> bool {
    matches!(v.as_str(), Some("RuntimeDefault" | "Localhost"))
}

/// Baseline: a seccomp profile, where set, is not Unconfined (or anything else unknown).
fn seccomp_baseline(node: &Node, container: Option<&str>, sink: &mut Sink<'_>) {
    if let Some((k, v)) = seccomp_type(node)
        && !valid_seccomp(v)
    {
        sink.push(
            SECCOMP,
            k.pos,
            container,
            format!("{} sets seccompProfile.type: {}", who(container), shown(v)),
        );
    }
}

fn sysctls(spec: &Node, sink: &mut Sink<'_>) {
    let items = path(spec, &["securityContext", "sysctls"]).and_then(Node::as_seq);
    for item in items.unwrap_or(&[]) {
        let Some((k, v)) = entry(item, "name") else {
            continue;
        };
        let name = v.as_str().unwrap_or("");
        // Kubernetes also takes `/` as the separator (net/ipv4/...).
        if !SAFE_SYSCTLS.contains(&name.replace('/', ".").as_str()) {
            sink.push(
                SYSCTLS,
                k.pos,
                None,
                format!("the pod sets the unsafe sysctl {name}"),
            );
        }
    }
}

fn volume_types(spec: &Node, sink: &mut Sink<'_>) {
    for volume in spec.get("volumes").and_then(Node::as_seq).unwrap_or(&[]) {
        let name = volume.get("name").and_then(Node::as_str).unwrap_or("?");
        for (k, _) in volume.as_map().unwrap_or(&[]) {
            let Some(source) = k.as_str() else { continue };
            if source != "name" && !RESTRICTED_VOLUMES.contains(&source) {
                sink.push(
                    VOLUME_TYPES,
                    k.pos,
                    None,
                    format!("volume \"{name}\" is of type {source}"),
                );
            }
        }
    }
}

fn privilege_escalation(c: &Container<'_>, sink: &mut Sink<'_>) {
    match field(c.node, &["securityContext", "allowPrivilegeEscalation"]) {
        Some((_, v)) if v.as_bool() == Some(false) => {}
        Some((k, v)) if !v.is_null() => sink.push(
            PRIVILEGE_ESCALATION,
            k.pos,
            Some(&c.name),
            format!(
                "{} sets allowPrivilegeEscalation: {}",
                who(Some(&c.name)),
                shown(v)
            ),
        ),
        _ => sink.push(
            PRIVILEGE_ESCALATION,
            c.missing_pos(),
            Some(&c.name),
            format!(
                "{} does not set allowPrivilegeEscalation: false",
                who(Some(&c.name))
            ),
        ),
    }
}

/// runAsNonRoot must be true on the pod or on every container, and false nowhere.
fn run_as_non_root(spec: &Node, cs: &[Container<'_>], sink: &mut Sink<'_>) {
    const FIELD: &[&str] = &["securityContext", "runAsNonRoot"];
    let pod = field(spec, FIELD).filter(|(_, v)| !v.is_null());
    if let Some((k, v)) = pod
        && !is_true(v)
    {
        sink.push(
            RUN_AS_NON_ROOT,
            k.pos,
            None,
            format!("the pod sets runAsNonRoot: {}", shown(v)),
        );
    }
    for c in cs {
        match field(c.node, FIELD).filter(|(_, v)| !v.is_null()) {
            Some((_, v)) if is_true(v) => {}
            Some((k, v)) => sink.push(
                RUN_AS_NON_ROOT,
                k.pos,
                Some(&c.name),
                format!("{} sets runAsNonRoot: {}", who(Some(&c.name)), shown(v)),
            ),
            // Inherits the pod's value: fine when true, already reported when not.
            None if pod.is_some() => {}
            None => sink.push(
                RUN_AS_NON_ROOT,
                c.missing_pos(),
                Some(&c.name),
                format!(
                    "{} may run as root: runAsNonRoot: true is set neither on it nor on the pod",
                    who(Some(&c.name))
                ),
            ),
        }
    }
}

fn run_as_user(spec: &Node, cs: &[Container<'_>], sink: &mut Sink<'_>) {
    const FIELD: &[&str] = &["securityContext", "runAsUser"];
    let mut fields = vec![(spec, None)];
    fields.extend(cs.iter().map(|c| (c.node, Some(c.name.as_str()))));
    for (node, container) in fields {
        if let Some((k, v)) = field(node, FIELD)
            && as_int(v) == Some(0)
        {
            sink.push(
                RUN_AS_USER,
                k.pos,
                container,
                format!("{} sets runAsUser: 0 (root)", who(container)),
            );
        }
    }
}

/// Restricted: RuntimeDefault or Localhost on the pod, or on every container; a container's
/// own value overrides the pod's, so each set value must be valid too.
fn seccomp_restricted(spec: &Node, cs: &[Container<'_>], sink: &mut Sink<'_>) {
    let pod = seccomp_type(spec);
    if let Some((k, v)) = pod
        && !valid_seccomp(v)
    {
        sink.push(
            RESTRICTED_SECCOMP,
            k.pos,
            None,
            format!("the pod sets seccompProfile.type: {}", shown(v)),
        );
    }
    for c in cs {
        match seccomp_type(c.node) {
            Some((k, v)) if !valid_seccomp(v) => sink.push(
                RESTRICTED_SECCOMP,
                k.pos,
                Some(&c.name),
                format!("{} sets seccompProfile.type: {}", who(Some(&c.name)), shown(v)),
            ),
            Some(_) => {}
            None if pod.is_some() => {}
            None => sink.push(
                RESTRICTED_SECCOMP,
                c.missing_pos(),
                Some(&c.name),
                format!(
                    "{} has no seccomp profile: seccompProfile.type is set neither on it nor on the pod",
                    who(Some(&c.name))
                ),
            ),
        }
    }
}

fn restricted_capabilities(c: &Container<'_>, sink: &mut Sink<'_>) {
    let caps = field(c.node, &["securityContext", "capabilities"]);
    let drop = caps.and_then(|(_, v)| entry(v, "drop"));
    // The container runtimes read ALL case-insensitively, so `all` drops everything too.
    let drops_all = strings(drop.map(|(_, v)| v)).any(|(_, cap)| cap.eq_ignore_ascii_case("ALL"));
    if !drops_all {
        let pos = drop
            .or(caps)
            .map_or_else(|| c.missing_pos(), |(k, _)| k.pos);
        sink.push(
            RESTRICTED_CAPABILITIES,
            pos,
            Some(&c.name),
            format!("{} does not drop ALL capabilities", who(Some(&c.name))),
        );
    }
    let add = caps.and_then(|(_, v)| v.get("add"));
    let extra: Vec<(&Node, &str)> = strings(add)
        .filter(|(_, cap)| *cap != "NET_BIND_SERVICE")
        .collect();
    if let Some((first, _)) = extra.first() {
        let names: Vec<&str> = extra.iter().map(|(_, cap)| *cap).collect();
        sink.push(
            RESTRICTED_CAPABILITIES,
            first.pos,
            Some(&c.name),
            format!(
                "{} adds capabilities other than NET_BIND_SERVICE: {}",
                who(Some(&c.name)),
                names.join(", ")
            ),
        );
    }
}
