//! The OVN Northbound rows of one gateway (pure): names, external_ids, priorities, matches and
//! nexthops exactly as Kube-OVN writes them, minus its gaps (no rows for a family the gateway
//! cannot carry, BFD timer changes applied to existing rows).
//!
//! Per carried family X (h = `sha256("<ns>/<name>")[:12]`):
//! ```text
//! Address_Set VEG.<h>.ipvX = policy sources (SNAT ∪ forward-only)
//! Port_Group  VEG.<h>      = the selected Pods' ports          (with selectors)
//! Address_Set VEG.<h>_ipX  = empty, keeps $VEG.<h>_ipX defined (without selectors)
//! 29150 reroute  ipX.src == $<node PG>_ipX && ipX.src == $VEG…  → that node's instances (Local)
//! 29100 reroute  ipX.src == $VEG.<h>.ipvX / $VEG.<h>_ipX        → every instance
//! 29090 drop     the same two matches                           (BFD on: nothing leaks)
//! BFD   logical_port bfd@<vpc>, dst_ip <instance>, min_rx = pod min_tx, min_tx = pod min_rx
//! ```
//! 29150/29100 rows exist only while there are nexthops; the 29090 rows stay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use veg_api::TrafficPolicy;
use veg_api::names::{self, AddressFamily, MonitorTimers};

use crate::plan::context::GatewayInputs;

/// Who keeps the nexthops of BFD-enabled reroute policies current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfdMode {
    /// OVN: BFD rows linked from the policies (`bfd_sessions`); northd drops dead nexthops.
    Native,
    /// `veg monitor`: the controller publishes the candidates, the monitor writes the nexthops
    /// of the instances whose session is Up.
    Monitor,
}

/// The controller's `--bfd-mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfdModeSetting {
    /// Always native.
    Native,
    /// Always monitor.
    Monitor,
    /// Native only when the NB schema has `Logical_Router_Policy.bfd_sessions` and the
    /// operator says the OVN build honours BFD on the dedicated port; else monitor.
    Auto,
}

impl BfdModeSetting {
    /// The mode to run with.
    pub fn choose(self, schema_has_bfd_sessions: bool, dedicated_port_honoured: bool) -> BfdMode {
        match self {
            BfdModeSetting::Native => BfdMode::Native,
            BfdModeSetting::Monitor => BfdMode::Monitor,
            BfdModeSetting::Auto if schema_has_bfd_sessions && dedicated_port_honoured => {
                BfdMode::Native
            }
            BfdModeSetting::Auto => BfdMode::Monitor,
        }
    }
}

/// A reroute or a drop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `reroute` to the nexthops.
    Reroute,
    Drop,
}

impl Action {
    /// The NB `action` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Reroute => "reroute",
            Action::Drop => "drop",
        }
    }
}

/// One Logical_Router_Policy row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyRow {
    /// Family (external_ids `af`).
    pub family: AddressFamily,
    pub priority: i64,
    pub match_: String,
    pub action: Action,
    /// Nexthops the controller writes; `None` when the monitor owns them.
    pub nexthops: Option<BTreeSet<IpAddr>>,
    /// Link the BFD rows of these nexthops (`bfd_sessions`).
    pub bfd_sessions: bool,
    /// Candidates published for the monitor.
    pub candidates: Option<BTreeSet<IpAddr>>,
    /// The monitor's timers for them.
    pub timers: Option<MonitorTimers>,
}

/// One BFD row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BfdRow {
    pub family: AddressFamily,
    /// `bfd@<vpc>`.
    pub logical_port: String,
    /// The instance.
    pub dst_ip: IpAddr,
    /// OVN-side min_rx (the Pod's min_tx).
    pub min_rx: i64,
    /// OVN-side min_tx (the Pod's min_rx).
    pub min_tx: i64,
    /// Detect multiplier.
    pub detect_mult: i64,
}

/// One Address_Set row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressSetRow {
    pub family: AddressFamily,
    pub name: String,
    /// Addresses (CIDR text as Kube-OVN writes it).
    pub addresses: BTreeSet<String>,
}

/// Every NB row of one gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayOvn {
    /// `<namespace>/<name>` (external_ids `vpc-egress-gateway`).
    pub key: String,
    /// The router the policies hang on.
    pub router: String,
    pub address_sets: Vec<AddressSetRow>,
    /// The Port_Group and its ports (LSP names), with selectors.
    pub port_group: Option<(String, BTreeSet<String>)>,
    /// BFD rows (native mode).
    pub bfd: Vec<BfdRow>,
    pub policies: Vec<PolicyRow>,
}

/// The external_ids of a row of `key` in `family` (`None`: without `af`).
pub fn external_ids(key: &str, family: Option<AddressFamily>) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::from([
        (
            names::EXTERNAL_ID_VENDOR.to_owned(),
            names::VENDOR.to_owned(),
        ),
        (names::EXTERNAL_ID_GATEWAY.to_owned(), key.to_owned()),
    ]);
    if let Some(family) = family {
        ids.insert(names::EXTERNAL_ID_AF.to_owned(), family.af().to_owned());
    }
    ids
}

/// `ip4` or `ip6`.
fn ip(family: AddressFamily) -> &'static str {
    match family {
        AddressFamily::V4 => "ip4",
        AddressFamily::V6 => "ip6",
    }
}

/// The two cluster matches: the policy-source address set, the selected Pods' address set.
pub fn cluster_matches(namespace: &str, name: &str, family: AddressFamily) -> [String; 2] {
    let ip = ip(family);
    [
        format!(
            "{ip}.src == ${}",
            names::policy_address_set(namespace, name, family)
        ),
        format!(
            "{ip}.src == ${}",
            names::port_group_address_set(namespace, name, family)
        ),
    ]
}

/// The two Local matches of a node's Port_Group.
pub fn local_matches(
    namespace: &str,
    name: &str,
    family: AddressFamily,
    node_port_group: &str,
) -> [String; 2] {
    let ip = ip(family);
    let suffix = match family {
        AddressFamily::V4 => "ip4",
        AddressFamily::V6 => "ip6",
    };
    cluster_matches(namespace, name, family)
        .map(|cluster| format!("{ip}.src == ${node_port_group}_{suffix} && {cluster}"))
}

/// The rows of one gateway.
pub fn plan(inputs: &GatewayInputs, mode: BfdMode) -> GatewayOvn {
    let (namespace, name) = (inputs.namespace.as_str(), inputs.name.as_str());
    let mut ovn = GatewayOvn {
        key: inputs.key.clone(),
        router: inputs.router.clone(),
        address_sets: Vec::new(),
        port_group: inputs
            .has_selectors
            .then(|| (names::port_group(namespace, name), inputs.ports.clone())),
        bfd: Vec::new(),
        policies: Vec::new(),
    };
    for (family, family_inputs) in &inputs.families {
        let family = *family;
        ovn.address_sets.push(AddressSetRow {
            family,
            name: names::policy_address_set(namespace, name, family),
            addresses: family_inputs
                .sources
                .iter()
                .map(ToString::to_string)
                .collect(),
        });
        if !inputs.has_selectors {
            ovn.address_sets.push(AddressSetRow {
                family,
                name: names::port_group_address_set(namespace, name, family),
                addresses: BTreeSet::new(),
            });
        }

        let bfd = inputs
            .bfd
            .as_ref()
            .filter(|_| family_inputs.bfd_ip.is_some());
        let native = bfd.is_some() && mode == BfdMode::Native;
        let monitored = bfd.is_some() && mode == BfdMode::Monitor;
        let reroute = |match_: String, nexthops: BTreeSet<IpAddr>, priority: i64| PolicyRow {
            family,
            priority,
            match_,
            action: Action::Reroute,
            candidates: monitored.then(|| nexthops.clone()),
            nexthops: (!monitored).then_some(nexthops),
            bfd_sessions: native,
            timers: bfd.filter(|_| monitored).map(|bfd| MonitorTimers {
                min_tx_ms: u32::try_from(bfd.min_rx).unwrap_or(1000),
                min_rx_ms: u32::try_from(bfd.min_tx).unwrap_or(1000),
                multiplier: u8::try_from(bfd.multiplier).unwrap_or(3),
            }),
        };
        let all = family_inputs.all_nexthops();
        if native && let Some(bfd) = bfd {
            for dst_ip in &all {
                ovn.bfd.push(BfdRow {
                    family,
                    logical_port: bfd.port.clone(),
                    dst_ip: *dst_ip,
                    // Mirrored: OVN sends at the rate the Pod wants to receive, and back.
                    min_rx: i64::from(bfd.min_tx),
                    min_tx: i64::from(bfd.min_rx),
                    detect_mult: i64::from(bfd.multiplier),
                });
            }
        }
        if inputs.traffic_policy == TrafficPolicy::Local {
            for (node, nexthops) in &family_inputs.nexthops {
                let Some(group) = family_inputs.node_port_groups.get(node) else {
                    continue;
                };
                for match_ in local_matches(namespace, name, family, group) {
                    ovn.policies
                        .push(reroute(match_, nexthops.clone(), names::PRIORITY_LOCAL));
                }
            }
        }
        // Without instances the reroutes go (northd would skip them anyway) and the drop
        // below catches the traffic; in monitor mode they stay and the monitor fills them.
        if !all.is_empty() || monitored {
            for match_ in cluster_matches(namespace, name, family) {
                ovn.policies
                    .push(reroute(match_, all.clone(), names::PRIORITY_CLUSTER));
            }
        }
        if bfd.is_some() {
            for match_ in cluster_matches(namespace, name, family) {
                ovn.policies.push(PolicyRow {
                    family,
                    priority: names::PRIORITY_DROP,
                    match_,
                    action: Action::Drop,
                    nexthops: Some(BTreeSet::new()),
                    bfd_sessions: false,
                    candidates: None,
                    timers: None,
                });
            }
        }
    }
    ovn.address_sets.sort();
    ovn.bfd.sort();
    ovn.policies.sort();
    ovn
}

#[cfg(test)]
mod tests;
