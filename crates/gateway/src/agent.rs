//! `veg gateway init` and `veg gateway run`: build the configuration from the flags and the
//! internal leg's addresses, apply it, then keep it applied — on every netlink change and every
//! check interval — while watching the uplink and telling the local `veg bfdd` when it fails.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use prometheus_client::registry::Registry;
use tracing::{error, info, warn};
use veg_bfd::control::{self, AdminDiag, Request};
use veg_daemon::Task;
use veg_daemon::http::{self, Endpoint, Health};

use crate::apply::{ApplyError, Kernel, Report};
use crate::config::{self, AgentInput};
use crate::metrics::{FamilyLabel, FlowLabel, InterfaceLabel, Metrics};
use crate::netlink::{self, NeighbourEntry};
use crate::plan::{self, Family, Plan};

/// How `run` behaves.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The gateway's inputs.
    pub input: AgentInput,
    /// The `nft` program.
    pub nft: String,
    /// Full check period (nftables has no change notification here).
    pub check_interval: Duration,
    /// Uplink probe period; zero disables the uplink check.
    pub uplink_interval: Duration,
    /// Missed (or good) probes in a row that change the uplink state.
    pub uplink_multiplier: u32,
    /// The local `veg bfdd` control socket.
    pub bfd_control: Option<PathBuf>,
    /// `/metrics`, `/livez`, `/readyz`.
    pub http: Option<SocketAddr>,
}

/// Connects to the kernel of the current namespace.
pub fn kernel(nft: &str) -> Result<Kernel, ApplyError> {
    Ok(Kernel {
        handle: netlink::connect().map_err(ApplyError::Netlink)?,
        nft: nft.to_owned(),
    })
}

/// The plan for the current namespace: the internal leg's addresses complete the input, and
/// legs named `auto` are found by the subnet that holds their gateway. Returns the input with
/// the interface names resolved.
pub async fn current_plan(
    kernel: &Kernel,
    input: &AgentInput,
) -> Result<(Plan, AgentInput), ApplyError> {
    let links = kernel.links().await?;
    let mut input = input.clone();
    if input.internal_interface == config::AUTO || input.external_interface == config::AUTO {
        let mut interfaces = Vec::new();
        for (name, link) in &links.by_name {
            let addresses = netlink::addresses(&kernel.handle, link.index)
                .await
                .map_err(|error| ApplyError::Observe {
                    what: "interface addresses",
                    error: error.into(),
                })?;
            interfaces.push((name.clone(), addresses));
        }
        let legs = [
            (
                "internal",
                &mut input.internal_interface,
                &input.internal_gateways,
            ),
            (
                "external",
                &mut input.external_interface,
                &input.external_gateways,
            ),
        ];
        for (role, name, gateways) in legs {
            if *name == config::AUTO {
                let found = config::discover_interface(&interfaces, gateways).ok_or_else(|| {
                    ApplyError::MissingInterface {
                        role,
                        name: format!("auto (no interface has a subnet holding {gateways:?})"),
                        found: links.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
                    }
                })?;
                *name = found.to_owned();
            }
        }
    }
    let internal = links
        .by_name
        .get(&input.internal_interface)
        .ok_or_else(|| ApplyError::MissingInterface {
            role: "internal",
            name: input.internal_interface.clone(),
            found: links.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
        })?;
    let addresses = netlink::addresses(&kernel.handle, internal.index)
        .await
        .map_err(|error| ApplyError::Observe {
            what: "internal addresses",
            error: error.into(),
        })?;
    let gateway = config::build(&input, &addresses)?;
    Ok((plan::plan(&gateway)?, input))
}

/// Applies once.
pub async fn init(kernel: &Kernel, input: &AgentInput) -> Result<Report, ApplyError> {
    crate::capabilities::check()?;
    let (plan, input) = current_plan(kernel, input).await?;
    kernel
        .apply(&plan, &input.internal_interface, &input.external_interface)
        .await
}

/// Applies and keeps applying until `shutdown` resolves.
pub async fn run(
    config: AgentConfig,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ApplyError> {
    crate::capabilities::check()?;
    let kernel = kernel(&config.nft)?;
    let health = Arc::new(Health::default());
    let mut _endpoint = None;
    if let Some(address) = config.http {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let listener = http::bind(address).await?;
        let endpoint = Endpoint::new(
            registry,
            health.clone(),
            "the kernel does not hold the plan",
        );
        _endpoint = Some(Task::spawn(http::serve(listener, Arc::new(endpoint))));
        info!(%address, "serving /metrics, /livez, /readyz");
    }
    let mut changes = netlink::watch_changes().map_err(ApplyError::Netlink)?;
    let mut check = tokio::time::interval(config.check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let uplink_enabled = !config.uplink_interval.is_zero();
    let mut uplink_tick = tokio::time::interval(if uplink_enabled {
        config.uplink_interval
    } else {
        Duration::from_secs(3600)
    });
    uplink_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut uplink = Uplink::new(&config);
    let mut first = true;
    // The external leg's name once resolved (it may be `auto`); the uplink check needs it.
    let mut external: Option<String> = None;
    // After a failed apply the next attempt waits a growing pause, and netlink notifications
    // (the failed apply's own, and its undo's) do not cut it short: they used to start the
    // next attempt at once, ~30 a second, flapping routes each time.
    let mut failures: u32 = 0;
    let mut retry_at: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = check.tick() => {}
            event = changes.next() => {
                if event.is_none() {
                    warn!("netlink notifications stopped; relying on the check interval");
                    changes = netlink::watch_changes().map_err(ApplyError::Netlink)?;
                }
                // One check for a burst of notifications (ours included).
                tokio::time::sleep(Duration::from_millis(20)).await;
                while changes.try_recv().is_ok() {}
                if retry_at.is_some_and(|at| Instant::now() < at) {
                    continue;
                }
            }
            // The next attempt after a failure, on the backoff schedule.
            () = sleep_until_retry(retry_at), if retry_at.is_some() => {}
            _ = uplink_tick.tick(), if uplink_enabled => {
                uplink.tick(&kernel, &config, external.as_deref(), &metrics).await;
                health.beat();
                continue;
            }
        }
        health.beat();
        let resolved = reconcile(&kernel, &config.input, &metrics, first).await;
        let in_sync = resolved.is_some();
        if resolved.is_some() {
            external = resolved;
            failures = 0;
            retry_at = None;
        } else {
            failures = failures.saturating_add(1);
            retry_at = Some(Instant::now() + retry_backoff(failures, config.check_interval));
        }
        first = false;
        health.set_ready(in_sync);
        metrics.in_sync.set(i64::from(in_sync));
    }
    info!("stopping; the applied state stays in place");
    Ok(())
}

async fn sleep_until_retry(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The pause before a netlink notification may start another attempt after `failures` failed
/// applies in a row: 100 ms doubling, at most one check interval.
pub fn retry_backoff(failures: u32, check_interval: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (Duration::from_millis(100) * 2u32.pow(doublings)).min(check_interval)
}

/// One check and repair; the resolved external interface when the kernel holds the plan.
async fn reconcile(
    kernel: &Kernel,
    input: &AgentInput,
    metrics: &Metrics,
    first: bool,
) -> Option<String> {
    metrics.checks.inc();
    let started = Instant::now();
    let outcome = match current_plan(kernel, input).await {
        Ok((plan, input)) => kernel
            .apply(&plan, &input.internal_interface, &input.external_interface)
            .await
            .map(|report| (report, input.external_interface)),
        Err(error) => Err(error),
    };
    match outcome {
        Ok((report, external)) => {
            record_counters(metrics, &report);
            if !report.changes.is_empty() {
                let changes: Vec<String> = report.changes.iter().map(ToString::to_string).collect();
                let took_ms = started.elapsed().as_secs_f64() * 1e3;
                if first {
                    info!(changes = ?changes, took_ms, "applied");
                } else {
                    metrics.drift_repairs.inc();
                    warn!(changes = ?changes, took_ms, "repaired drift");
                }
            }
            Some(external)
        }
        Err(failure) => {
            metrics.apply_errors.inc();
            error!(error = %failure, "apply failed; retrying at the next check");
            None
        }
    }
}

fn record_counters(metrics: &Metrics, report: &Report) {
    for (family, snat) in &report.snat {
        let family = match family {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
        };
        let label = FamilyLabel {
            family: family.into(),
        };
        metrics.advance(
            &format!("snat_connections/{family}"),
            &metrics.snat_connections.get_or_create(&label),
            snat.connections,
        );
        for (direction, (packets, bytes)) in [("egress", snat.egress), ("ingress", snat.ingress)] {
            let label = FlowLabel {
                family: family.into(),
                direction: direction.into(),
            };
            metrics.advance(
                &format!("snat_packets/{family}/{direction}"),
                &metrics.snat_packets.get_or_create(&label),
                packets,
            );
            metrics.advance(
                &format!("snat_bytes/{family}/{direction}"),
                &metrics.snat_bytes.get_or_create(&label),
                bytes,
            );
        }
    }
    for (name, link) in &report.links {
        if name == "lo" {
            continue;
        }
        let [rx_packets, rx_bytes, tx_packets, tx_bytes] = link.counters;
        for (direction, packets, bytes) in
            [("rx", rx_packets, rx_bytes), ("tx", tx_packets, tx_bytes)]
        {
            let label = InterfaceLabel {
                interface: name.clone(),
                direction: direction.into(),
            };
            metrics.advance(
                &format!("packets/{name}/{direction}"),
                &metrics.interface_packets.get_or_create(&label),
                packets,
            );
            metrics.advance(
                &format!("bytes/{name}/{direction}"),
                &metrics.interface_bytes.get_or_create(&label),
                bytes,
            );
        }
    }
}

// ===== uplink =====

struct Uplink {
    state: crate::uplink::Uplink,
    /// bfdd has not yet been told the current state (it was not reachable).
    unsent: bool,
}

impl Uplink {
    fn new(config: &AgentConfig) -> Self {
        Self {
            state: crate::uplink::Uplink::new(config.uplink_multiplier),
            unsent: false,
        }
    }

    async fn tick(
        &mut self,
        kernel: &Kernel,
        config: &AgentConfig,
        external: Option<&str>,
        metrics: &Metrics,
    ) {
        let gateways = &config.input.external_gateways;
        let Some(external) = external.filter(|_| !gateways.is_empty()) else {
            return;
        };
        let reachable = match probe(kernel, external, gateways).await {
            Ok(reachable) => reachable,
            Err(error) => {
                warn!(%error, "uplink probe failed");
                false
            }
        };
        if let Some(up) = self.state.record(reachable) {
            metrics.uplink_transitions.inc();
            metrics.uplink_up.set(i64::from(up));
            if up {
                info!(gateways = ?gateways, "uplink back: external gateway answers");
            } else {
                warn!(gateways = ?gateways, "uplink lost: external gateway does not answer");
            }
            self.unsent = true;
        } else if self.state.is_up() {
            metrics.uplink_up.set(1);
        }
        if self.unsent
            && let Some(socket) = &config.bfd_control
        {
            let request = if self.state.is_up() {
                Request::AdminUp { peer: None }
            } else {
                Request::AdminDown {
                    peer: None,
                    diag: Some(AdminDiag::PathDown),
                }
            };
            match control::request(socket, &request).await {
                Ok(control::Response::Failed { error, .. }) => warn!(%error, "bfdd refused"),
                Ok(_) => {
                    info!(up = self.state.is_up(), "told bfdd");
                    self.unsent = false;
                }
                Err(error) => {
                    warn!(%error, socket = %socket.display(), "cannot reach bfdd; retrying")
                }
            }
        }
    }
}

/// One probe round: the verdict on the previous probe, then a new probe.
async fn probe(
    kernel: &Kernel,
    interface: &str,
    gateways: &[IpAddr],
) -> Result<bool, netlink::NetlinkError> {
    let links = netlink::links(&kernel.handle).await?;
    let Some(link) = links.get(interface) else {
        return Ok(false);
    };
    let mut reachable = link.carrier;
    for gateway in gateways {
        let entry = netlink::neighbour(&kernel.handle, link.index, *gateway).await?;
        tracing::debug!(%gateway, ?entry, carrier = link.carrier, "uplink probe");
        reachable &= matches!(entry, NeighbourEntry::Reachable | NeighbourEntry::Static);
        if link.carrier {
            netlink::probe_neighbour(&kernel.handle, link.index, *gateway, entry).await?;
        }
    }
    Ok(reachable)
}

// ===== show =====

/// The applied rules, routes and nftables tables in readable form; with an input, also what
/// differs from its plan.
pub async fn show(kernel: &Kernel, input: Option<&AgentInput>) -> Result<String, ApplyError> {
    use std::fmt::Write as _;
    let links = kernel.links().await?;
    let mut out = String::new();
    let plan = match input {
        Some(input) => Some(current_plan(kernel, input).await?.0),
        None => None,
    };
    let empty = Plan {
        sysctls: vec![],
        rules: vec![],
        routes: vec![],
        nft: vec![],
    };
    let observed = kernel
        .observe(plan.as_ref().unwrap_or(&empty), &links)
        .await?;
    let _ = writeln!(out, "# ip rules (veg's priorities)");
    for rule in &observed.rules {
        let _ = writeln!(out, "{rule}");
    }
    let _ = writeln!(out, "# routes (table 1000, main)");
    for route in &observed.routes {
        let _ = writeln!(out, "{route}");
    }
    for family in crate::nft::FAMILIES {
        let keyword = crate::nft::family_keyword(family);
        let _ = writeln!(out, "# nftables table {keyword} veg");
        match tokio::process::Command::new(&kernel.nft)
            .args(["list", "table", keyword, plan::NFT_TABLE])
            .output()
            .await
        {
            Ok(output) if output.status.success() => {
                out.push_str(&String::from_utf8_lossy(&output.stdout));
            }
            Ok(_) => out.push_str("(absent)\n"),
            Err(error) => {
                let _ = writeln!(out, "(cannot run {}: {error})", kernel.nft);
            }
        }
    }
    if let Some(plan) = &plan {
        for sysctl in &plan.sysctls {
            let value = observed.sysctls.get(&sysctl.key).cloned().flatten();
            let _ = writeln!(
                out,
                "# sysctl {} = {}",
                sysctl.key,
                value.as_deref().unwrap_or("(missing)")
            );
        }
        let changes = crate::state::diff(plan, &observed);
        if changes.is_empty() {
            let _ = writeln!(out, "# in sync with the plan");
        } else {
            let _ = writeln!(out, "# differs from the plan:");
            for change in changes {
                let _ = writeln!(out, "{change}");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_the_check_interval() {
        let interval = Duration::from_secs(1);
        let pauses: Vec<u128> = (1..=7)
            .map(|failures| retry_backoff(failures, interval).as_millis())
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000, 1000]);
        assert_eq!(retry_backoff(u32::MAX, interval), interval);
    }
}
