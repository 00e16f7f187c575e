//! What a stock cluster grants a Pod, computed without running it (pure): Pod Security
//! admission at a namespace's level, the kubelet's sysctl allowlist, and the capability sets
//! and no_new_privs a container's process gets from containerd/runc and the kernel. The lab's
//! kubelet is to apply these instead of running every container as root with every
//! capability, so that what passes in the lab passes on a real cluster.
//!
//! Reasons use Kubernetes' own wording (pod-security-admission's `check_*` messages, the
//! kubelet's `SysctlForbidden`), so an operator recognises them.

use std::collections::BTreeSet;

use serde_json::Value as Json;

/// A Pod Security Standards level (`pod-security.kubernetes.io/enforce`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// No restriction.
    Privileged,
    /// Known privilege escalations refused.
    Baseline,
    /// Hardened.
    Restricted,
}

impl Level {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    /// Reads a label value.
    pub fn parse(text: &str) -> Option<Level> {
        match text {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

/// Capabilities `baseline` lets a container add (containerd's default set).
pub const BASELINE_CAPABILITIES: [&str; 13] = [
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

/// containerd's default capability set for a container (what `drop`/`add` start from): the
/// baseline set and NET_RAW.
fn runtime_default_capabilities() -> impl Iterator<Item = &'static str> {
    BASELINE_CAPABILITIES.into_iter().chain(["NET_RAW"])
}

/// The sysctls a stock kubelet allows without `--allowed-unsafe-sysctls` (Kubernetes 1.32).
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ping_group_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// All containers of a Pod spec with their kind (`initContainers` first, as they run).
fn containers(pod_spec: &Json) -> impl Iterator<Item = &Json> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(|field| pod_spec[field].as_array().into_iter().flatten())
}

fn name(container: &Json) -> &str {
    container["name"].as_str().unwrap_or("")
}

/// `container "a"` or `containers "a", "b"`, as the admission plugin writes them.
fn containers_phrase(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    if quoted.len() == 1 {
        format!("container {}", quoted[0])
    } else {
        format!("containers {}", quoted.join(", "))
    }
}

fn quoted_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("{i:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a Pod spec breaks `level` (empty: admitted), one reason per check, in the admission
/// plugin's words; the error it returns reads `violates PodSecurity "<level>:latest": <reasons
/// joined by ", ">`.
pub fn violations(level: Level, pod_spec: &Json) -> Vec<String> {
    let mut reasons = Vec::new();
    if level == Level::Privileged {
        return reasons;
    }
    baseline_violations(pod_spec, &mut reasons);
    if level == Level::Restricted {
        restricted_violations(pod_spec, &mut reasons);
    }
    reasons
}

fn baseline_violations(pod_spec: &Json, reasons: &mut Vec<String>) {
    let host: Vec<&str> = ["hostNetwork", "hostPID", "hostIPC"]
        .into_iter()
        .filter(|field| pod_spec[*field] == true)
        .collect();
    if !host.is_empty() {
        let set: Vec<String> = host.iter().map(|f| format!("{f}=true")).collect();
        reasons.push(format!("host namespaces ({})", set.join(", ")));
    }
    let privileged: Vec<&str> = containers(pod_spec)
        .filter(|c| c["securityContext"]["privileged"] == true)
        .map(name)
        .collect();
    if !privileged.is_empty() {
        reasons.push(format!(
            "privileged ({} must not set securityContext.privileged=true)",
            containers_phrase(&privileged)
        ));
    }
    let added = disallowed_additions(containers(pod_spec), |cap| {
        BASELINE_CAPABILITIES.contains(&cap)
    });
    if !added.is_empty() {
        reasons.push(format!("non-default capabilities ({})", added.join("; ")));
    }
    let host_paths: Vec<String> = pod_spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| format!("{:?}", v["name"].as_str().unwrap_or("")))
        .collect();
    if !host_paths.is_empty() {
        let noun = if host_paths.len() == 1 {
            "volume"
        } else {
            "volumes"
        };
        reasons.push(format!(
            "hostPath volumes ({noun} {})",
            host_paths.join(", ")
        ));
    }
    let forbidden: Vec<&str> = pod_spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .filter(|s| !SAFE_SYSCTLS.contains(s))
        .collect();
    if !forbidden.is_empty() {
        reasons.push(format!("forbidden sysctls ({})", forbidden.join(", ")));
    }
}

fn restricted_violations(pod_spec: &Json, reasons: &mut Vec<String>) {
    let pod = &pod_spec["securityContext"];
    let all: Vec<&Json> = containers(pod_spec).collect();
    let escalating: Vec<&str> = all
        .iter()
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != false)
        .map(|c| name(c))
        .collect();
    if !escalating.is_empty() {
        reasons.push(format!(
            "allowPrivilegeEscalation != false ({} must set securityContext.allowPrivilegeEscalation=false)",
            containers_phrase(&escalating)
        ));
    }
    let mut capability_faults = Vec::new();
    let not_dropping: Vec<&str> = all
        .iter()
        .filter(|c| {
            !c["securityContext"]["capabilities"]["drop"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|d| d == "ALL")
        })
        .map(|c| name(c))
        .collect();
    if !not_dropping.is_empty() {
        capability_faults.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&not_dropping)
        ));
    }
    capability_faults.extend(disallowed_additions(all.iter().copied(), |cap| {
        cap == "NET_BIND_SERVICE"
    }));
    if !capability_faults.is_empty() {
        reasons.push(format!(
            "unrestricted capabilities ({})",
            capability_faults.join("; ")
        ));
    }
    let pod_non_root = pod["runAsNonRoot"] == true;
    let not_non_root: Vec<&str> = all
        .iter()
        .filter(|c| match c["securityContext"]["runAsNonRoot"].as_bool() {
            Some(value) => !value,
            None => !pod_non_root,
        })
        .map(|c| name(c))
        .collect();
    if !not_non_root.is_empty() {
        reasons.push(format!(
            "runAsNonRoot != true (pod or {} must set securityContext.runAsNonRoot=true)",
            containers_phrase(&not_non_root)
        ));
    }
    let root_users: Vec<&str> = all
        .iter()
        .filter(|c| c["securityContext"]["runAsUser"] == 0)
        .map(|c| name(c))
        .collect();
    if pod["runAsUser"] == 0 || !root_users.is_empty() {
        let who = if pod["runAsUser"] == 0 {
            "pod".to_owned()
        } else {
            containers_phrase(&root_users)
        };
        reasons.push(format!("runAsUser=0 ({who} must not set runAsUser=0)"));
    }
    let allowed_seccomp = |profile: &Json| {
        matches!(
            profile["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        )
    };
    let pod_seccomp = allowed_seccomp(&pod["seccompProfile"]);
    let no_seccomp: Vec<&str> = all
        .iter()
        .filter(|c| {
            let own = &c["securityContext"]["seccompProfile"];
            if own.is_null() {
                !pod_seccomp
            } else {
                !allowed_seccomp(own)
            }
        })
        .map(|c| name(c))
        .collect();
    if !no_seccomp.is_empty() {
        reasons.push(format!(
            "seccompProfile (pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            containers_phrase(&no_seccomp)
        ));
    }
}

/// Per container, the capabilities it adds beyond what `allowed` accepts, in the admission
/// plugin's words.
fn disallowed_additions<'a>(
    containers: impl Iterator<Item = &'a Json>,
    allowed: impl Fn(&str) -> bool,
) -> Vec<String> {
    containers
        .filter_map(|container| {
            let extra: Vec<String> = added_capabilities(container)
                .into_iter()
                .filter(|cap| !allowed(cap))
                .collect();
            (!extra.is_empty()).then(|| {
                format!(
                    "{} must not include {} in securityContext.capabilities.add",
                    containers_phrase(&[name(container)]),
                    quoted_list(&extra)
                )
            })
        })
        .collect()
}

fn added_capabilities(container: &Json) -> Vec<String> {
    container["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Json::as_str)
        .map(|cap| cap.trim_start_matches("CAP_").to_owned())
        .collect()
}

/// The kubelet's admission of a Pod's `securityContext.sysctls`: the first that is neither
/// safe nor in `allowed_unsafe` (entries may end in `*`) fails the Pod with reason
/// `SysctlForbidden` and this message.
pub fn forbidden_sysctl(pod_spec: &Json, allowed_unsafe: &[String]) -> Option<String> {
    let allowed = |sysctl: &str| {
        SAFE_SYSCTLS.contains(&sysctl)
            || allowed_unsafe
                .iter()
                .any(|pattern| match pattern.strip_suffix('*') {
                    Some(prefix) => sysctl.starts_with(prefix),
                    None => pattern == sysctl,
                })
    };
    pod_spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .find(|sysctl| !allowed(sysctl))
        .map(|sysctl| format!("forbidden sysctl: {sysctl:?} not allowlisted"))
}

/// A container process's identity and capabilities as containerd, runc and the kernel leave
/// them after `execve` of the entrypoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessPrivileges {
    /// `runAsUser` (container, else Pod; the image's user is taken to be root when unset).
    pub uid: u32,
    /// `runAsGroup` (container, else Pod, else the uid's own group).
    pub gid: u32,
    /// Set when `allowPrivilegeEscalation: false` (and not privileged).
    pub no_new_privs: bool,
    /// The bounding set (also what containerd puts in effective and permitted).
    pub bounding: BTreeSet<String>,
    /// Permitted after `execve`.
    pub permitted: BTreeSet<String>,
    /// Effective after `execve`: what the process can actually use.
    pub effective: BTreeSet<String>,
}

/// Every capability name (for privileged containers), as `capsh` lists them.
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// What a container's process gets: containerd starts from its default set, applies `drop`
/// (`ALL` clears it) then `add`, and puts the result in the bounding, permitted and effective
/// sets with nothing inheritable or ambient (Kubernetes has no ambient capabilities). On
/// `execve` the kernel keeps them for uid 0; a non-root process keeps only the file
/// capabilities of the binary (`file_capabilities`, within the bounding set) — and none at
/// all under no_new_privs.
pub fn process_privileges(
    container: &Json,
    pod_spec: &Json,
    file_capabilities: &[&str],
) -> ProcessPrivileges {
    let own = &container["securityContext"];
    let pod = &pod_spec["securityContext"];
    let id = |field: &str| {
        own[field]
            .as_u64()
            .or_else(|| pod[field].as_u64())
            .and_then(|id| u32::try_from(id).ok())
    };
    let uid = id("runAsUser").unwrap_or(0);
    let gid = id("runAsGroup").unwrap_or(uid);
    let privileged = own["privileged"] == true;
    let bounding: BTreeSet<String> = if privileged {
        ALL_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()
    } else {
        let drops: Vec<String> = own["capabilities"]["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .map(|c| c.trim_start_matches("CAP_").to_owned())
            .collect();
        let mut set: BTreeSet<String> = if drops.iter().any(|d| d == "ALL") {
            BTreeSet::new()
        } else {
            runtime_default_capabilities()
                .map(str::to_owned)
                .filter(|c| !drops.contains(c))
                .collect()
        };
        set.extend(added_capabilities(container));
        set
    };
    // Kubernetes: unset means allowed; privileged always allows escalation.
    let no_new_privs = !privileged && own["allowPrivilegeEscalation"] == false;
    let permitted: BTreeSet<String> = if uid == 0 {
        bounding.clone()
    } else if no_new_privs {
        BTreeSet::new()
    } else {
        file_capabilities
            .iter()
            .map(|c| (*c).to_owned())
            .filter(|c| bounding.contains(c))
            .collect()
    };
    ProcessPrivileges {
        uid,
        gid,
        no_new_privs,
        effective: permitted.clone(),
        permitted,
        bounding,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// veg's gateway Pod as it ships today: non-root with NET_ADMIN/NET_RAW added and the
    /// forwarding sysctls in the Pod's security context.
    fn todays_gateway() -> Json {
        json!({
            "securityContext": {
                "runAsNonRoot": true,
                "seccompProfile": {"type": "RuntimeDefault"},
                "sysctls": [
                    {"name": "net.ipv4.ip_forward", "value": "1"},
                    {"name": "net.ipv4.conf.all.rp_filter", "value": "0"}
                ]
            },
            "initContainers": [{"name": "init", "securityContext": {
                "runAsUser": 65534, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}}],
            "containers": [{"name": "gateway", "securityContext": {
                "runAsUser": 65534, "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}}}]
        })
    }

    #[test]
    fn non_root_with_added_capabilities_gets_none_effective() {
        let pod = todays_gateway();
        let got = process_privileges(&pod["containers"][0], &pod, &[]);
        assert_eq!(got.uid, 65534);
        assert!(got.no_new_privs);
        assert_eq!(
            got.bounding.iter().map(String::as_str).collect::<Vec<_>>(),
            ["NET_ADMIN", "NET_RAW"]
        );
        assert!(got.effective.is_empty(), "{got:?}");
        // File capabilities do not help under no_new_privs …
        let with_file_caps = process_privileges(&pod["containers"][0], &pod, &["NET_ADMIN"]);
        assert!(with_file_caps.effective.is_empty());
        // … but do without it, within the bounding set only.
        let mut escalating = pod["containers"][0].clone();
        escalating["securityContext"]["allowPrivilegeEscalation"] = json!(true);
        let got = process_privileges(&escalating, &pod, &["NET_ADMIN", "SYS_ADMIN"]);
        assert_eq!(
            got.effective.iter().map(String::as_str).collect::<Vec<_>>(),
            ["NET_ADMIN"]
        );
    }

    #[test]
    fn root_keeps_exactly_the_added_capabilities_after_drop_all() {
        let container = json!({"name": "gateway", "securityContext": {
            "runAsUser": 0, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "CAP_NET_RAW"]}}});
        let got = process_privileges(&container, &json!({}), &[]);
        assert_eq!(
            got.effective.iter().map(String::as_str).collect::<Vec<_>>(),
            ["NET_ADMIN", "NET_RAW"]
        );
        // Without drop: the runtime's default set plus the additions.
        let plain =
            json!({"name": "c", "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}});
        let got = process_privileges(&plain, &json!({}), &[]);
        assert_eq!(
            got.effective.len(),
            runtime_default_capabilities().count() + 1
        );
        assert!(!got.no_new_privs);
        let privileged = json!({"name": "p", "securityContext": {"privileged": true,
            "allowPrivilegeEscalation": false}});
        let got = process_privileges(&privileged, &json!({}), &[]);
        assert!(got.effective.contains("SYS_ADMIN") && !got.no_new_privs);
    }

    #[test]
    fn the_sysctl_allowlist_is_the_kubelets() {
        let pod = todays_gateway();
        assert_eq!(
            forbidden_sysctl(&pod, &[]).as_deref(),
            Some("forbidden sysctl: \"net.ipv4.ip_forward\" not allowlisted")
        );
        let allowed = [
            "net.ipv4.ip_forward".to_owned(),
            "net.ipv4.conf.*".to_owned(),
        ];
        assert_eq!(forbidden_sysctl(&pod, &allowed), None);
        let safe = json!({"securityContext": {"sysctls": [
            {"name": "net.ipv4.ip_local_port_range", "value": "1024 65535"}]}});
        assert_eq!(forbidden_sysctl(&safe, &[]), None);
    }

    #[test]
    fn todays_gateway_pod_breaks_baseline_with_the_admission_plugins_words() {
        let pod = todays_gateway();
        assert!(violations(Level::Privileged, &pod).is_empty());
        assert_eq!(
            violations(Level::Baseline, &pod),
            [
                "non-default capabilities (container \"init\" must not include \"NET_ADMIN\", \
                 \"NET_RAW\" in securityContext.capabilities.add; container \"gateway\" must \
                 not include \"NET_ADMIN\", \"NET_RAW\" in securityContext.capabilities.add)",
                "forbidden sysctls (net.ipv4.ip_forward, net.ipv4.conf.all.rp_filter)",
            ]
        );
    }

    #[test]
    fn restricted_names_each_missing_setting() {
        let pod = json!({"containers": [
            {"name": "a", "securityContext": {"runAsUser": 0}},
            {"name": "b", "securityContext": {"allowPrivilegeEscalation": false,
                "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"},
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}
        ], "hostNetwork": true});
        let reasons = violations(Level::Restricted, &pod);
        assert_eq!(
            reasons,
            [
                "host namespaces (hostNetwork=true)",
                "allowPrivilegeEscalation != false (container \"a\" must set \
                 securityContext.allowPrivilegeEscalation=false)",
                "unrestricted capabilities (container \"a\" must set \
                 securityContext.capabilities.drop=[\"ALL\"])",
                "runAsNonRoot != true (pod or container \"a\" must set \
                 securityContext.runAsNonRoot=true)",
                "runAsUser=0 (container \"a\" must not set runAsUser=0)",
                "seccompProfile (pod or container \"a\" must set \
                 securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
            ]
        );
        // The controller's Pod as deploy/ ships it is restricted-clean.
        let controller = json!({
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "controller", "securityContext": {
                "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"]}}}]
        });
        assert!(violations(Level::Restricted, &controller).is_empty());
        assert_eq!(Level::parse("baseline"), Some(Level::Baseline));
        assert_eq!(Level::Restricted.as_str(), "restricted");
    }
}
