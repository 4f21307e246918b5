//! The catalog of checks, as data: stable ID, profile, severity, title and a one-line
//! remediation. IDs are part of the interface (users write them in `moat.dev/ignore`
//! annotations and dashboards group by them), so they never change meaning.
//!
//! Scheme: `PSS-BASELINE-*` and `PSS-RESTRICTED-*` are the controls of the Kubernetes Pod
//! Security Standards, one ID per control of the standard; `MOAT-K8S-*` are Moat's hygiene
//! checks.

use super::Severity;

/// Where a check comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Pod Security Standards, baseline profile.
    Baseline,
    /// Pod Security Standards, restricted profile (what it adds to baseline).
    Restricted,
    /// Moat's own checks of common practice.
    Hygiene,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Baseline => "baseline",
            Profile::Restricted => "restricted",
            Profile::Hygiene => "hygiene",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub id: &'static str,
    pub profile: Profile,
    pub severity: Severity,
    pub title: &'static str,
    pub remediation: &'static str,
}

impl Check {
    pub fn is_pss(&self) -> bool {
        self.profile != Profile::Hygiene
    }
}

macro_rules! checks {
    ($($name:ident = $id:literal, $profile:ident, $severity:ident, $title:literal, $fix:literal;)*) => {
        $(
            pub const $name: &Check = &Check {
                id: $id,
                profile: Profile::$profile,
                severity: Severity::$severity,
                title: $title,
                remediation: $fix,
            };
        )*
        /// Every check, in report order.
        pub const ALL: &[&Check] = &[$($name),*];
    };
}

checks! {
    HOST_PROCESS = "PSS-BASELINE-HOST-PROCESS", Baseline, Critical,
        "Windows HostProcess container",
        "Remove securityContext.windowsOptions.hostProcess (or set it to false) on the pod and every container.";
    HOST_NAMESPACES = "PSS-BASELINE-HOST-NAMESPACES", Baseline, High,
        "Host namespace shared",
        "Remove hostNetwork, hostPID and hostIPC from the pod spec (or set them to false).";
    PRIVILEGED = "PSS-BASELINE-PRIVILEGED", Baseline, Critical,
        "Privileged container",
        "Remove securityContext.privileged (or set it to false).";
    CAPABILITIES = "PSS-BASELINE-CAPABILITIES", Baseline, High,
        "Capability added beyond the baseline set",
        "Add only AUDIT_WRITE, CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, MKNOD, NET_BIND_SERVICE, SETFCAP, SETGID, SETPCAP, SETUID or SYS_CHROOT (no CAP_ prefix).";
    HOST_PATH = "PSS-BASELINE-HOST-PATH", Baseline, High,
        "hostPath volume",
        "Replace the hostPath volume with an emptyDir, configMap, secret or persistentVolumeClaim volume.";
    HOST_PORTS = "PSS-BASELINE-HOST-PORTS", Baseline, Medium,
        "Host port",
        "Remove hostPort (or set it to 0) and expose the port through a Service.";
    APPARMOR = "PSS-BASELINE-APPARMOR", Baseline, Medium,
        "AppArmor profile overridden",
        "Use the RuntimeDefault or a Localhost AppArmor profile (annotation runtime/default or localhost/NAME), or set none.";
    SELINUX = "PSS-BASELINE-SELINUX", Baseline, High,
        "Custom SELinux options",
        "Leave seLinuxOptions.user and role unset, and type unset or container_t, container_init_t or container_kvm_t.";
    PROC_MOUNT = "PSS-BASELINE-PROC-MOUNT", Baseline, High,
        "Unmasked /proc",
        "Remove securityContext.procMount (or set it to Default).";
    SECCOMP = "PSS-BASELINE-SECCOMP", Baseline, High,
        "Seccomp disabled",
        "Set seccompProfile.type to RuntimeDefault or Localhost, or leave it unset; never Unconfined.";
    SYSCTLS = "PSS-BASELINE-SYSCTLS", Baseline, Medium,
        "Unsafe sysctl",
        "Set only the namespaced safe sysctls (e.g. net.ipv4.ip_local_port_range, net.ipv4.ping_group_range); remove the others.";
    VOLUME_TYPES = "PSS-RESTRICTED-VOLUME-TYPES", Restricted, Medium,
        "Volume type outside the restricted set",
        "Use only configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected and secret volumes.";
    PRIVILEGE_ESCALATION = "PSS-RESTRICTED-PRIVILEGE-ESCALATION", Restricted, Medium,
        "Privilege escalation allowed",
        "Set securityContext.allowPrivilegeEscalation: false in every container.";
    RUN_AS_NON_ROOT = "PSS-RESTRICTED-RUN-AS-NON-ROOT", Restricted, Medium,
        "Not required to run as non-root",
        "Set securityContext.runAsNonRoot: true on the pod (or on every container), and false nowhere.";
    RUN_AS_USER = "PSS-RESTRICTED-RUN-AS-USER", Restricted, High,
        "Runs as root (UID 0)",
        "Set runAsUser to a non-zero UID, or remove it and run the image's non-root user.";
    RESTRICTED_SECCOMP = "PSS-RESTRICTED-SECCOMP", Restricted, Medium,
        "Seccomp profile not set",
        "Set securityContext.seccompProfile.type: RuntimeDefault (or Localhost) on the pod or on every container.";
    RESTRICTED_CAPABILITIES = "PSS-RESTRICTED-CAPABILITIES", Restricted, Medium,
        "Capabilities not dropped",
        "Set securityContext.capabilities.drop: [ALL] in every container and add at most NET_BIND_SERVICE.";
    RESOURCE_LIMITS = "MOAT-K8S-RESOURCE-LIMITS", Hygiene, Medium,
        "Missing resource limits",
        "Set resources.limits.cpu and resources.limits.memory.";
    RESOURCE_REQUESTS = "MOAT-K8S-RESOURCE-REQUESTS", Hygiene, Low,
        "Missing resource requests",
        "Set resources.requests.cpu and resources.requests.memory.";
    LIVENESS_PROBE = "MOAT-K8S-LIVENESS-PROBE", Hygiene, Low,
        "No liveness probe",
        "Add a livenessProbe so that a hung container is restarted.";
    READINESS_PROBE = "MOAT-K8S-READINESS-PROBE", Hygiene, Low,
        "No readiness probe",
        "Add a readinessProbe so that traffic reaches the container only when it is ready.";
    LATEST_TAG = "MOAT-K8S-LATEST-TAG", Hygiene, Medium,
        "Image tagged :latest or untagged",
        "Pin the image to an explicit version tag, or better a digest.";
    IMAGE_DIGEST = "MOAT-K8S-IMAGE-DIGEST", Hygiene, Low,
        "Image not pinned by digest",
        "Reference the image by digest (name@sha256:...) so that what runs is what was scanned.";
    SECRET_IN_ENV = "MOAT-K8S-SECRET-IN-ENV", Hygiene, High,
        "Secret in a plain env value",
        "Move the value into a Secret and reference it with env[].valueFrom.secretKeyRef.";
    SA_TOKEN_AUTOMOUNT = "MOAT-K8S-SA-TOKEN-AUTOMOUNT", Hygiene, Low,
        "Service-account token mounted",
        "Set automountServiceAccountToken: false in the pod spec unless the pod calls the Kubernetes API.";
    DEFAULT_NAMESPACE = "MOAT-K8S-DEFAULT-NAMESPACE", Hygiene, Low,
        "Default namespace",
        "Set metadata.namespace to a namespace of the application's own.";
    MALFORMED_WORKLOAD = "MOAT-K8S-MALFORMED-WORKLOAD", Hygiene, Critical,
        "Workload Moat cannot read",
        "Write the field with the shape the Kubernetes API defines (containers, volumes, ports and env are lists of mappings; spec, template and securityContext are mappings).";
    IGNORE_INVALID = "MOAT-K8S-IGNORE-INVALID", Hygiene, Medium,
        "Ignore annotation not honoured",
        "Write moat.dev/ignore as \"ID=reason[,ID2=reason]\" with known check IDs and a reason for each.";
}

/// The check with this ID (ASCII case-insensitive, as users type IDs in annotations).
pub fn by_id(id: &str) -> Option<&'static Check> {
    ALL.iter().copied().find(|c| c.id.eq_ignore_ascii_case(id))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_follow_the_scheme() {
        let mut seen = HashSet::new();
        for c in ALL {
            assert!(seen.insert(c.id), "duplicate {}", c.id);
            let prefix = match c.profile {
                Profile::Baseline => "PSS-BASELINE-",
                Profile::Restricted => "PSS-RESTRICTED-",
                Profile::Hygiene => "MOAT-K8S-",
            };
            assert!(c.id.starts_with(prefix), "{}", c.id);
            assert!(
                c.id.chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '-'),
                "{}",
                c.id
            );
            assert!(!c.remediation.contains('\n') && c.remediation.ends_with('.'));
        }
        assert_eq!(by_id("pss-baseline-privileged"), Some(PRIVILEGED));
        assert_eq!(by_id("NOPE"), None);
    }
}
