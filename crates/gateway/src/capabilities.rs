//! The capabilities the agent needs before it touches the kernel: CAP_NET_ADMIN (routes, rules,
//! nftables, addresses) and CAP_NET_RAW (nftables' raw socket users). Checked up front from
//! `/proc/self/status`, so a Pod configured the way Kubernetes cannot honour (a non-root user
//! with `capabilities.add`: Kubernetes sets no ambient capabilities, so such a process has
//! none effective) fails with what to change instead of a bare "Operation not permitted".

/// A capability the agent needs, by its number in `CapEff`.
const NEEDED: [(&str, u32); 2] = [("NET_ADMIN", 12), ("NET_RAW", 13)];

/// The process's uid and effective capability mask, from `/proc/self/status` text.
fn parse_status(status: &str) -> Option<(u32, u64)> {
    let mut uid = None;
    let mut effective = None;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("Uid:") {
            uid = rest.split_whitespace().nth(1).and_then(|u| u.parse().ok());
        } else if let Some(rest) = line.strip_prefix("CapEff:") {
            effective = u64::from_str_radix(rest.trim(), 16).ok();
        }
    }
    Some((uid?, effective?))
}

/// The needed capabilities missing from an effective mask.
fn missing(effective: u64) -> Vec<&'static str> {
    NEEDED
        .iter()
        .filter(|(_, bit)| effective & (1 << bit) == 0)
        .map(|(name, _)| *name)
        .collect()
}

/// Why the agent cannot run here.
#[derive(Debug, thiserror::Error)]
#[error(
    "this process (uid {uid}) lacks {} in its effective capability set; run the container as \
     uid 0 with securityContext.capabilities {{drop: [ALL], add: [NET_ADMIN, NET_RAW]}} — a \
     non-root user gets no effective capability from capabilities.add, because Kubernetes sets \
     no ambient capabilities",
    .missing.iter().map(|c| format!("CAP_{c}")).collect::<Vec<_>>().join(" and ")
)]
pub struct MissingCapabilities {
    /// The effective uid.
    pub uid: u32,
    /// Without the `CAP_` prefix.
    pub missing: Vec<&'static str>,
}

/// Checks this process's effective set (an unreadable status passes: the kernel will say).
pub fn check() -> Result<(), MissingCapabilities> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Ok(());
    };
    let Some((uid, effective)) = parse_status(&status) else {
        return Ok(());
    };
    let missing = missing(effective);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(MissingCapabilities { uid, missing })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_effective_set_and_names_what_is_missing() {
        let non_root = "Name:\tveg\nUid:\t65534\t65534\t65534\t65534\nCapInh:\t0000000000000000\n\
                        CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n";
        let (uid, effective) = parse_status(non_root).unwrap_or_default();
        assert_eq!(uid, 65534);
        let error = MissingCapabilities {
            uid,
            missing: missing(effective),
        };
        let text = error.to_string();
        assert!(
            text.contains("(uid 65534) lacks CAP_NET_ADMIN and CAP_NET_RAW")
                && text.contains("add: [NET_ADMIN, NET_RAW]"),
            "{text}"
        );
        // Root with exactly NET_ADMIN and NET_RAW: bits 12 and 13.
        let root = "Uid:\t0\t0\t0\t0\nCapEff:\t0000000000003000\n";
        assert_eq!(parse_status(root).map(|(_, e)| missing(e)), Some(vec![]));
        // NET_ADMIN only.
        assert_eq!(missing(1 << 12), ["NET_RAW"]);
        assert_eq!(parse_status("Uid:\t0\n"), None);
    }
}
