//! The pure planner of a gateway Pod: what the kernel must hold, computed from the gateway's
//! addresses and policies, with nothing read from or written to the system.
//!
//! It matches the observable behaviour of Kube-OVN's init script (the product description,
//! "Inside a gateway Pod") without its two rules that do nothing (`iif eth0 lookup default`,
//! `from <external IP> iif lo lookup default`):
//!
//! ```text
//! ip rule   1002: from all iif <external> lookup 1000     replies from outside go back in
//!           1003: from <internal IP> iif lo lookup 1000   our own packets (BFD) leave inside
//! table 1000: default via <internal gateway> dev <internal>
//! main:     default via <external gateway> dev <external>
//!           <policy CIDR outside the internal subnet> via <internal gateway> dev <internal>
//!           <BFD peer> via <internal gateway> dev <internal>
//! nft table ip|ip6 veg:
//!   prerouting (nat):  iifname <internal> mark |= 0x4000
//!   postrouting (nat): daddr in forward-only → return; saddr in forward-only → return;
//!                      mark & 0x4000, oifname <external> → mark &= ~0x4000, counter,
//!                      masquerade fully-random
//!   count-egress, count-ingress (filter): oifname/iifname <external>, ct status snat, counter
//!                      (the NAT hook sees only first packets; these count every packet)
//! ```
//! A family without an external gateway gets no default route and no SNAT table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Routing table for traffic that must go back into the VPC.
pub const INTERNAL_TABLE: u32 = 1000;
/// Priority of `iif <external> lookup 1000`.
pub const RULE_FROM_EXTERNAL: u32 = 1002;
/// Priority of `from <internal IP> iif lo lookup 1000`.
pub const RULE_FROM_SELF: u32 = 1003;
/// Mark of packets that entered from the internal leg (Kube-OVN's value).
pub const MARK: u32 = 0x4000;
/// Name of veg's nftables table in each family.
pub const NFT_TABLE: &str = "veg";

// ===== input =====

/// What the controller tells a gateway instance.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayConfig {
    /// The leg in the VPC (`eth0`).
    pub internal_interface: String,
    /// The leg outside (`net1`).
    pub external_interface: String,
    /// IPv4, when the gateway has it.
    pub ipv4: Option<FamilyConfig>,
    /// IPv6, when the gateway has it.
    pub ipv6: Option<FamilyConfig>,
}

/// One address family of a gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyConfig {
    /// This instance's address on the internal leg.
    pub internal_address: IpAddr,
    /// The internal subnet (its CIDRs need no route: the leg is connected to them).
    pub internal_subnet: Option<IpNet>,
    /// The VPC router's address on the internal subnet.
    pub internal_gateway: IpAddr,
    /// The external network's gateway; without one this family gets no default route and no
    /// SNAT.
    pub external_gateway: Option<IpAddr>,
    /// Sources forwarded without SNAT (`snat: false` policies).
    pub forward_only: Vec<IpNet>,
    /// Every policy source (SNAT or not): their return routes point into the VPC.
    pub sources: Vec<IpNet>,
    /// The VPC's BFD port addresses, reached through the internal leg.
    pub bfd_peers: Vec<IpAddr>,
    /// They are router ports (native mode: OVN's `bfd@<vpc>`), so they are routed through the
    /// internal gateway even when inside the internal subnet.
    pub bfd_peers_routed: bool,
}

/// An input the planner refuses, naming the field and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// An address or CIDR of the other family.
    #[error("{field}: {value} is not an {family} address")]
    WrongFamily {
        /// Which field, e.g. `ipv4.internal_gateway`.
        field: String,
        value: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// An interface name the kernel cannot have.
    #[error("{field}: {value:?} is not an interface name (1-15 characters, no '/' or spaces)")]
    BadInterface {
        /// Which field.
        field: &'static str,
        value: String,
    },
    /// Both legs on one interface.
    #[error("the internal and external interfaces are both {name:?}")]
    SameInterface { name: String },
    /// No family at all.
    #[error("neither an IPv4 nor an IPv6 configuration was given")]
    NoFamily,
}

// ===== output =====

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Family {
    /// IPv4 (nft family `ip`).
    V4,
    /// IPv6 (nft family `ip6`).
    V6,
}

/// A sysctl to set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sysctl {
    /// Path under /proc/sys, with dots: `net.ipv4.ip_forward`.
    pub key: String,
    pub value: String,
}

/// An ip rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RulePlan {
    pub family: Family,
    pub priority: u32,
    /// Incoming interface (`lo` for locally generated packets).
    pub iif: String,
    /// Source, when the rule has one.
    pub from: Option<IpNet>,
    /// Table looked up.
    pub table: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoutePlan {
    /// Table (254 is main).
    pub table: u32,
    pub destination: IpNet,
    /// Next hop; `None` for a route to an on-link subnet.
    pub gateway: Option<IpAddr>,
    /// Outgoing interface.
    pub device: String,
}

/// veg's nftables table of one family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftTable {
    pub family: Family,
    /// Interface of the internal leg (packets entering there are marked).
    pub internal_interface: String,
    /// Interface of the external leg (marked packets leaving there are masqueraded).
    pub external_interface: String,
    /// Sources and destinations exempt from SNAT.
    pub forward_only: Vec<IpNet>,
}

/// Everything a gateway Pod must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Sysctls, sorted.
    pub sysctls: Vec<Sysctl>,
    /// ip rules, sorted.
    pub rules: Vec<RulePlan>,
    /// Routes, sorted.
    pub routes: Vec<RoutePlan>,
    /// nftables tables, one per family with SNAT.
    pub nft: Vec<NftTable>,
}

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

// ===== planner =====

/// Computes the plan, or says which input is wrong.
pub fn plan(config: &GatewayConfig) -> Result<Plan, PlanError> {
    check_interface("internal_interface", &config.internal_interface)?;
    check_interface("external_interface", &config.external_interface)?;
    if config.internal_interface == config.external_interface {
        return Err(PlanError::SameInterface {
            name: config.internal_interface.clone(),
        });
    }
    if config.ipv4.is_none() && config.ipv6.is_none() {
        return Err(PlanError::NoFamily);
    }
    let mut plan = Plan {
        sysctls: Vec::new(),
        rules: Vec::new(),
        routes: Vec::new(),
        nft: Vec::new(),
    };
    for (family, family_config) in [(Family::V4, &config.ipv4), (Family::V6, &config.ipv6)] {
        if let Some(family_config) = family_config {
            check_family(family, family_config)?;
            plan_family(config, family, family_config, &mut plan);
        }
    }
    plan.sysctls.sort();
    plan.sysctls.dedup();
    plan.rules.sort();
    plan.routes.sort();
    plan.routes.dedup();
    Ok(plan)
}

fn plan_family(config: &GatewayConfig, family: Family, input: &FamilyConfig, plan: &mut Plan) {
    let internal = &config.internal_interface;
    let external = &config.external_interface;
    let sysctl = |key: String, value: &str| Sysctl {
        key,
        value: value.to_owned(),
    };
    match family {
        Family::V4 => {
            plan.sysctls.push(sysctl("net.ipv4.ip_forward".into(), "1"));
            // The kernel uses the larger of `all` and the interface's value: both must be 0, or
            // replies arriving on the external leg for VPC sources fail the reverse path check.
            plan.sysctls
                .push(sysctl("net.ipv4.conf.all.rp_filter".into(), "0"));
            plan.sysctls
                .push(sysctl(format!("net.ipv4.conf.{internal}.rp_filter"), "0"));
        }
        Family::V6 => plan
            .sysctls
            .push(sysctl("net.ipv6.conf.all.forwarding".into(), "1")),
    }

    plan.rules.push(RulePlan {
        family,
        priority: RULE_FROM_EXTERNAL,
        iif: external.clone(),
        from: None,
        table: INTERNAL_TABLE,
    });
    plan.rules.push(RulePlan {
        family,
        priority: RULE_FROM_SELF,
        iif: "lo".into(),
        from: Some(IpNet::from(input.internal_address)),
        table: INTERNAL_TABLE,
    });

    let via_internal = |destination: IpNet| RoutePlan {
        table: MAIN_TABLE,
        destination: destination.trunc(),
        gateway: Some(input.internal_gateway),
        device: internal.clone(),
    };
    plan.routes.push(RoutePlan {
        table: INTERNAL_TABLE,
        destination: default_route(family),
        gateway: Some(input.internal_gateway),
        device: internal.clone(),
    });
    // Our own packets to on-link neighbours (a monitor on the internal switch) go straight
    // there, not through the router: the router would cost them a hop (TTL 254).
    if let Some(subnet) = input.internal_subnet {
        plan.routes.push(RoutePlan {
            table: INTERNAL_TABLE,
            destination: subnet.trunc(),
            gateway: None,
            device: internal.clone(),
        });
    }
    let inside = |net: &IpNet| {
        input
            .internal_subnet
            .is_some_and(|subnet| subnet.contains(net))
    };
    let sources: BTreeSet<IpNet> = input
        .sources
        .iter()
        .chain(&input.forward_only)
        .map(IpNet::trunc)
        .collect();
    for source in sources.into_iter().filter(|net| !inside(net)) {
        plan.routes.push(via_internal(source));
    }
    // A peer on the internal subnet (`veg monitor` on the gateways' switch) is on-link: a
    // route through the router would cost its packets a hop (TTL 254) and break GTSM. A
    // router port (native mode) is never on the switch, wherever its address lies: routed in
    // both tables (bfdd's replies, from the internal address, use the internal table).
    for peer in input
        .bfd_peers
        .iter()
        .filter(|peer| input.bfd_peers_routed || !inside(&IpNet::from(**peer)))
    {
        plan.routes.push(via_internal(IpNet::from(*peer)));
        if input.bfd_peers_routed && inside(&IpNet::from(*peer)) {
            plan.routes.push(RoutePlan {
                table: INTERNAL_TABLE,
                ..via_internal(IpNet::from(*peer))
            });
        }
    }

    if let Some(external_gateway) = input.external_gateway {
        plan.routes.push(RoutePlan {
            table: MAIN_TABLE,
            destination: default_route(family),
            gateway: Some(external_gateway),
            device: external.clone(),
        });
        let mut forward_only: Vec<IpNet> = input.forward_only.iter().map(IpNet::trunc).collect();
        forward_only.sort();
        forward_only.dedup();
        plan.nft.push(NftTable {
            family,
            internal_interface: internal.clone(),
            external_interface: external.clone(),
            forward_only,
        });
    }
}

fn default_route(family: Family) -> IpNet {
    match family {
        Family::V4 => IpNet::V4(ipnet::Ipv4Net::default()),
        Family::V6 => IpNet::V6(ipnet::Ipv6Net::default()),
    }
}

fn check_interface(field: &'static str, name: &str) -> Result<(), PlanError> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c.is_whitespace() || c == ':');
    if valid {
        Ok(())
    } else {
        Err(PlanError::BadInterface {
            field,
            value: name.to_owned(),
        })
    }
}

fn check_family(family: Family, input: &FamilyConfig) -> Result<(), PlanError> {
    let prefix = match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    };
    let wanted_v4 = family == Family::V4;
    let wrong = |field: &str, value: String| PlanError::WrongFamily {
        field: format!("{prefix}.{field}"),
        value,
        family: if wanted_v4 { "IPv4" } else { "IPv6" },
    };
    let addresses = [
        ("internal_address", Some(input.internal_address)),
        ("internal_gateway", Some(input.internal_gateway)),
        ("external_gateway", input.external_gateway),
    ];
    for (field, address) in addresses {
        if let Some(address) = address
            && address.is_ipv4() != wanted_v4
        {
            return Err(wrong(field, address.to_string()));
        }
    }
    for (index, peer) in input.bfd_peers.iter().enumerate() {
        if peer.is_ipv4() != wanted_v4 {
            return Err(wrong(&format!("bfd_peers[{index}]"), peer.to_string()));
        }
    }
    let nets = [
        (
            "internal_subnet",
            input.internal_subnet.iter().collect::<Vec<_>>(),
        ),
        ("forward_only", input.forward_only.iter().collect()),
        ("sources", input.sources.iter().collect()),
    ];
    for (field, nets) in nets {
        for (index, net) in nets.into_iter().enumerate() {
            if matches!(net, IpNet::V4(_)) != wanted_v4 {
                return Err(wrong(&format!("{field}[{index}]"), net.to_string()));
            }
        }
    }
    Ok(())
}

// ===== rendering =====

impl NftTable {
    /// The table in `nft -f` syntax, as `veg gateway show` prints it and `nft list` reads back.
    pub fn render(&self) -> String {
        let (family, address) = match self.family {
            Family::V4 => ("ip", "ip"),
            Family::V6 => ("ip6", "ip6"),
        };
        let mut out = String::new();
        let _ = writeln!(out, "table {family} {NFT_TABLE} {{");
        let _ = writeln!(out, "\tchain prerouting {{");
        let _ = writeln!(
            out,
            "\t\ttype nat hook prerouting priority dstnat; policy accept;"
        );
        let _ = writeln!(
            out,
            "\t\tiifname \"{}\" meta mark set meta mark | {MARK:#x}",
            self.internal_interface
        );
        let _ = writeln!(out, "\t}}");
        let _ = writeln!(out, "\tchain postrouting {{");
        let _ = writeln!(
            out,
            "\t\ttype nat hook postrouting priority srcnat; policy accept;"
        );
        if !self.forward_only.is_empty() {
            let set = self
                .forward_only
                .iter()
                .map(IpNet::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(out, "\t\t{address} daddr {{ {set} }} return");
            let _ = writeln!(out, "\t\t{address} saddr {{ {set} }} return");
        }
        let _ = writeln!(
            out,
            "\t\tmeta mark & {MARK:#x} == {MARK:#x} oifname \"{}\" meta mark set meta mark & {:#x} counter masquerade fully-random",
            self.external_interface, !MARK
        );
        let _ = writeln!(out, "\t}}");
        for (chain, hook, priority, direction) in [
            ("count-egress", "postrouting", "srcnat + 1", "oifname"),
            ("count-ingress", "prerouting", "mangle", "iifname"),
        ] {
            let _ = writeln!(out, "\tchain {chain} {{");
            let _ = writeln!(
                out,
                "\t\ttype filter hook {hook} priority {priority}; policy accept;"
            );
            let _ = writeln!(
                out,
                "\t\t{direction} \"{}\" ct status snat counter",
                self.external_interface
            );
            let _ = writeln!(out, "\t}}");
        }
        let _ = writeln!(out, "}}");
        out
    }
}

impl Plan {
    /// The plan in readable form (`ip rule`/`ip route` and `nft` syntax).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for sysctl in &self.sysctls {
            let _ = writeln!(out, "sysctl {}={}", sysctl.key, sysctl.value);
        }
        for rule in &self.rules {
            let from = rule
                .from
                .map_or_else(|| "all".to_owned(), |from| from.to_string());
            let _ = writeln!(
                out,
                "rule {}: from {from} iif {} lookup {}",
                rule.priority, rule.iif, rule.table
            );
        }
        for route in &self.routes {
            let table = if route.table == MAIN_TABLE {
                "main".to_owned()
            } else {
                route.table.to_string()
            };
            let via = route
                .gateway
                .map(|gateway| format!(" via {gateway}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "route table {table}: {}{via} dev {}",
                route.destination, route.device
            );
        }
        for table in &self.nft {
            out.push_str(&table.render());
        }
        out
    }
}

#[cfg(test)]
mod tests;
