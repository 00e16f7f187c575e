//! The diff against kernel states: empty, converged, drifted, and foreign routes left alone.

use super::*;
use crate::plan::{FamilyConfig, GatewayConfig, PlanError, plan};

fn config() -> GatewayConfig {
    let ip = |text: &str| text.parse::<IpAddr>().ok();
    let net = |text: &str| text.parse::<IpNet>().ok();
    GatewayConfig {
        internal_interface: "eth0".into(),
        external_interface: "net1".into(),
        ipv4: ip("198.18.0.12")
            .zip(ip("198.18.0.1"))
            .map(|(address, gateway)| FamilyConfig {
                internal_address: address,
                internal_subnet: net("198.18.0.0/16"),
                internal_gateway: gateway,
                external_gateway: ip("198.51.100.1"),
                forward_only: net("198.20.0.0/16").into_iter().collect(),
                sources: net("198.19.0.0/16").into_iter().collect(),
                bfd_peers: vec![],
                bfd_peers_routed: false,
            }),
        ipv6: None,
    }
}

/// The kernel state right after a successful apply of `plan`.
fn converged(plan: &Plan) -> Observed {
    Observed {
        sysctls: plan
            .sysctls
            .iter()
            .map(|s| (s.key.clone(), Some(format!("{}\n", s.value))))
            .collect(),
        rules: plan.rules.clone(),
        routes: plan.routes.iter().map(ObservedRoute::from_plan).collect(),
        nft: plan
            .nft
            .iter()
            .map(|table| (table.family, nft::planned_shape(table)))
            .collect(),
    }
}

fn pod_default_route() -> Option<ObservedRoute> {
    Some(ObservedRoute {
        table: MAIN_TABLE,
        destination: "0.0.0.0/0".parse().ok()?,
        gateway: "198.18.0.1".parse().ok(),
        device: Some("eth0".into()),
        protocol: 3,
        metric: 0,
        scope: 0,
    })
}

#[test]
fn an_empty_namespace_needs_everything_and_the_pod_default_route_is_replaced()
-> Result<(), PlanError> {
    let plan = plan(&config())?;
    let observed = Observed {
        routes: pod_default_route().into_iter().collect(),
        ..Observed::default()
    };
    let changes = diff(&plan, &observed);
    let text: Vec<String> = changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "sysctl net.ipv4.conf.all.rp_filter: (missing) -> 0",
            "sysctl net.ipv4.conf.eth0.rp_filter: (missing) -> 0",
            "sysctl net.ipv4.ip_forward: (missing) -> 1",
            "replace route 0.0.0.0/0 table main via 198.18.0.1 dev eth0 proto 3 metric 0 with \
             0.0.0.0/0 table main via 198.51.100.1 dev net1 proto 76 metric 0",
            "add route 198.19.0.0/16 table main via 198.18.0.1 dev eth0 proto 76 metric 0",
            "add route 198.20.0.0/16 table main via 198.18.0.1 dev eth0 proto 76 metric 0",
            "add route 0.0.0.0/0 table 1000 via 198.18.0.1 dev eth0 proto 76 metric 0",
            "add route 198.18.0.0/16 table 1000 dev eth0 proto 76 metric 0",
            "add rule -4 1002: from all iif net1 lookup 1000",
            "add rule -4 1003: from 198.18.0.12/32 iif lo lookup 1000",
            "replace nftables table veg (ip)",
        ]
    );
    Ok(())
}

#[test]
fn a_converged_namespace_needs_nothing() -> Result<(), PlanError> {
    let plan = plan(&config())?;
    assert_eq!(diff(&plan, &converged(&plan)), []);
    Ok(())
}

#[test]
fn drift_is_found_and_foreign_state_is_left_alone() -> Result<(), PlanError> {
    let plan = plan(&config())?;
    let mut observed = converged(&plan);
    // Drift: a rule deleted, the nft table gone, a stale veg route, a stale 1000 route.
    observed
        .rules
        .retain(|rule| rule.priority != RULE_FROM_SELF);
    observed.nft.clear();
    let stale = ObservedRoute {
        destination: "198.21.0.0/16".parse().map_err(|_| PlanError::NoFamily)?,
        ..ObservedRoute::from_plan(&plan.routes[1])
    };
    observed.routes.push(stale.clone());
    // Foreign: a connected route and a static route of someone else.
    let connected = ObservedRoute {
        table: MAIN_TABLE,
        destination: "198.18.0.0/16".parse().map_err(|_| PlanError::NoFamily)?,
        gateway: None,
        device: Some("eth0".into()),
        protocol: 2,
        metric: 0,
        scope: 253,
    };
    let foreign = ObservedRoute {
        destination: "198.22.0.0/16".parse().map_err(|_| PlanError::NoFamily)?,
        protocol: 4,
        ..stale.clone()
    };
    observed.routes.extend([connected, foreign]);
    let changes = diff(&plan, &observed);
    assert_eq!(
        changes,
        [
            Change::AddRule(plan.rules[1].clone()),
            Change::DeleteRoute(stale),
            Change::Nft {
                families: vec![Family::V4]
            },
        ]
    );
    Ok(())
}

#[test]
fn a_table_of_a_family_without_snat_is_removed_and_inverses_undo() -> Result<(), PlanError> {
    let plan = plan(&config())?;
    let mut observed = converged(&plan);
    let v4_shape = observed.nft.get(&Family::V4).cloned().unwrap_or_default();
    observed.nft.insert(Family::V6, v4_shape);
    assert_eq!(
        diff(&plan, &observed),
        [Change::Nft {
            families: vec![Family::V6]
        }]
    );
    let replace = Change::ReplaceRoute {
        from: ObservedRoute::from_plan(&plan.routes[0]),
        to: ObservedRoute::from_plan(&plan.routes[1]),
    };
    assert_eq!(
        replace.inverse().and_then(|inverse| inverse.inverse()),
        Some(replace)
    );
    let sysctl = Change::Sysctl {
        key: "net.ipv4.ip_forward".into(),
        from: None,
        to: "1".into(),
    };
    assert_eq!(
        sysctl.inverse(),
        None,
        "a missing sysctl cannot be restored"
    );
    Ok(())
}
