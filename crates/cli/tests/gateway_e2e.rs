//! `veg gateway` end to end in network namespaces, run as `nobody` with only CAP_NET_ADMIN
//! and CAP_NET_RAW: SNAT and forward-only traffic (TCP and UDP, IPv4 and IPv6), idempotent
//! `init`, drift repaired by `run` within 2 s, uplink fate sharing with `veg bfdd` within 1 s,
//! bad input refused without touching the previous state, a fault at each apply step (and a
//! lying nft) undone, and a family without an external gateway. Needs root, ip, nft, python3,
//! setpriv, curl; under CI=true a missing one fails.

mod gwlab;
mod support;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use gwlab::{AGENT_ARGS, EXT_V4, EXT_V6, FWD_V4, FWD_V6, GW_EXTERNAL_V4, GW_EXTERNAL_V6, Lab};
use support::wait_until;

const REPAIR_WITHIN: Duration = Duration::from_secs(2);
const PATH_DOWN_WITHIN: Duration = Duration::from_secs(1);

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn init_ok(lab: &Lab, overrides: &[(&str, &str)]) -> Result<String> {
    let output = lab.init(overrides)?;
    ensure!(
        output.status.success(),
        "veg gateway init failed: {}",
        stderr(&output)
    );
    Ok(stdout(&output))
}

#[test]
fn unprivileged_agent_snats_pods_and_keeps_forward_only_sources() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let lab = Lab::new()?;
    let first = init_ok(&lab, &[])?;
    ensure!(
        first.contains("replace route 0.0.0.0/0 table main via 198.18.0.1 dev eth0")
            && first.contains("replace nftables table veg (ip, ip6)"),
        "the first init should report what it changed:\n{first}"
    );
    for proto in ["tcp", "udp"] {
        for (host, snat) in [(EXT_V4, GW_EXTERNAL_V4), (EXT_V6, GW_EXTERNAL_V6)] {
            let seen = lab.ask("pod", proto, host)?;
            ensure!(
                seen == snat,
                "{proto} pod → {host}: seen as {seen}, want {snat}"
            );
        }
        for (host, own) in [(EXT_V4, FWD_V4), (EXT_V6, FWD_V6)] {
            let seen = lab.ask("fwd", proto, host)?;
            ensure!(
                seen == own,
                "{proto} fwd → {host}: seen as {seen}, want {own}"
            );
        }
    }

    let before = lab.snapshot()?;
    let second = init_ok(&lab, &[])?;
    ensure!(
        second.trim() == "no change: the kernel already holds the plan",
        "the second init changed something:\n{second}"
    );
    ensure!(
        lab.snapshot()? == before,
        "the second init changed the kernel"
    );
    // Legs found from the gateways' subnets, as Kube-OVN does: the same plan.
    let auto = init_ok(
        &lab,
        &[
            ("--internal-interface", "auto"),
            ("--external-interface", "auto"),
        ],
    )?;
    ensure!(
        auto.trim() == "no change: the kernel already holds the plan",
        "discovered interfaces gave another plan:\n{auto}"
    );
    Ok(())
}

#[test]
fn run_repairs_drift_and_takes_bfd_down_with_the_uplink() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let mut lab = Lab::new()?;
    let veg = lab.dir.join("veg").to_string_lossy().into_owned();
    let gw_socket = lab.dir.join("run/bfd-gw.sock");
    let rtr_socket = lab.dir.join("run/bfd-rtr.sock");
    let bfd = |peer_flag: &str, peer: &str, local: &str, socket: &std::path::Path| -> Vec<String> {
        vec![
            veg.clone(),
            "bfdd".into(),
            peer_flag.into(),
            peer.into(),
            "--local".into(),
            local.into(),
            "--min-tx-ms".into(),
            "100".into(),
            "--min-rx-ms".into(),
            "100".into(),
            "--control-socket".into(),
            socket.to_string_lossy().into_owned(),
            "--no-ipv6".into(),
        ]
    };
    // The gateway's bfdd answers the VPC's BFD port (here the router, active).
    let gw_bfd = bfd("--allow", "198.18.0.1", "198.18.0.12", &gw_socket);
    let rtr_bfd = bfd("--peer", "198.18.0.12", "198.18.0.1", &rtr_socket);
    // Same user as the agent, as containers of one Pod are.
    lab.spawn_logged("gw", true, &gw_bfd, &lab.dir.join("bfd-gw.log"))?;
    lab.spawn_logged("rtr", false, &rtr_bfd, &lab.dir.join("bfd-rtr.log"))?;

    let mut agent = vec![veg.as_str(), "gateway", "run"];
    agent.extend_from_slice(AGENT_ARGS);
    let socket = gw_socket.to_string_lossy().into_owned();
    agent.extend_from_slice(&[
        "--bfd-control",
        &socket,
        "--http",
        "127.0.0.1:9464",
        "--log-format",
        "json",
    ]);
    let log = lab.dir.join("agent.log");
    let pid = lab.spawn_logged("gw", true, &agent, &log)?;
    let agent_log = || std::fs::read_to_string(&log).unwrap_or_default();
    ensure!(
        wait_until(Duration::from_secs(5), || lab.in_sync()),
        "run did not apply the plan:\n{}",
        agent_log()
    );
    // The agent really is nobody with exactly NET_ADMIN and NET_RAW.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    ensure!(
        field("Uid:").starts_with("65534"),
        "agent uid: {}",
        field("Uid:")
    );
    ensure!(
        field("CapEff:") == "0000000000003000",
        "agent capabilities: {}",
        field("CapEff:")
    );
    ensure!(
        wait_until(Duration::from_secs(5), || lab
            .bfd_session(&gw_socket)
            .is_some_and(|(state, _)| state == "Up")),
        "BFD did not come up: {:?}",
        lab.bfd_session(&gw_socket)
    );

    // Drift: each is repaired within 2 s, without help.
    let drifts: [(&str, &[&str]); 4] = [
        ("gw", &["nft", "delete", "table", "ip", "veg"]),
        ("gw", &["ip", "rule", "del", "priority", "1003"]),
        ("gw", &["ip", "route", "del", "default", "table", "1000"]),
        (
            "gw",
            &[
                "ip",
                "-6",
                "route",
                "replace",
                "default",
                "via",
                "2001:db8:18::1",
            ],
        ),
    ];
    for (role, command) in drifts {
        lab.exec(role, command)?;
        let started = Instant::now();
        ensure!(
            wait_until(REPAIR_WITHIN, || lab.in_sync()),
            "`{}` was not repaired within {REPAIR_WITHIN:?}:\n{}",
            command.join(" "),
            agent_log()
        );
        eprintln!(
            "repaired `{}` in {:?}",
            command.join(" "),
            started.elapsed()
        );
    }
    ensure!(lab.ask("pod", "tcp", EXT_V4)? == GW_EXTERNAL_V4);
    // Counters are read at each check (every second).
    let metric = |name: &str| {
        let metrics = lab
            .http_get("127.0.0.1:9464", "/metrics")
            .unwrap_or_default();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    ensure!(
        metric("veg_gateway_drift_repairs_total ") >= 4.0,
        "drift repairs not counted"
    );
    // One TCP exchange: a connection, its packets out (SYN, ACKs, FIN) and replies in.
    ensure!(
        wait_until(Duration::from_secs(3), || metric(
            "veg_gateway_snat_connections_total{family=\"ipv4\"} "
        ) >= 1.0),
        "SNAT connections not counted:\n{}",
        lab.http_get("127.0.0.1:9464", "/metrics")
            .unwrap_or_default()
    );
    for direction in ["egress", "ingress"] {
        let name =
            format!("veg_gateway_snat_packets_total{{family=\"ipv4\",direction=\"{direction}\"}} ");
        ensure!(metric(&name) >= 3.0, "{name}: {}", metric(&name));
    }
    ensure!(
        metric("veg_gateway_interface_packets_total{interface=\"net1\",direction=\"tx\"} ") >= 1.0,
        "interface packets not counted"
    );
    ensure!(
        metric("veg_gateway_uplink_up ") == 1.0
            && metric("veg_gateway_uplink_transitions_total ") == 0.0,
        "the uplink flapped:\n{}",
        agent_log()
    );
    ensure!(metric("veg_gateway_in_sync ") == 1.0, "not in sync");
    ensure!(lab.http_get("127.0.0.1:9464", "/readyz")?.trim() == "ok");
    ensure!(lab.http_get("127.0.0.1:9464", "/livez")?.trim() == "ok");
    // The exec probe of custom-VPC gateways asks the same agent over loopback, unprivileged.
    for path in ["/readyz", "/livez"] {
        let probe = lab.veg(
            true,
            &["gateway", "probe", "--port", "9464", "--path", path],
        )?;
        ensure!(
            probe.status.success() && String::from_utf8_lossy(&probe.stdout).trim() == "200 ok",
            "probe {path}: {probe:?}"
        );
    }

    // Uplink fate sharing: the external gateway goes away, BFD goes AdminDown (path down).
    for (address, device) in [("198.51.100.1/24", "eth0"), ("2001:db8:100::1/64", "eth0")] {
        lab.ip("ext", &["addr", "del", address, "dev", device])?;
    }
    let started = Instant::now();
    ensure!(
        wait_until(PATH_DOWN_WITHIN, || lab
            .bfd_session(&gw_socket)
            .is_some_and(
                |(state, diag)| state == "AdminDown" && diag == "PathDown"
            )),
        "bfdd not AdminDown/PathDown within {PATH_DOWN_WITHIN:?}: {:?}\n{}",
        lab.bfd_session(&gw_socket),
        agent_log()
    );
    eprintln!("uplink lost → bfdd AdminDown in {:?}", started.elapsed());
    ensure!(
        wait_until(Duration::from_secs(1), || lab
            .bfd_session(&rtr_socket)
            .is_some_and(|(state, _)| state == "Down")),
        "the router side did not see the gateway go down: {:?}",
        lab.bfd_session(&rtr_socket)
    );
    lab.ip("ext", &["addr", "add", "198.51.100.1/24", "dev", "eth0"])?;
    lab.ip(
        "ext",
        &["addr", "add", "2001:db8:100::1/64", "dev", "eth0", "nodad"],
    )?;
    let started = Instant::now();
    ensure!(
        wait_until(Duration::from_secs(5), || lab
            .bfd_session(&gw_socket)
            .is_some_and(|(state, _)| state == "Up")),
        "BFD did not come back with the uplink: {:?}\n{}",
        lab.bfd_session(&gw_socket),
        agent_log()
    );
    eprintln!("uplink back → BFD Up in {:?}", started.elapsed());
    lab.stop(pid)?;
    Ok(())
}

/// What a container runtime gives a non-root container with `capabilities.add: [NET_ADMIN,
/// NET_RAW]` and `allowPrivilegeEscalation: false`: the capabilities in the bounding set only,
/// nothing inheritable or ambient, no_new_privs — so none effective. The agent must say so,
/// and how the Pod must be configured, before touching anything.
#[test]
fn a_non_root_agent_without_ambient_capabilities_says_what_the_pod_needs() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let lab = Lab::new()?;
    let before = lab.snapshot()?;
    let output = lab.init_under(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all,+net_admin,+net_raw",
        "--no-new-privs",
    ])?;
    let text = stderr(&output);
    ensure!(
        output.status.code() == Some(1)
            && text.contains("(uid 65534) lacks CAP_NET_ADMIN and CAP_NET_RAW")
            && text.contains("run the container as uid 0"),
        "{:?}: {text}",
        output.status
    );
    ensure!(lab.snapshot()? == before, "nothing may change");
    // The same bounding set as uid 0 (what the Pod should say) is enough.
    let output = lab.init_under(&[
        "setpriv",
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--bounding-set=-all,+net_admin,+net_raw",
        "--no-new-privs",
    ])?;
    ensure!(output.status.success(), "as root: {}", stderr(&output));
    Ok(())
}

#[test]
fn bad_input_fails_precisely_and_leaves_the_previous_state() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let lab = Lab::new()?;
    init_ok(&lab, &[])?;
    let before = lab.snapshot()?;
    let cases: [(&[(&str, &str)], &str); 4] = [
        // IPv4 changes succeed first, then the IPv6 default route is refused: all undone.
        (
            &[
                ("--external-gateway", "198.51.100.254,2001:db8:999::1"),
                (
                    "--source",
                    "198.19.0.0/24,198.20.0.0/24,198.21.0.0/24,2001:db8:19::/64,2001:db8:20::/64",
                ),
            ],
            "replace route ::/0 table main via 2001:db8:100::1 dev net1 proto 76 metric 1024 \
             with ::/0 table main via 2001:db8:999::1 dev net1 proto 76 metric 1024: kernel: \
             No route to host (os error 113); nothing was left half-applied (2 earlier change(s) \
             undone)",
        ),
        (
            &[("--external-interface", "net9")],
            "interface \"net9\" (external leg) does not exist in this network namespace \
             (found: eth0, lo, net1)",
        ),
        (
            &[
                ("--internal-gateway", "198.18.0.1"),
                ("--source", "198.19.0.0/24"),
                ("--forward-only", "198.20.0.0/24"),
                ("--bfd-peer", "2001:db8:18::1"),
                ("--external-gateway", "198.51.100.1"),
            ],
            "the gateway has no IPv6 internal gateway",
        ),
        (
            &[("--internal-gateway", "203.0.113.1,2001:db8:18::1")],
            "interface \"eth0\" has no address in the subnet of internal gateway 203.0.113.1",
        ),
    ];
    for (extra, message) in cases {
        let output = lab.init(extra)?;
        let error = stderr(&output);
        ensure!(
            output.status.code() == Some(1),
            "{extra:?}: exit {:?}, stderr {error}",
            output.status.code()
        );
        ensure!(
            error.contains(message),
            "{extra:?}: the message does not say what and why:\n{error}"
        );
        ensure!(
            lab.snapshot()? == before,
            "{extra:?}: the previous state was changed"
        );
    }
    Ok(())
}

/// Faults injected at the last apply step (nft is the batch after every sysctl, rule and
/// route): nft refusing the batch, and nft answering success while applying nothing (the kernel
/// then does not hold the plan). Either way every earlier change is undone: the namespace is
/// exactly as before, and the message says what failed and that nothing was left half-applied.
#[test]
fn a_failing_or_lying_nft_leaves_the_namespace_as_it_was() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let lab = Lab::new()?;
    let nft = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v nft"])
            .output()?
            .stdout,
    )?;
    let fake = |name: &str, on_batch: &str| -> Result<String> {
        let path = lab.dir.join(name);
        // Listings go to the real nft; a batch (`-f -`) gets the fault.
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\ncase \" $* \" in *\" -f \"*) cat >/dev/null; {on_batch};; esac\nexec {} \"$@\"\n",
                nft.trim()
            ),
        )?;
        let mut permissions = std::fs::metadata(&path)?.permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions)?;
        Ok(path.to_string_lossy().into_owned())
    };
    let refusing = fake("nft-refuses", "echo 'Error: injected fault' >&2; exit 1")?;
    let lying = fake("nft-lies", "exit 0")?;
    let before = lab.snapshot()?;
    ensure!(
        !before.contains("table ip veg"),
        "the namespace starts with veg's tables:\n{before}"
    );
    for (nft, message) in [
        (
            &refusing,
            "replace nftables table veg (ip, ip6): nft refused the batch",
        ),
        (
            &lying,
            "the kernel does not hold the plan after applying; still different: replace nftables \
             table veg (ip, ip6); nothing was left half-applied (",
        ),
    ] {
        let output = lab.init(&[("--nft", nft)])?;
        let error = stderr(&output);
        ensure!(
            output.status.code() == Some(1) && error.contains(message),
            "with {nft}: exit {:?}, stderr {error}",
            output.status.code()
        );
        // Something was applied first, then undone.
        ensure!(
            !error.contains("(0 earlier change(s) undone)"),
            "with {nft}: nothing was applied before the fault: {error}"
        );
        let after = lab.snapshot()?;
        ensure!(
            after == before,
            "with {nft}: the namespace changed:\n--- before\n{before}\n--- after\n{after}"
        );
    }
    // The real nft then applies the same plan.
    init_ok(&lab, &[])?;
    ensure!(lab.snapshot()? != before, "the plan changed nothing");
    Ok(())
}

/// Refuses the change number `at` (counting from 0), and every undo when `undo_too`; makes
/// everything else for real. Records what it refused.
struct FaultAt<'a> {
    kernel: &'a veg_gateway::Kernel,
    at: usize,
    undo_too: bool,
    made: std::sync::atomic::AtomicUsize,
    refused: std::sync::Mutex<Vec<String>>,
}

impl veg_gateway::MakeChange for FaultAt<'_> {
    async fn make(
        &self,
        change: &veg_gateway::Change,
        plan: &veg_gateway::Plan,
        indexes: &std::collections::BTreeMap<String, u32>,
    ) -> Result<(), veg_gateway::KernelError> {
        let n = self.made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n == self.at || (self.undo_too && n > self.at) {
            if let Ok(mut refused) = self.refused.lock() {
                refused.push(change.to_string());
            }
            return Err(veg_gateway::KernelError::SysctlRead {
                key: format!("fault injected at change {n}"),
                error: std::io::Error::other("refused"),
            });
        }
        veg_gateway::MakeChange::make(self.kernel, change, plan, indexes).await
    }
}

/// Faults injected at every step of an apply that changes every kind of object: from an
/// earlier configuration (another external gateway, another forward-only source) and some
/// drift (a sysctl, a rule missing, a stale rule), the plan needs a sysctl write, rule deletions and additions, route replacements,
/// deletions and additions, and the nftables batch. For each step in turn the kernel refuses
/// it: the apply fails naming that step, undoes every earlier one, and the namespace is exactly
/// as before; without the fault the same plan applies. A fault in the undos as well is
/// reported, not hidden. Runs the library in-process
/// in the gateway's namespace (a thread that entered it), as root.
#[test]
fn a_fault_at_any_apply_step_leaves_the_namespace_as_it_was() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let lab = Lab::new()?;
    let earlier = || -> Result<()> {
        init_ok(
            &lab,
            &[
                ("--external-gateway", "198.51.100.2,2001:db8:100::2"),
                (
                    "--source",
                    "198.19.0.0/24,198.21.0.0/24,2001:db8:19::/64,2001:db8:21::/64",
                ),
                ("--forward-only", "198.21.0.0/24,2001:db8:21::/64"),
            ],
        )?;
        // Drift: a sysctl as a fresh Pod has it, a rule missing, a rule of an old address.
        lab.exec("gw", &["sysctl", "-qw", "net.ipv4.conf.eth0.rp_filter=1"])?;
        lab.ip("gw", &["-4", "rule", "del", "pref", "1003"])?;
        lab.ip(
            "gw",
            &[
                "-6",
                "rule",
                "add",
                "pref",
                "1003",
                "from",
                "2001:db8:18::99",
                "iif",
                "lo",
                "lookup",
                "1000",
            ],
        )
    };
    earlier()?;
    let before = lab.snapshot()?;
    let parse = |list: &str| -> Result<Vec<ipnet::IpNet>> {
        Ok(list
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?)
    };
    let address = |list: &str| -> Result<Vec<std::net::IpAddr>> {
        Ok(list
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?)
    };
    // AGENT_ARGS as the library's input.
    let input = veg_gateway::config::AgentInput {
        internal_interface: "eth0".into(),
        external_interface: "net1".into(),
        internal_gateways: address("198.18.0.1,2001:db8:18::1")?,
        external_gateways: address("198.51.100.1,2001:db8:100::1")?,
        forward_only: parse("198.20.0.0/24,2001:db8:20::/64")?,
        sources: parse("198.19.0.0/24,198.20.0.0/24,2001:db8:19::/64,2001:db8:20::/64")?,
        bfd_peers: address("198.18.0.1")?,
        bfd_peers_routed: false,
    };
    ensure!(
        gwlab::agent_args(&[])
            == AGENT_ARGS
                .iter()
                .map(|a| (*a).to_owned())
                .collect::<Vec<_>>(),
        "AGENT_ARGS changed: update this test's input"
    );
    let namespace = std::fs::File::open(format!("/run/netns/{}", lab.ns("gw")))?;
    let snapshot = || lab.snapshot();
    std::thread::scope(|scope| -> Result<()> {
        let worker = scope.spawn(|| -> Result<Vec<(usize, bool, String)>> {
            // This thread, its sockets, its /proc/sys writes and the nft it starts live in
            // the gateway's namespace.
            nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let kernel = veg_gateway::agent::kernel("/usr/sbin/nft")?;
                let (plan, _) = veg_gateway::agent::current_plan(&kernel, &input).await?;
                let mut outcomes = Vec::new();
                for at in 0..64 {
                    let fault = FaultAt {
                        kernel: &kernel,
                        at,
                        undo_too: false,
                        made: Default::default(),
                        refused: Default::default(),
                    };
                    let result = kernel.apply_through(&fault, &plan, "eth0", "net1").await;
                    let refused = fault.refused.lock().map(|r| r.clone()).unwrap_or_default();
                    match result {
                        Err(veg_gateway::ApplyError::Step {
                            step,
                            undone,
                            undo_failures,
                            ..
                        }) => {
                            ensure!(
                                refused == [step.clone()] && undo_failures.is_empty(),
                                "fault at {at}: refused {refused:?}, the error names {step:?}, \
                                 undo failures {undo_failures:?}"
                            );
                            ensure!(
                                undone <= at,
                                "fault at {at}: {undone} changes undone, more than were made"
                            );
                            let after = snapshot()?;
                            ensure!(
                                after == before,
                                "fault at {at} ({step}): the namespace changed:\n--- before\n\
                                 {before}\n--- after\n{after}"
                            );
                            outcomes.push((at, undone == at, step));
                        }
                        Ok(report) => {
                            ensure!(
                                refused.is_empty() && report.changes.len() == at,
                                "fault at {at}: applied with {} changes, refused {refused:?}",
                                report.changes.len()
                            );
                            break;
                        }
                        Err(other) => anyhow::bail!("fault at {at}: {other}"),
                    }
                }
                ensure!(snapshot()? != before, "the plan changed nothing");
                // The earlier state again, then a fault at the fourth step whose undos fail
                // too: the error lists each undo that failed instead of claiming a clean state.
                earlier()?;
                ensure!(
                    snapshot()? == before,
                    "the earlier state is not reproducible"
                );
                let fault = FaultAt {
                    kernel: &kernel,
                    at: 3,
                    undo_too: true,
                    made: Default::default(),
                    refused: Default::default(),
                };
                let error = kernel
                    .apply_through(&fault, &plan, "eth0", "net1")
                    .await
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                ensure!(
                    error.contains("undoing 3 earlier change(s) failed in part: ")
                        && error.matches("fault injected at change").count() == 4,
                    "undo faults not reported: {error:?}"
                );
                Ok::<_, anyhow::Error>(outcomes)
            })
        });
        let outcomes = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the in-namespace thread panicked"))??;
        let kinds = [
            "sysctl ",
            "add rule ",
            "delete rule ",
            "add route ",
            "replace route ",
            "delete route ",
            "replace nftables ",
        ];
        for kind in kinds {
            ensure!(
                outcomes.iter().any(|(_, _, step)| step.starts_with(kind)),
                "no step of kind {kind:?} was faulted: {outcomes:#?}"
            );
        }
        // Every change made before a fault is undone (nft, the last step, has no inverse but
        // is never followed by another).
        ensure!(
            outcomes.iter().all(|(_, all_undone, _)| *all_undone),
            "some earlier changes were not undone: {outcomes:#?}"
        );
        eprintln!(
            "{} steps, each refused in turn; the namespace was unchanged every time",
            outcomes.len()
        );
        Ok(())
    })?;
    // The agent itself then puts the namespace right.
    init_ok(&lab, &[])?;
    ensure!(lab.in_sync(), "the agent did not converge after the faults");
    Ok(())
}

/// An apply that keeps failing (the IPv6 default route is refused after the IPv4 changes went
/// in, so every attempt changes routes and undoes them) is retried on a growing pause, not on
/// its own netlink notifications: it used to run ~30 attempts a second, flapping the routes
/// each time. Counted from the agent's log over 3 s: the pauses (100 ms doubling) allow about
/// 6 attempts; the old loop made about 90.
#[test]
fn a_failing_apply_is_retried_with_backoff_not_on_its_own_notifications() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let mut lab = Lab::new()?;
    let veg = lab.dir.join("veg").to_string_lossy().into_owned();
    let mut agent: Vec<String> = vec![veg, "gateway".into(), "run".into()];
    agent.extend(gwlab::agent_args(&[(
        "--external-gateway",
        "198.51.100.254,2001:db8:999::1",
    )]));
    agent.extend(["--check-interval-ms".into(), "10000".into()]);
    let log = lab.dir.join("agent.log");
    let pid = lab.spawn_logged("gw", true, &agent, &log)?;
    let attempts = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .matches("apply failed")
            .count()
    };
    ensure!(
        wait_until(Duration::from_secs(5), || attempts() > 0),
        "the apply did not fail: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let first = attempts();
    std::thread::sleep(Duration::from_secs(3));
    let made = attempts() - first;
    lab.stop(pid)?;
    ensure!(
        (2..=12).contains(&made),
        "{made} attempts in 3 s after the first failure (backoff allows about 6): {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    eprintln!("{made} attempts in 3 s after the first failure");
    Ok(())
}

#[test]
fn a_family_without_an_external_gateway_gets_no_default_route_and_no_snat() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let lab = Lab::new()?;
    init_ok(&lab, &[("--external-gateway", "198.51.100.1")])?;
    let snapshot = lab.snapshot()?;
    ensure!(
        snapshot.contains("table ip veg") && !snapshot.contains("table ip6 veg"),
        "nft tables:\n{snapshot}"
    );
    ensure!(
        !snapshot.contains("default via 2001:db8:100::1"),
        "an IPv6 default route via the external network:\n{snapshot}"
    );
    ensure!(lab.ask("pod", "udp", EXT_V4)? == GW_EXTERNAL_V4);
    ensure!(
        lab.ask("pod", "udp", EXT_V6).is_err(),
        "IPv6 left the gateway without an external gateway"
    );
    Ok(())
}

/// The Pod's own listeners (the agent's and bfdd's HTTP, BFD) answer on the internal leg only:
/// from the external segment their ports are dropped by veg's nftables table, so nobody there
/// can read the metrics, flood the endpoints or spoof BFD to take the instance out.
#[test]
fn the_pods_own_ports_are_closed_on_the_external_leg() -> Result<()> {
    if !gwlab::prerequisites() {
        return Ok(());
    }
    let mut lab = Lab::new()?;
    init_ok(&lab, &[])?;
    // Listeners on every address, as the Pod's are ([::]).
    let listen = "import socket,sys\n\
        s=socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
        s.bind(('::', int(sys.argv[1]))); s.listen(16); print('ready', flush=True)\n\
        while True:\n    c,_=s.accept(); c.sendall(b'hello'); c.close()\n";
    for port in ["10669", "10670"] {
        let log = lab.dir.join(format!("listen-{port}.log"));
        lab.spawn_logged("gw", false, &["python3", "-c", listen, port], &log)?;
        ensure!(
            wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains("ready"))),
            "listener {port} did not start"
        );
    }
    let connect = "import socket,sys\n\
        try:\n    c=socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5); print(c.recv(5).decode())\n\
        except Exception as e:\n    print('failed', type(e).__name__)\n";
    let ask = |role: &str, host: &str, port: &str| -> Result<String> {
        let output = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.ns(role),
                "python3",
                "-c",
                connect,
                host,
                port,
            ])
            .output()?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    for port in ["10669", "10670"] {
        let inside = ask("rtr", "198.18.0.12", port)?;
        ensure!(inside == "hello", "port {port} from the VPC side: {inside}");
        let outside = ask("ext", GW_EXTERNAL_V4, port)?;
        ensure!(
            outside.starts_with("failed"),
            "port {port} answered on the external leg: {outside}"
        );
    }
    Ok(())
}
