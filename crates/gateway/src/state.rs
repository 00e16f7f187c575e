//! What the kernel holds, as far as veg cares, and the changes that turn it into the plan (pure).
//!
//! Ownership: the rules at veg's two priorities, every route of table 1000, main-table routes
//! tagged with veg's route protocol, the `veg` nftables tables. A planned main-table route
//! replaces whatever route has the same destination and metric (the Pod's own default route
//! among them), so nothing else in the namespace is touched.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::nft::{self, TableShape};
use crate::plan::{
    Family, INTERNAL_TABLE, MAIN_TABLE, Plan, RULE_FROM_EXTERNAL, RULE_FROM_SELF, RoutePlan,
    RulePlan,
};

/// The route protocol veg tags its routes with (`ip route` prints `proto 76`), so that a
/// route veg no longer plans is found and removed. Unassigned in `/etc/iproute2/rt_protos`.
pub const ROUTE_PROTOCOL: u8 = 76;

/// The metric a route gets when none is given: 0 for IPv4, 1024 for IPv6.
pub fn default_metric(destination: &IpNet) -> u32 {
    match destination {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1024,
    }
}

/// A route as read from the kernel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObservedRoute {
    pub table: u32,
    pub destination: IpNet,
    /// Next hop, if any (connected routes have none).
    pub gateway: Option<IpAddr>,
    /// Outgoing interface name, if any.
    pub device: Option<String>,
    /// Route protocol (`proto`).
    pub protocol: u8,
    pub metric: u32,
    /// Scope (0 universe, 253 link).
    pub scope: u8,
}

impl ObservedRoute {
    /// The route a plan entry becomes in the kernel.
    pub fn from_plan(route: &RoutePlan) -> Self {
        Self {
            table: route.table,
            destination: route.destination,
            gateway: route.gateway,
            device: Some(route.device.clone()),
            protocol: ROUTE_PROTOCOL,
            metric: default_metric(&route.destination),
            // The kernel keeps link scope for an IPv4 route without a next hop; IPv6 routes
            // are always reported with universe scope.
            scope: match (route.gateway, route.destination) {
                (None, IpNet::V4(_)) => 253,
                _ => 0,
            },
        }
    }

    fn key(&self) -> (u32, IpNet, u32) {
        (self.table, self.destination, self.metric)
    }
}

impl fmt::Display for ObservedRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = if self.table == MAIN_TABLE {
            "main".to_owned()
        } else {
            self.table.to_string()
        };
        write!(f, "{} table {table}", self.destination)?;
        if let Some(gateway) = self.gateway {
            write!(f, " via {gateway}")?;
        }
        if let Some(device) = &self.device {
            write!(f, " dev {device}")?;
        }
        write!(f, " proto {} metric {}", self.protocol, self.metric)
    }
}

impl fmt::Display for RulePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = self
            .from
            .map_or_else(|| "all".to_owned(), |from| from.to_string());
        let family = match self.family {
            Family::V4 => "-4",
            Family::V6 => "-6",
        };
        write!(
            f,
            "{family} {}: from {from} iif {} lookup {}",
            self.priority, self.iif, self.table
        )
    }
}

/// What the kernel holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Current values of the planned sysctls (`None` when the file is missing).
    pub sysctls: BTreeMap<String, Option<String>>,
    /// Rules at veg's priorities (in both families).
    pub rules: Vec<RulePlan>,
    /// Routes of table 1000 and of the main table.
    pub routes: Vec<ObservedRoute>,
    /// veg's nftables table per family.
    pub nft: BTreeMap<Family, TableShape>,
}

/// One change to the kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A sysctl has the wrong value.
    Sysctl {
        key: String,
        /// Current value.
        from: Option<String>,
        /// Planned value.
        to: String,
    },
    AddRule(RulePlan),
    DeleteRule(RulePlan),
    AddRoute(ObservedRoute),
    /// Replace a route by another with the same destination and metric.
    ReplaceRoute {
        /// What is there.
        from: ObservedRoute,
        /// What must be there.
        to: ObservedRoute,
    },
    DeleteRoute(ObservedRoute),
    /// Replace veg's nftables tables (the families listed differ).
    Nft {
        /// Families whose table is missing, extra or different.
        families: Vec<Family>,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Sysctl { key, from, to } => write!(
                f,
                "sysctl {key}: {} -> {to}",
                from.as_deref().unwrap_or("(missing)")
            ),
            Change::AddRule(rule) => write!(f, "add rule {rule}"),
            Change::DeleteRule(rule) => write!(f, "delete rule {rule}"),
            Change::AddRoute(route) => write!(f, "add route {route}"),
            Change::ReplaceRoute { from, to } => write!(f, "replace route {from} with {to}"),
            Change::DeleteRoute(route) => write!(f, "delete route {route}"),
            Change::Nft { families } => {
                let names: Vec<&str> = families.iter().map(|f| nft::family_keyword(*f)).collect();
                write!(f, "replace nftables table veg ({})", names.join(", "))
            }
        }
    }
}

impl Change {
    /// The change that undoes this one (nftables batches are atomic and never undone).
    pub fn inverse(&self) -> Option<Change> {
        Some(match self {
            Change::Sysctl { key, from, to } => Change::Sysctl {
                key: key.clone(),
                from: Some(to.clone()),
                to: from.clone()?,
            },
            Change::AddRule(rule) => Change::DeleteRule(rule.clone()),
            Change::DeleteRule(rule) => Change::AddRule(rule.clone()),
            Change::AddRoute(route) => Change::DeleteRoute(route.clone()),
            Change::ReplaceRoute { from, to } => Change::ReplaceRoute {
                from: to.clone(),
                to: from.clone(),
            },
            Change::DeleteRoute(route) => Change::AddRoute(route.clone()),
            Change::Nft { .. } => return None,
        })
    }
}

/// Whether a rule belongs to veg.
pub fn is_owned_rule(rule: &RulePlan) -> bool {
    rule.priority == RULE_FROM_EXTERNAL || rule.priority == RULE_FROM_SELF
}

/// Whether a route belongs to veg (when the plan no longer wants it, it is deleted).
pub fn is_owned_route(route: &ObservedRoute) -> bool {
    route.table == INTERNAL_TABLE || (route.table == MAIN_TABLE && route.protocol == ROUTE_PROTOCOL)
}

/// The changes, in the order they are applied: sysctls, routes and rules that must exist,
/// then what must go, then nftables.
pub fn diff(plan: &Plan, observed: &Observed) -> Vec<Change> {
    let mut changes = Vec::new();
    for sysctl in &plan.sysctls {
        let current = observed.sysctls.get(&sysctl.key).cloned().flatten();
        if current.as_deref().map(str::trim) != Some(sysctl.value.as_str()) {
            changes.push(Change::Sysctl {
                key: sysctl.key.clone(),
                from: current.map(|value| value.trim().to_owned()),
                to: sysctl.value.clone(),
            });
        }
    }

    let planned_routes: Vec<ObservedRoute> =
        plan.routes.iter().map(ObservedRoute::from_plan).collect();
    for route in &planned_routes {
        match observed
            .routes
            .iter()
            .find(|seen| seen.key() == route.key())
        {
            None => changes.push(Change::AddRoute(route.clone())),
            Some(seen) if seen != route => changes.push(Change::ReplaceRoute {
                from: seen.clone(),
                to: route.clone(),
            }),
            Some(_) => {}
        }
    }
    for rule in &plan.rules {
        if !observed.rules.contains(rule) {
            changes.push(Change::AddRule(rule.clone()));
        }
    }
    for rule in &observed.rules {
        if is_owned_rule(rule) && !plan.rules.contains(rule) {
            changes.push(Change::DeleteRule(rule.clone()));
        }
    }
    for route in &observed.routes {
        let planned = planned_routes.iter().any(|p| p.key() == route.key());
        if is_owned_route(route) && !planned {
            changes.push(Change::DeleteRoute(route.clone()));
        }
    }

    let mut families = Vec::new();
    for family in nft::FAMILIES {
        let planned = plan
            .nft
            .iter()
            .find(|table| table.family == family)
            .map(|table| nft::planned_shape(table).shape);
        let seen = observed.nft.get(&family).map(|shape| shape.shape.clone());
        if planned != seen {
            families.push(family);
        }
    }
    if !families.is_empty() {
        changes.push(Change::Nft { families });
    }
    changes
}

#[cfg(test)]
mod tests;
