//! `veg gateway` end to end in network namespaces, run as `nobody` with only CAP_NET_ADMIN
//! and CAP_NET_RAW: SNAT and forward-only traffic (TCP and UDP, IPv4 and IPv6), idempotent
//! `init`, drift repaired by `run` within 2 s, uplink fate sharing with `veg bfdd` within 1 s,
//! bad input refused without touching the previous state, and a family without an external
//! gateway. Needs root, ip, nft, python3, setpriv, curl; under CI=true a missing one fails.

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
