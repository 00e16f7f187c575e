//! From the agent's flags (as the controller renders them) and the internal leg's addresses to
//! a [`GatewayConfig`] (pure). Addresses are given as flat lists; the family of each entry
//! says where it belongs.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::plan::{FamilyConfig, GatewayConfig};

/// The agent's inputs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentInput {
    /// The leg in the VPC.
    pub internal_interface: String,
    /// The leg outside.
    pub external_interface: String,
    /// The VPC router's address on the internal subnet, per family (one each at most).
    pub internal_gateways: Vec<IpAddr>,
    /// The external network's gateway, per family.
    pub external_gateways: Vec<IpAddr>,
    /// Sources forwarded without SNAT.
    pub forward_only: Vec<IpNet>,
    /// Policy sources (their return routes point into the VPC).
    pub sources: Vec<IpNet>,
    /// The VPC's BFD port addresses.
    pub bfd_peers: Vec<IpAddr>,
    /// The peers are router ports (native mode): routed through the internal gateway even
    /// when inside the internal subnet.
    pub bfd_peers_routed: bool,
}

/// An input that cannot make a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No internal gateway at all.
    #[error("no internal gateway was given (--internal-gateway)")]
    NoInternalGateway,
    /// Two internal gateways of one family.
    #[error("two internal gateways of one family: {first} and {second}")]
    TwoGateways {
        flag: &'static str,
        first: IpAddr,
        second: IpAddr,
    },
    /// An entry of a family the gateway has no internal gateway for.
    #[error("{flag} {value}: the gateway has no {family} internal gateway (--internal-gateway)")]
    FamilyMissing {
        flag: &'static str,
        value: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// The internal leg has no address in the internal gateway's subnet.
    #[error(
        "interface {interface:?} has no address in the subnet of internal gateway {gateway} (its addresses: {found})"
    )]
    NoInternalAddress {
        interface: String,
        gateway: IpAddr,
        /// The addresses found.
        found: String,
    },
}

fn family_name(v4: bool) -> &'static str {
    if v4 { "IPv4" } else { "IPv6" }
}

fn one_per_family(
    flag: &'static str,
    addresses: &[IpAddr],
    v4: bool,
) -> Result<Option<IpAddr>, ConfigError> {
    let mut found: Option<IpAddr> = None;
    for address in addresses.iter().filter(|a| a.is_ipv4() == v4) {
        if let Some(first) = found {
            return Err(ConfigError::TwoGateways {
                flag,
                first,
                second: *address,
            });
        }
        found = Some(*address);
    }
    Ok(found)
}

/// The interface name that asks for discovery.
pub const AUTO: &str = "auto";

/// The interface with a connected subnet that contains one of `gateways` (how Kube-OVN finds
/// a gateway Pod's legs), from every interface's addresses.
pub fn discover_interface<'a>(
    interfaces: &'a [(String, Vec<IpNet>)],
    gateways: &[IpAddr],
) -> Option<&'a str> {
    interfaces
        .iter()
        .find(|(_, addresses)| {
            addresses
                .iter()
                .any(|net| gateways.iter().any(|gateway| net.contains(gateway)))
        })
        .map(|(name, _)| name.as_str())
}

/// Builds the configuration; `internal_addresses` are the internal leg's addresses.
pub fn build(
    input: &AgentInput,
    internal_addresses: &[IpNet],
) -> Result<GatewayConfig, ConfigError> {
    if input.internal_gateways.is_empty() {
        return Err(ConfigError::NoInternalGateway);
    }
    let mut config = GatewayConfig {
        internal_interface: input.internal_interface.clone(),
        external_interface: input.external_interface.clone(),
        ipv4: None,
        ipv6: None,
    };
    for v4 in [true, false] {
        let family = family_name(v4);
        let Some(internal_gateway) =
            one_per_family("--internal-gateway", &input.internal_gateways, v4)?
        else {
            let stray = [
                (
                    "--external-gateway",
                    input
                        .external_gateways
                        .iter()
                        .find(|a| a.is_ipv4() == v4)
                        .map(ToString::to_string),
                ),
                (
                    "--forward-only",
                    input
                        .forward_only
                        .iter()
                        .find(|n| matches!(n, IpNet::V4(_)) == v4)
                        .map(ToString::to_string),
                ),
                (
                    "--source",
                    input
                        .sources
                        .iter()
                        .find(|n| matches!(n, IpNet::V4(_)) == v4)
                        .map(ToString::to_string),
                ),
                (
                    "--bfd-peer",
                    input
                        .bfd_peers
                        .iter()
                        .find(|a| a.is_ipv4() == v4)
                        .map(ToString::to_string),
                ),
            ];
            if let Some((flag, Some(value))) = stray.into_iter().find(|(_, value)| value.is_some())
            {
                return Err(ConfigError::FamilyMissing {
                    flag,
                    value,
                    family,
                });
            }
            continue;
        };
        let address = internal_addresses
            .iter()
            .find(|net| net.contains(&internal_gateway))
            .ok_or_else(|| ConfigError::NoInternalAddress {
                interface: input.internal_interface.clone(),
                gateway: internal_gateway,
                found: internal_addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let same = |net: &&IpNet| matches!(net, IpNet::V4(_)) == v4;
        let family_config = FamilyConfig {
            internal_address: address.addr(),
            internal_subnet: Some(address.trunc()),
            internal_gateway,
            external_gateway: one_per_family("--external-gateway", &input.external_gateways, v4)?,
            forward_only: input.forward_only.iter().filter(same).copied().collect(),
            sources: input.sources.iter().filter(same).copied().collect(),
            bfd_peers: input
                .bfd_peers
                .iter()
                .filter(|a| a.is_ipv4() == v4)
                .copied()
                .collect(),
            bfd_peers_routed: input.bfd_peers_routed,
        };
        if v4 {
            config.ipv4 = Some(family_config);
        } else {
            config.ipv6 = Some(family_config);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse()
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap_or_else(|_| IpNet::from(ip(text)))
    }

    fn input() -> AgentInput {
        AgentInput {
            internal_interface: "eth0".into(),
            external_interface: "net1".into(),
            internal_gateways: vec![ip("198.18.0.1"), ip("2001:db8:16::1")],
            external_gateways: vec![ip("198.51.100.1")],
            forward_only: vec![net("198.20.0.0/16")],
            sources: vec![net("198.19.0.0/16"), net("2001:db8:17::/64")],
            bfd_peers: vec![ip("203.0.113.254")],
            bfd_peers_routed: false,
        }
    }

    #[test]
    fn dual_stack_internal_with_v4_external_only() -> Result<(), ConfigError> {
        let addresses = [
            net("198.18.0.12/16"),
            net("2001:db8:16::12/64"),
            net("fe80::1/64"),
        ];
        let config = build(&input(), &addresses)?;
        let v4 = config.ipv4.as_ref();
        assert_eq!(v4.map(|f| f.internal_address), Some(ip("198.18.0.12")));
        assert_eq!(
            v4.and_then(|f| f.internal_subnet),
            Some(net("198.18.0.0/16"))
        );
        assert_eq!(
            v4.map(|f| f.sources.clone()),
            Some(vec![net("198.19.0.0/16")])
        );
        let v6 = config.ipv6.as_ref();
        assert_eq!(v6.map(|f| f.internal_address), Some(ip("2001:db8:16::12")));
        assert_eq!(v6.and_then(|f| f.external_gateway), None);
        assert_eq!(v6.map(|f| f.bfd_peers.len()), Some(0));
        Ok(())
    }

    #[test]
    fn legs_are_discovered_from_the_gateways_subnets() {
        let interfaces = vec![
            ("lo".to_owned(), vec![net("127.0.0.1/8")]),
            (
                "eth0".to_owned(),
                vec![net("198.18.0.12/16"), net("fe80::1/64")],
            ),
            (
                "net1".to_owned(),
                vec![net("198.51.100.11/24"), net("2001:db8:100::11/64")],
            ),
        ];
        assert_eq!(
            discover_interface(&interfaces, &[ip("2001:db8:100::1")]),
            Some("net1")
        );
        assert_eq!(
            discover_interface(&interfaces, &[ip("198.18.0.1")]),
            Some("eth0")
        );
        assert_eq!(discover_interface(&interfaces, &[ip("203.0.113.1")]), None);
    }

    #[test]
    fn wrong_inputs_name_the_flag() {
        let addresses = [net("198.18.0.12/16"), net("2001:db8:16::12/64")];
        let v4_only = AgentInput {
            internal_gateways: vec![ip("198.18.0.1")],
            ..input()
        };
        assert_eq!(
            build(&v4_only, &addresses),
            Err(ConfigError::FamilyMissing {
                flag: "--source",
                value: "2001:db8:17::/64".into(),
                family: "IPv6"
            })
        );
        let two = AgentInput {
            internal_gateways: vec![ip("198.18.0.1"), ip("198.18.0.2")],
            ..input()
        };
        assert!(matches!(
            build(&two, &addresses),
            Err(ConfigError::TwoGateways { .. })
        ));
        let err = build(&input(), &[net("198.18.0.12/16")]);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(
                "interface \"eth0\" has no address in the subnet of internal gateway \
                 2001:db8:16::1 (its addresses: 198.18.0.12/16)"
                    .to_owned()
            )
        );
    }
}
