//! Planner cases: v4 as the product description shows it, v6, dual-stack, forward-only
//! sources, sources inside the internal subnet, a family without an external gateway, and
//! inputs that must be refused.

use std::net::IpAddr;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap_or_else(|_| IpNet::from(ip(text)))
}

/// The product description's gateway, in documentation addresses: internal 198.18.0.12 in
/// 198.18.0.0/16, external gateway 198.51.100.1, a SNAT subnet 198.19.0.0/16 and a
/// forward-only block 198.20.0.0/16, BFD peer 203.0.113.254.
fn v4() -> FamilyConfig {
    FamilyConfig {
        internal_address: ip("198.18.0.12"),
        internal_subnet: Some(net("198.18.0.0/16")),
        internal_gateway: ip("198.18.0.1"),
        external_gateway: Some(ip("198.51.100.1")),
        forward_only: vec![net("198.20.0.0/16")],
        sources: vec![net("198.19.0.0/16"), net("198.20.0.0/16")],
        bfd_peers: vec![ip("203.0.113.254")],
        bfd_peers_routed: false,
    }
}

fn v6() -> FamilyConfig {
    FamilyConfig {
        internal_address: ip("2001:db8:16::12"),
        internal_subnet: Some(net("2001:db8:16::/64")),
        internal_gateway: ip("2001:db8:16::1"),
        external_gateway: Some(ip("2001:db8:100::1")),
        forward_only: vec![],
        sources: vec![net("2001:db8:17::/64")],
        bfd_peers: vec![],
        bfd_peers_routed: false,
    }
}

fn config(ipv4: Option<FamilyConfig>, ipv6: Option<FamilyConfig>) -> GatewayConfig {
    GatewayConfig {
        internal_interface: "eth0".into(),
        external_interface: "net1".into(),
        ipv4,
        ipv6,
    }
}

#[test]
fn ipv4_matches_the_product_description() -> Result<(), PlanError> {
    let plan = plan(&config(Some(v4()), None))?;
    assert_eq!(
        plan.render(),
        "sysctl net.ipv4.conf.all.rp_filter=0
sysctl net.ipv4.conf.eth0.rp_filter=0
sysctl net.ipv4.ip_forward=1
rule 1002: from all iif net1 lookup 1000
rule 1003: from 198.18.0.12/32 iif lo lookup 1000
route table main: 0.0.0.0/0 via 198.51.100.1 dev net1
route table main: 198.19.0.0/16 via 198.18.0.1 dev eth0
route table main: 198.20.0.0/16 via 198.18.0.1 dev eth0
route table main: 203.0.113.254/32 via 198.18.0.1 dev eth0
route table 1000: 0.0.0.0/0 via 198.18.0.1 dev eth0
route table 1000: 198.18.0.0/16 dev eth0
table ip veg {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"eth0\" meta mark set meta mark | 0x4000
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tip daddr { 198.20.0.0/16 } return
\t\tip saddr { 198.20.0.0/16 } return
\t\tmeta mark & 0x4000 == 0x4000 oifname \"net1\" meta mark set meta mark & 0xffffbfff counter masquerade fully-random
\t}
\tchain count-egress {
\t\ttype filter hook postrouting priority srcnat + 1; policy accept;
\t\toifname \"net1\" ct status snat counter
\t}
\tchain count-ingress {
\t\ttype filter hook prerouting priority mangle; policy accept;
\t\tiifname \"net1\" ct status snat counter
\t}
}
"
    );
    Ok(())
}

#[test]
fn ipv6_only() -> Result<(), PlanError> {
    let plan = plan(&config(None, Some(v6())))?;
    assert_eq!(
        plan.sysctls,
        [Sysctl {
            key: "net.ipv6.conf.all.forwarding".into(),
            value: "1".into()
        }]
    );
    assert!(plan.rules.iter().all(|rule| rule.family == Family::V6));
    assert_eq!(plan.nft.len(), 1);
    let table = plan.nft[0].render();
    assert!(table.starts_with("table ip6 veg {"), "{table}");
    assert!(
        !table.contains("return"),
        "no forward-only sources: {table}"
    );
    assert!(
        plan.routes
            .iter()
            .any(|r| r.destination == net("::/0") && r.device == "net1")
    );
    Ok(())
}

#[test]
fn dual_stack_plans_both_families() -> Result<(), PlanError> {
    let plan = plan(&config(Some(v4()), Some(v6())))?;
    assert_eq!(
        plan.nft.iter().map(|t| t.family).collect::<Vec<_>>(),
        [Family::V4, Family::V6]
    );
    assert_eq!(plan.rules.len(), 4);
    let defaults = plan
        .routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 0)
        .count();
    assert_eq!(defaults, 4, "table 1000 and main, per family");
    Ok(())
}

#[test]
fn sources_inside_the_internal_subnet_get_no_route() -> Result<(), PlanError> {
    let mut family = v4();
    family.sources.push(net("198.18.16.0/20"));
    family.sources.push(net("198.18.0.0/16"));
    family.sources.push(net("198.19.5.7/32"));
    let plan = plan(&config(Some(family), None))?;
    let main: Vec<String> = plan
        .routes
        .iter()
        .filter(|r| r.table == MAIN_TABLE)
        .map(|r| r.destination.to_string())
        .collect();
    assert!(!main.iter().any(|d| d.starts_with("198.18.")), "{main:?}");
    assert!(main.contains(&"198.19.5.7/32".to_owned()), "{main:?}");
    Ok(())
}

#[test]
fn host_bits_are_cleared_and_duplicates_merged() -> Result<(), PlanError> {
    let mut family = v4();
    family.sources = vec![net("198.19.7.7/16"), net("198.19.0.0/16")];
    family.forward_only = vec![net("198.20.1.1/16"), net("198.20.0.0/16")];
    let plan = plan(&config(Some(family), None))?;
    assert_eq!(plan.nft[0].forward_only, [net("198.20.0.0/16")]);
    let to_19 = plan
        .routes
        .iter()
        .filter(|r| r.destination == net("198.19.0.0/16"))
        .count();
    assert_eq!(to_19, 1);
    Ok(())
}

#[test]
fn a_family_without_an_external_gateway_gets_no_default_route_and_no_snat() -> Result<(), PlanError>
{
    // Kube-OVN's dual-stack internal / IPv4-only external case.
    let mut six = v6();
    six.external_gateway = None;
    let plan = plan(&config(Some(v4()), Some(six)))?;
    assert_eq!(
        plan.nft.iter().map(|t| t.family).collect::<Vec<_>>(),
        [Family::V4]
    );
    assert!(
        !plan
            .routes
            .iter()
            .any(|r| r.table == MAIN_TABLE && r.destination == net("::/0"))
    );
    // Replies for IPv6 sources still find their way back.
    assert!(
        plan.routes
            .iter()
            .any(|r| r.table == INTERNAL_TABLE && r.destination == net("::/0"))
    );
    Ok(())
}

#[test]
fn refuses_wrong_families_and_bad_interfaces() {
    let mut family = v4();
    family.internal_gateway = ip("2001:db8::1");
    assert_eq!(
        plan(&config(Some(family), None)).map(|_| ()),
        Err(PlanError::WrongFamily {
            field: "ipv4.internal_gateway".into(),
            value: "2001:db8::1".into(),
            family: "IPv4"
        })
    );
    let mut family = v6();
    family.forward_only = vec![net("198.20.0.0/16")];
    let error = plan(&config(None, Some(family)))
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        error.as_deref(),
        Some("ipv6.forward_only[0]: 198.20.0.0/16 is not an IPv6 address")
    );
    let mut family = v4();
    family.bfd_peers = vec![ip("2001:db8::254")];
    assert!(
        matches!(plan(&config(Some(family), None)), Err(PlanError::WrongFamily { ref field, .. }) if field == "ipv4.bfd_peers[0]")
    );

    let mut bad = config(Some(v4()), None);
    bad.external_interface = "a-name-longer-than-15".into();
    assert!(matches!(
        plan(&bad),
        Err(PlanError::BadInterface {
            field: "external_interface",
            ..
        })
    ));
    bad.external_interface = "eth0".into();
    assert_eq!(
        plan(&bad).map(|_| ()),
        Err(PlanError::SameInterface {
            name: "eth0".into()
        })
    );
    assert_eq!(
        plan(&config(None, None)).map(|_| ()),
        Err(PlanError::NoFamily)
    );
}

/// The rendered tables are valid nft syntax (`nft -c` checks without applying anything).
#[test]
fn rendered_tables_pass_nft_check() -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|path| std::path::Path::new(path).exists());
    let Some(nft) = nft else {
        veg_testkit::skip_or_fail("nft is missing (scripts/install-deps.sh installs nftables)");
        return Ok(());
    };
    let plan = plan(&config(Some(v4()), Some(v6())))?;
    for table in &plan.nft {
        let mut child = Command::new(nft)
            .args(["-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(table.render().as_bytes())?;
        let output = child.wait_with_output()?;
        assert!(
            output.status.success(),
            "nft -c refused:\n{}\n{}",
            table.render(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A BFD peer on the internal subnet (`veg monitor` next to the gateways) is on-link: no route
/// through the router, which would cost its packets a hop and fail GTSM.
#[test]
fn an_on_link_bfd_peer_gets_no_route() -> Result<(), PlanError> {
    let mut family = v4();
    family.bfd_peers = vec![ip("198.18.0.253"), ip("203.0.113.254")];
    let plan = plan(&config(Some(family), None))?;
    let peers: Vec<String> = plan
        .routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 32)
        .map(|r| r.destination.to_string())
        .collect();
    assert_eq!(peers, ["203.0.113.254/32"]);
    // A router port (native mode: OVN's `bfd@<vpc>`) is never on the switch: both routed.
    let mut family = v4();
    family.bfd_peers = vec![ip("198.18.0.253"), ip("203.0.113.254")];
    family.bfd_peers_routed = true;
    let routed_plan = super::plan(&config(Some(family), None))?;
    let routed: Vec<String> = routed_plan
        .routes
        .iter()
        .filter(|r| r.destination.prefix_len() == 32)
        .map(|r| format!("{} via {:?} table {}", r.destination, r.gateway, r.table))
        .collect();
    // In the internal table too, where bfdd's replies (from the internal address) look: its
    // on-link subnet route would otherwise send them straight to an address nobody holds.
    assert_eq!(
        routed,
        [
            "198.18.0.253/32 via Some(198.18.0.1) table 254",
            "203.0.113.254/32 via Some(198.18.0.1) table 254",
            "198.18.0.253/32 via Some(198.18.0.1) table 1000"
        ]
    );
    Ok(())
}
