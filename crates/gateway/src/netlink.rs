//! The kernel over rtnetlink: read links, rules, routes and neighbours; add, replace and delete
//! rules and routes. The only file with netlink calls.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, IpVersion, RouteMessageBuilder};

use crate::plan::{Family, INTERNAL_TABLE, MAIN_TABLE, RulePlan};
use crate::state::{ObservedRoute, is_owned_rule};

/// A netlink failure, with the kernel's errno when it sent one.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel refused the request.
    #[error("kernel: {0}")]
    Kernel(std::io::Error),
    /// The request could not be made (socket, decoding).
    #[error("{0}")]
    Request(rtnetlink::Error),
    /// A route the plan holds has no netlink form.
    #[error("route {route} cannot be expressed: {reason}")]
    Inexpressible {
        route: String,
        /// The builder's objection.
        reason: String,
    },
    /// A route names an interface this namespace lacks.
    #[error("interface {0:?} does not exist in this namespace")]
    NoInterface(String),
}

impl From<rtnetlink::Error> for NetlinkError {
    fn from(error: rtnetlink::Error) -> Self {
        match error {
            rtnetlink::Error::NetlinkError(message) => NetlinkError::Kernel(message.to_io()),
            other => NetlinkError::Request(other),
        }
    }
}

/// An interface as veg needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Administratively up and with carrier.
    pub carrier: bool,
    /// Received packets and bytes, sent packets and bytes.
    pub counters: [u64; 4],
}

/// Opens a netlink connection in the current network namespace and drives it on the runtime.
pub fn connect() -> std::io::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Every interface, by name.
pub async fn links(handle: &Handle) -> Result<BTreeMap<String, Link>, NetlinkError> {
    let mut stream = handle.link().get().execute();
    let mut links = BTreeMap::new();
    while let Some(message) = stream.try_next().await? {
        let link = link_of(&message);
        links.insert(link.name.clone(), link);
    }
    Ok(links)
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        carrier: message.header.flags.contains(LinkFlags::Up)
            && message.header.flags.contains(LinkFlags::LowerUp),
        ..Link::default()
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name.clone_from(name),
            LinkAttribute::Stats64(stats) => {
                link.counters = [
                    stats.rx_packets,
                    stats.rx_bytes,
                    stats.tx_packets,
                    stats.tx_bytes,
                ];
            }
            _ => {}
        }
    }
    link
}

// ===== rules =====

/// The rules at veg's priorities, in both families.
pub async fn owned_rules(handle: &Handle) -> Result<Vec<RulePlan>, NetlinkError> {
    let mut rules = Vec::new();
    for (version, family) in [(IpVersion::V4, Family::V4), (IpVersion::V6, Family::V6)] {
        let mut stream = handle.rule().get(version).execute();
        while let Some(message) = stream.try_next().await? {
            if let Some(rule) = rule_of(&message, family)
                && is_owned_rule(&rule)
            {
                rules.push(rule);
            }
        }
    }
    rules.sort();
    Ok(rules)
}

fn rule_of(message: &RuleMessage, family: Family) -> Option<RulePlan> {
    let mut rule = RulePlan {
        family,
        priority: 0,
        iif: String::new(),
        from: None,
        table: u32::from(message.header.table),
    };
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Priority(priority) => rule.priority = *priority,
            RuleAttribute::Iifname(name) => rule.iif.clone_from(name),
            RuleAttribute::Source(address) => {
                rule.from = IpNet::new(*address, message.header.src_len).ok();
            }
            RuleAttribute::Table(table) => rule.table = *table,
            _ => {}
        }
    }
    (message.header.action == RuleAction::ToTable).then_some(rule)
}

/// Adds a rule.
pub async fn add_rule(handle: &Handle, rule: &RulePlan) -> Result<(), NetlinkError> {
    let request = handle
        .rule()
        .add()
        .priority(rule.priority)
        .table_id(rule.table)
        .input_interface(rule.iif.clone())
        // Without an action the kernel stores the rule, but every lookup hitting it fails.
        .action(RuleAction::ToTable);
    match (rule.family, rule.from) {
        (Family::V4, Some(IpNet::V4(from))) => {
            request
                .v4()
                .source_prefix(from.addr(), from.prefix_len())
                .execute()
                .await?;
        }
        (Family::V4, _) => request.v4().execute().await?,
        (Family::V6, Some(IpNet::V6(from))) => {
            request
                .v6()
                .source_prefix(from.addr(), from.prefix_len())
                .execute()
                .await?;
        }
        (Family::V6, _) => request.v6().execute().await?,
    }
    Ok(())
}

/// Deletes the rule that matches `rule`.
pub async fn delete_rule(handle: &Handle, rule: &RulePlan) -> Result<(), NetlinkError> {
    let version = match rule.family {
        Family::V4 => IpVersion::V4,
        Family::V6 => IpVersion::V6,
    };
    let mut stream = handle.rule().get(version).execute();
    while let Some(message) = stream.try_next().await? {
        if rule_of(&message, rule.family).as_ref() == Some(rule) {
            handle.rule().del(message).execute().await?;
            return Ok(());
        }
    }
    Ok(())
}

// ===== routes =====

/// The routes of the main table and table 1000, unicast only, both families.
pub async fn routes(
    handle: &Handle,
    names: &BTreeMap<u32, String>,
) -> Result<Vec<ObservedRoute>, NetlinkError> {
    let mut routes = Vec::new();
    let queries = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for query in queries {
        let mut stream = handle.route().get(query).execute();
        while let Some(message) = stream.try_next().await? {
            if let Some(route) = route_of(&message, names)
                && (route.table == MAIN_TABLE || route.table == INTERNAL_TABLE)
            {
                routes.push(route);
            }
        }
    }
    routes.sort();
    Ok(routes)
}

fn address_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn route_of(message: &RouteMessage, names: &BTreeMap<u32, String>) -> Option<ObservedRoute> {
    if message.header.kind != RouteType::Unicast {
        return None;
    }
    let unspecified = match message.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut destination = unspecified;
    let mut route = ObservedRoute {
        table: u32::from(message.header.table),
        destination: IpNet::from(unspecified),
        gateway: None,
        device: None,
        protocol: u8::from(message.header.protocol),
        metric: 0,
        scope: u8::from(message.header.scope),
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => {
                destination = address_of(address)?;
            }
            RouteAttribute::Gateway(address) => route.gateway = address_of(address),
            RouteAttribute::Oif(index) => route.device = names.get(index).cloned(),
            RouteAttribute::Priority(metric) => route.metric = *metric,
            RouteAttribute::Table(table) => route.table = *table,
            _ => {}
        }
    }
    route.destination = IpNet::new(destination, message.header.destination_prefix_length).ok()?;
    Some(route)
}

fn route_message(
    route: &ObservedRoute,
    indexes: &BTreeMap<String, u32>,
) -> Result<RouteMessage, NetlinkError> {
    fn invalid(route: &ObservedRoute) -> impl Fn(&dyn std::fmt::Display) -> NetlinkError + '_ {
        move |error| NetlinkError::Inexpressible {
            route: route.to_string(),
            reason: error.to_string(),
        }
    }
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(route.destination.addr(), route.destination.prefix_len())
        .map_err(|error| invalid(route)(&error))?;
    if let Some(gateway) = route.gateway {
        builder = builder
            .gateway(gateway)
            .map_err(|error| invalid(route)(&error))?;
    }
    if let Some(device) = &route.device {
        let index = indexes
            .get(device)
            .ok_or_else(|| NetlinkError::NoInterface(device.clone()))?;
        builder = builder.output_interface(*index);
    }
    let builder = builder
        .table_id(route.table)
        .protocol(RouteProtocol::from(route.protocol))
        .scope(RouteScope::from(route.scope))
        .priority(route.metric);
    Ok(builder.build())
}

/// Adds a route, or replaces the one with the same destination and metric.
pub async fn put_route(
    handle: &Handle,
    route: &ObservedRoute,
    indexes: &BTreeMap<String, u32>,
) -> Result<(), NetlinkError> {
    let message = route_message(route, indexes)?;
    handle.route().add(message).replace().execute().await?;
    Ok(())
}

/// Deletes a route.
pub async fn delete_route(
    handle: &Handle,
    route: &ObservedRoute,
    indexes: &BTreeMap<String, u32>,
) -> Result<(), NetlinkError> {
    let message = route_message(route, indexes)?;
    handle.route().del(message).execute().await?;
    Ok(())
}

// ===== neighbours (uplink reachability) =====

/// The state of a neighbour entry, as the uplink check needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighbourEntry {
    /// No entry.
    Absent,
    /// Confirmed by a reply since the last probe.
    Reachable,
    /// Static (permanent or no ARP): never probed, counted as reachable.
    Static,
    /// Has a link-layer address, not confirmed lately.
    Unconfirmed,
    /// No link-layer address (incomplete or failed).
    Unresolved,
}

/// Reads the neighbour entry of `address` on interface `index`.
pub async fn neighbour(
    handle: &Handle,
    index: u32,
    address: IpAddr,
) -> Result<NeighbourEntry, NetlinkError> {
    let mut stream = handle.neighbours().get().execute();
    let wanted = match address {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    };
    let mut entry = NeighbourEntry::Absent;
    while let Some(message) = stream.try_next().await? {
        if message.header.ifindex == index
            && message
                .attributes
                .iter()
                .any(|a| matches!(a, NeighbourAttribute::Destination(d) if *d == wanted))
        {
            entry = entry_of(&message);
        }
    }
    Ok(entry)
}

fn entry_of(message: &NeighbourMessage) -> NeighbourEntry {
    match message.header.state {
        NeighbourState::Reachable => NeighbourEntry::Reachable,
        NeighbourState::Permanent | NeighbourState::Noarp => NeighbourEntry::Static,
        NeighbourState::Stale | NeighbourState::Delay | NeighbourState::Probe => {
            NeighbourEntry::Unconfirmed
        }
        _ => NeighbourEntry::Unresolved,
    }
}

/// Makes the kernel send a fresh ARP request / Neighbor Solicitation to `address` now: a
/// confirmed entry goes Stale then Probe (a unicast probe; a state change restarts the probe
/// timer at once); an entry whose last probe went unanswered, or none, is re-resolved by
/// broadcast ("use" on a fresh entry).
pub async fn probe_neighbour(
    handle: &Handle,
    index: u32,
    address: IpAddr,
    entry: NeighbourEntry,
) -> Result<(), NetlinkError> {
    match entry {
        NeighbourEntry::Static => {}
        // The last unicast probe went unanswered: the gateway may have a new MAC (a bridge's
        // address follows its ports, a router fails over). Resolve again by broadcast, or we
        // would keep asking a MAC that no longer answers.
        NeighbourEntry::Unconfirmed => {
            let mut request = handle.neighbours().add(index, address);
            let message = request.message_mut().clone();
            // Gone already is fine: resolution starts either way.
            let _ = handle.neighbours().del(message).execute().await;
            handle
                .neighbours()
                .add(index, address)
                .state(NeighbourState::None)
                .flags(NeighbourFlags::Use)
                .replace()
                .execute()
                .await?;
        }
        NeighbourEntry::Reachable => {
            for state in [NeighbourState::Stale, NeighbourState::Probe] {
                let mut request = handle.neighbours().add(index, address).state(state);
                // Keep the link-layer address: "change", not "replace" with a new one.
                request.message_mut().header.flags = NeighbourFlags::empty();
                request.replace().execute().await?;
            }
        }
        NeighbourEntry::Absent | NeighbourEntry::Unresolved => {
            handle
                .neighbours()
                .add(index, address)
                .state(NeighbourState::None)
                .flags(NeighbourFlags::Use)
                .replace()
                .execute()
                .await?;
        }
    }
    Ok(())
}

// ===== addresses and change notifications =====

/// The addresses of interface `index` (with their prefix lengths).
pub async fn addresses(handle: &Handle, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
    let mut stream = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut addresses = Vec::new();
    while let Some(message) = stream.try_next().await? {
        for attribute in &message.attributes {
            // `Local` is the interface's own address on point-to-point links; `Address` for
            // the rest (and the peer on point-to-point). Take `Address` when no `Local`.
            if let rtnetlink::packet_route::address::AddressAttribute::Address(address) = attribute
                && let Ok(net) = IpNet::new(*address, message.header.prefix_len)
            {
                addresses.push(net);
            }
        }
    }
    Ok(addresses)
}

/// A receiver of link, route and rule change notifications (both families), with its own
/// connection driven on the runtime.
pub fn watch_changes() -> std::io::Result<futures::channel::mpsc::UnboundedReceiver<()>> {
    use rtnetlink::MulticastGroup;
    let (connection, _handle, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Link,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv4Rule,
        MulticastGroup::Ipv6Rule,
    ])?;
    tokio::spawn(connection);
    let (sender, receiver) = futures::channel::mpsc::unbounded();
    tokio::spawn(async move {
        use futures::StreamExt;
        while messages.next().await.is_some() {
            if sender.unbounded_send(()).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}
