//! The failover benchmark (`bench/failover.sh`; needs root and the lab's packages): in one
//! run, for each data plane (`--ovn kube-ovn,debian` × `--mode native,monitor`; native runs
//! only on Kube-OVN's build) and each BFD setting (default 100 ms × 3 and 30 ms × 3), a fresh
//! lab with a two-instance gateway, then `--kills` kills of the instance that carries the
//! client's traffic (processes SIGKILLed, links cut) while the client Pod sends `--flows` UDP
//! flows to the external host's echo service, one probe per flow every `--interval-ms`. Per
//! kill: the traffic gap (the longest time without a reply on any flow that went through the
//! killed instance) and the time from the kill to its withdrawal in the NB (monitor mode: the
//! monitor's write of the nexthops; native: OVN setting its BFD row down, seen by an
//! `ovsdb-client monitor`). Prints a Markdown table; the "ratio" column compares the gap with
//! the BFD detection time (interval × multiplier) measured in the same run, so the figure says
//! what the withdrawal adds on top of BFD.

use std::collections::BTreeSet;
use std::io::BufRead as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value as Json;
use veg_lab::session::BfdMode;
use veg_lab::{Lab, LabOptions, OvnBuild, OvnInstall, Topology};

const MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {bfdPort: {enabled: true, ip: 198.18.0.253}}
status: {router: ovn-cluster, defaultLogicalSwitch: ovn-default}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {protocol: IPv4, cidrBlock: 198.18.0.0/20, gateway: 198.18.0.1, provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {protocol: IPv4, cidrBlock: 198.51.100.0/24, gateway: 198.51.100.1, provider: eth1.default}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: default}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gateway1, namespace: default}
spec:
  replicas: 2
  externalSubnet: macvlan1
  # Instances may share a node (one-node labs; the default, Required, keeps them apart).
  podAntiAffinity: Preferred
  bfd: {enabled: true, minRX: INTERVAL, minTX: INTERVAL, multiplier: 3}
  selectors:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
"#;

const TOPOLOGY: &str = "pods:\n  - {name: client, subnet: ovn-default, ips: [198.18.0.21]}\n";

/// The external host's UDP echo for the probes: one socket per address (so each reply
/// leaves from the address its probe went to), answering with the source it saw.
const ECHO: &str = r#"
import socket, sys, select
port = int(sys.argv[1])
socks = []
for address in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((address, port)); socks.append(s)
by_fd = {s.fileno(): s for s in socks}
poll = select.epoll()
for s in socks:
    poll.register(s.fileno(), select.EPOLLIN)
print("ready", flush=True)
while True:
    for fileno, _ in poll.poll():
        s = by_fd[fileno]
        data, peer = s.recvfrom(256)
        s.sendto(peer[0].encode() + b" " + data, peer)
"#;

/// UDP flows, one per destination address of the external host (this OVN's ECMP hash spreads
/// UDP by address, not by port: measured), one probe per flow per tick; every reply's
/// wall-clock time and the source the echo saw, by flow, written as JSON to argv[6].
const PROBER: &str = r#"
import socket, sys, time, select, json
targets, port, flows = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3])
interval, duration, out = float(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
socks = []
for i in range(flows):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False); s.connect((targets[i], port)); socks.append(s)
index = {s.fileno(): i for i, s in enumerate(socks)}
poll = select.epoll()
for s in socks:
    poll.register(s.fileno(), select.EPOLLIN)
replies = [[] for _ in range(flows)]
print("ready", flush=True)
start = time.time(); tick = start; seq = 0
while time.time() - start < duration:
    if time.time() >= tick:
        for i, s in enumerate(socks):
            try:
                s.send(b"%d %d" % (i, seq))
            except OSError:
                pass
        seq += 1; tick += interval
    for fileno, _ in poll.poll(max(0.0, tick - time.time())):
        while True:
            try:
                data = socks[index[fileno]].recv(256)
            except OSError:
                break
            replies[index[fileno]].append([time.time(), data.split(b" ")[0].decode()])
json.dump({"sent": seq, "replies": replies}, open(out, "w"))
"#;

struct Args {
    kills: usize,
    /// Seconds of steady running (no kill) before the kills, counting withdrawals (all false).
    steady: u64,
    /// Kill the victim's whole node (three nodes, the client on the third) instead of its Pod.
    kill_node: bool,
    timers: Vec<u32>,
    flows: usize,
    interval_ms: u64,
    setups: Vec<(OvnBuild, BfdMode)>,
}

fn args() -> Result<Args> {
    let mut args = Args {
        kills: 20,
        steady: 0,
        kill_node: false,
        timers: vec![100, 30],
        flows: 16,
        interval_ms: 5,
        setups: Vec::new(),
    };
    let mut builds = vec![OvnBuild::KubeOvn, OvnBuild::Debian];
    let mut modes = vec![BfdMode::Native, BfdMode::Monitor];
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().context("a value");
        match arg.as_str() {
            "--kills" => args.kills = value()?.parse()?,
            "--steady" => args.steady = value()?.parse()?,
            "--kill" => {
                args.kill_node = match value()?.as_str() {
                    "pod" => false,
                    "node" => true,
                    other => bail!("--kill {other}: pod or node"),
                }
            }
            "--flows" => args.flows = value()?.parse()?,
            "--interval-ms" => args.interval_ms = value()?.parse()?,
            "--timers" => {
                args.timers = value()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--ovn" => {
                builds = value()?
                    .split(',')
                    .map(|b| match b {
                        "kube-ovn" => Ok(OvnBuild::KubeOvn),
                        "debian" => Ok(OvnBuild::Debian),
                        other => bail!("--ovn {other}: kube-ovn or debian"),
                    })
                    .collect::<Result<_>>()?
            }
            "--mode" => {
                modes = value()?
                    .split(',')
                    .map(|m| match m {
                        "native" => Ok(BfdMode::Native),
                        "monitor" => Ok(BfdMode::Monitor),
                        other => bail!("--mode {other}: native or monitor"),
                    })
                    .collect::<Result<_>>()?
            }
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    // Native needs Kube-OVN's build (the BFD port); Debian's runs monitor mode only.
    for build in &builds {
        for mode in &modes {
            if !(*build == OvnBuild::Debian && *mode == BfdMode::Native) {
                args.setups.push((*build, *mode));
            }
        }
    }
    ensure!(
        !args.setups.is_empty(),
        "no setup: native runs on kube-ovn only"
    );
    Ok(args)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn nexthops(lab: &Lab) -> BTreeSet<IpAddr> {
    lab.ovn()
        .live_policy_nexthops(29100)
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect()
}

fn instance(lab: &Lab, pod: &str) -> Option<(String, String)> {
    let status = lab.status("default", "gateway1");
    let entry = status["gateways"]
        .as_array()?
        .iter()
        .find(|g| g["pod"] == pod)?
        .clone();
    Some((
        entry["internalIPs"][0].as_str()?.to_owned(),
        entry["externalIPs"][0].as_str()?.to_owned(),
    ))
}

/// The first `nexthops written` of the monitor after `since` (wall clock, s) without `gone`.
fn nb_write_after(log: &Path, since: f64, gone: &str) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Json>(line).ok())
        .filter(|entry| entry["message"] == "nexthops written")
        .filter_map(|entry| {
            let at: k8s_openapi::jiff::Timestamp = entry["timestamp"].as_str()?.parse().ok()?;
            let at = at.as_microsecond() as f64 / 1e6;
            (at >= since && !entry["policies"].as_str()?.contains(gone)).then_some(at)
        })
        .next()
}

/// Every BFD row turning down in an `ovsdb-client --timestamp -f csv monitor … BFD
/// dst_ip,status` log: (time, address).
fn bfd_downs(log: &Path) -> Vec<(f64, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut at = None;
    let mut downs = Vec::new();
    for line in text.lines() {
        // Each update starts with its time, `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
        if line.len() == 23 && line.as_bytes().get(4) == Some(&b'-') {
            at = format!("{}Z", line.replacen(' ', "T", 1))
                .parse::<k8s_openapi::jiff::Timestamp>()
                .ok()
                .map(|t| t.as_microsecond() as f64 / 1e6);
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if let (Some(when), [_, "new", address, status]) = (at, fields.as_slice())
            && (*status == "down" || *status == "admin_down")
        {
            downs.push((when, address.trim_matches('"').to_owned()));
        }
    }
    downs
}

/// The first time after `since` that `ip`'s BFD row turned down.
fn bfd_down_after(log: &Path, since: f64, ip: &str) -> Option<f64> {
    bfd_downs(log)
        .into_iter()
        .find(|(when, address)| *when >= since && address == ip)
        .map(|(when, _)| when)
}

struct Kill {
    gap_ms: f64,
    nb_ms: f64,
    affected: usize,
    unrecovered: usize,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run_setting(
    args: &Args,
    (build, mode): (OvnBuild, BfdMode),
    interval: u32,
    veg: &Path,
) -> Result<(f64, Vec<Kill>, Option<usize>)> {
    let id = format!("b{}{}{interval}", &build.name()[..1], &mode.name()[..1]);
    let input = std::env::temp_dir().join(format!("{id}-input"));
    std::fs::create_dir_all(&input)?;
    let manifests = input.join("manifests.yaml");
    std::fs::write(
        &manifests,
        MANIFESTS.replace("INTERVAL", &interval.to_string()),
    )?;
    // Node kills: three nodes, the client on the third, the instances on the first two (where
    // the VPC's BFD port is active, native mode) and the second.
    let topology = if args.kill_node {
        "nodes: [n1, n2, n3]\npods:\n  - {name: client, subnet: ovn-default, ips: [198.18.0.21], node: n3}\n"
    } else {
        TOPOLOGY
    };
    std::fs::write(input.join("topology.yaml"), topology)?;
    let state = std::env::temp_dir().join(format!("{id}-veg-lab"));
    veg_lab::ovn::stop_dir(&state, &[]);
    let probe_seconds = 0.4 + 12.0 * f64::from(interval) / 1000.0 + 0.6;
    let options = LabOptions {
        state_dir: state.clone(),
        prefix: id.clone(),
        veg: veg.to_owned(),
        manifests: vec![manifests],
        topology: Topology::read(&input.join("topology.yaml"))?,
        restart_delay: Some(Duration::from_secs_f64(probe_seconds + 0.2)),
        ovn: OvnInstall::locate(build)?,
        bfd_mode: mode,
        chassis: if args.kill_node { 3 } else { 1 },
        node_grace: veg_lab::session::NODE_GRACE,
        pod_security: Default::default(),
        allowed_unsafe_sysctls: Vec::new(),
        // What ships: the controller and monitors of the overlay, through the lab's kubelet.
        deploy: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(veg_lab::deploy::default_overlay(mode)),
        ),
    };
    let started = Instant::now();
    let mut lab = Lab::up(options, &mut |_, _| {})?;
    lab.wait_for("the gateway", Duration::from_secs(60), |lab| {
        Ok(nexthops(lab).len() == 2 && lab.status("default", "gateway1")["phase"] == "Completed")
    })?;
    let ready_ms = started.elapsed().as_secs_f64() * 1000.0;
    lab.ovn().sync()?;
    std::fs::write(state.join("prober.py"), PROBER)?;
    std::fs::write(state.join("udp-echo.py"), ECHO)?;
    let client = lab.netns("default/client").context("no client")?;
    // One external address per flow, and the echo on all of them.
    let external = lab.state().external;
    let targets: Vec<String> = (0..args.flows)
        .map(|i| format!("198.51.100.{}", 150 + i))
        .collect();
    ensure!(args.flows <= 100, "at most 100 flows");
    for target in &targets {
        let status = Command::new("ip")
            .args([
                "-n",
                &external,
                "addr",
                "add",
                &format!("{target}/24"),
                "dev",
                "br-ext",
            ])
            .status()?;
        ensure!(status.success(), "adding {target} to the external host");
    }
    let mut echo = Command::new("ip")
        .args(["netns", "exec", &external, "python3"])
        .arg(state.join("udp-echo.py"))
        .arg("7778")
        .args(&targets)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    std::io::BufReader::new(echo.stdout.take().context("echo stdout")?).read_line(&mut line)?;
    let targets = targets.join(",");
    // The overlay's two monitors: one writes (the NB lease), both run every session.
    let monitor_logs: Vec<PathBuf> = (0..2)
        .map(|i| state.join(format!("pods/veg-monitor-{i}/monitor.log")))
        .collect();
    // Native: OVN's own withdrawal is its BFD row going down in the NB.
    let bfd_log = state.join("nb-bfd.csv");
    let mut bfd_monitor = Command::new(lab.ovn().install().program("ovsdb-client"))
        .args([
            "-f",
            "csv",
            "--timestamp",
            "monitor",
            &lab.ovn().nb_remote(),
        ])
        .args(["OVN_Northbound", "BFD", "dst_ip,status"])
        .stdout(std::fs::File::create(&bfd_log)?)
        .stderr(Stdio::null())
        .spawn()?;
    let false_withdrawals = if args.steady > 0 {
        lab.wait_for("both instances", Duration::from_secs(30), |lab| {
            Ok(nexthops(lab).len() == 2)
        })?;
        let since = now();
        for elapsed in (0..args.steady).step_by(30) {
            eprintln!("  steady run: {elapsed} of {} s", args.steady);
            std::thread::sleep(Duration::from_secs((args.steady - elapsed).min(30)));
        }
        let count = match mode {
            BfdMode::Native => bfd_downs_after(&bfd_log, since),
            BfdMode::Monitor => monitor_logs
                .iter()
                .map(|log| monitor_downs_after(log, since))
                .max()
                .unwrap_or(0),
        };
        eprintln!("  steady run: {count} withdrawals in {} s", args.steady);
        Some(count)
    } else {
        None
    };
    let mut kills = Vec::new();
    for round in 0..args.kills {
        lab.wait_for("both instances", Duration::from_secs(30), |lab| {
            Ok(nexthops(lab).len() == 2)
        })?;
        lab.ovn().sync()?;
        // Quiet for twice the lab's datapath idle time: each round starts from fresh flows.
        std::thread::sleep(Duration::from_millis(1000));
        // The victim carries the client's traffic: with Kube-OVN's ECMP on the IP source
        // every flow of the one client goes through one instance (dp_hash spreads them).
        let seen = lab
            .ask("default/client", true, Duration::from_secs(1))
            .context("the client reaches nothing")?;
        let victim = ["gateway1-0", "gateway1-1"]
            .into_iter()
            .find(|pod| instance(&lab, pod).is_some_and(|(_, external)| external == seen))
            .with_context(|| format!("no instance has the client's address {seen}"))?;
        let (dead_internal, dead_external) = instance(&lab, victim).context("victim")?;
        let out = state.join("probe.json");
        let _ = std::fs::remove_file(&out);
        let mut prober = Command::new("ip")
            .args(["netns", "exec", &client, "python3"])
            .arg(state.join("prober.py"))
            .args([&targets, "7778", &args.flows.to_string()])
            .arg((args.interval_ms as f64 / 1000.0).to_string())
            .arg(probe_seconds.to_string())
            .arg(&out)
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufReader::new(prober.stdout.take().context("prober stdout")?)
            .read_line(&mut line)?;
        std::thread::sleep(Duration::from_millis(400));
        let killed_at = now();
        let node = lab
            .state()
            .pods
            .get(&format!("default/{victim}"))
            .map(|p| p.node.clone())
            .unwrap_or_default();
        if args.kill_node {
            lab.kill_node(&node, false)?;
        } else {
            lab.kill(&format!("default/{victim}"))?;
        }
        let status = prober.wait()?;
        if args.kill_node {
            lab.kill_node(&node, true)?;
        }
        ensure!(status.success(), "the prober failed");
        let probe: Json = serde_json::from_str(&std::fs::read_to_string(&out)?)?;
        if std::env::var_os("VEG_BENCH_DEBUG").is_some() {
            let mut by_source = std::collections::BTreeMap::new();
            for flow in probe["replies"].as_array().into_iter().flatten() {
                let last = flow
                    .as_array()
                    .into_iter()
                    .flatten()
                    .rev()
                    .find(|r| r[0].as_f64().is_some_and(|at| at < killed_at))
                    .and_then(|r| r[1].as_str())
                    .unwrap_or("silent")
                    .to_owned();
                *by_source.entry(last).or_insert(0) += 1;
            }
            eprintln!("    before the kill, flows by gateway: {by_source:?}");
        }
        let mut gap: f64 = 0.0;
        let mut affected = 0;
        let mut unrecovered = 0;
        for flow in probe["replies"].as_array().into_iter().flatten() {
            let replies: Vec<(f64, &str)> = flow
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| Some((r[0].as_f64()?, r[1].as_str()?)))
                .collect();
            // A flow the kill hits: its last reply before the kill came through the victim.
            let through_victim = replies
                .iter()
                .rev()
                .find(|(at, _)| *at < killed_at)
                .is_some_and(|(_, seen)| *seen == dead_external);
            if !through_victim {
                continue;
            }
            affected += 1;
            // The longest silence from the kill on (the links go down a few ms after
            // `killed_at`, so the outage starts after it, not at it).
            let times: Vec<f64> = replies
                .iter()
                .map(|(at, _)| *at)
                .filter(|at| *at >= killed_at - 0.05)
                .collect();
            let longest = times
                .windows(2)
                .map(|pair| pair[1] - pair[0])
                .fold(0.0, f64::max);
            let last = times.last().copied().unwrap_or(killed_at);
            if last < killed_at + probe_seconds - 0.4 - 0.3 {
                unrecovered += 1; // silent for the rest of the probe
            }
            if std::env::var_os("VEG_BENCH_DEBUG").is_some() {
                let worst = times
                    .windows(2)
                    .max_by(|a, b| (a[1] - a[0]).total_cmp(&(b[1] - b[0])));
                if let Some(pair) = worst {
                    let after = replies
                        .iter()
                        .find(|(at, _)| *at >= pair[1])
                        .map(|(_, s)| *s);
                    eprintln!(
                        "    flow: silent {:.1} → {:.1} ms after the kill, then via {after:?}",
                        (pair[0] - killed_at) * 1000.0,
                        (pair[1] - killed_at) * 1000.0
                    );
                }
            }
            gap = gap.max(longest);
        }
        let withdrawn = match mode {
            BfdMode::Monitor => monitor_logs
                .iter()
                .filter_map(|log| nb_write_after(log, killed_at, &dead_internal))
                .reduce(f64::min),
            BfdMode::Native => bfd_down_after(&bfd_log, killed_at, &dead_internal),
        };
        let nb = withdrawn.map_or(f64::NAN, |at| (at - killed_at) * 1000.0);
        eprintln!(
            "  {} {}, {interval} ms × 3, kill {:>2} ({victim}{}): gap {:>6.1} ms over {affected} flows, NB {:>6.1} ms{}",
            build.name(),
            mode.name(),
            round + 1,
            if args.kill_node {
                format!(" and its node {node}")
            } else {
                String::new()
            },
            gap * 1000.0,
            nb,
            if unrecovered > 0 {
                format!(", {unrecovered} flows never recovered")
            } else {
                String::new()
            }
        );
        kills.push(Kill {
            gap_ms: gap * 1000.0,
            nb_ms: nb,
            affected,
            unrecovered,
        });
    }
    let _ = echo.kill();
    let _ = echo.wait();
    let _ = bfd_monitor.kill();
    let _ = bfd_monitor.wait();
    lab.down();
    let _ = std::fs::remove_dir_all(&input);
    Ok((ready_ms, kills, false_withdrawals))
}

/// How many times after `since` the NB BFD monitor log shows a row turning down.
fn bfd_downs_after(log: &Path, since: f64) -> usize {
    bfd_downs(log)
        .into_iter()
        .filter(|(when, _)| *when >= since)
        .count()
}

/// How many sessions a monitor saw go down after `since` (of the two monitors, the bench
/// reports the larger count: never fewer than the writer saw).
fn monitor_downs_after(log: &Path, since: f64) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<Json>(line).ok())
        .filter(|entry| entry["message"] == "gateway session changed" && entry["new"] == "Down")
        .filter(|entry| {
            entry["timestamp"]
                .as_str()
                .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok())
                .is_some_and(|t| t.as_microsecond() as f64 / 1e6 >= since)
        })
        .count()
}

fn main() -> Result<()> {
    let args = args()?;
    let veg = PathBuf::from(env!("CARGO_BIN_EXE_veg"));
    let mut rows = Vec::new();
    for &(build, mode) in &args.setups {
        let install = OvnInstall::locate(build)?;
        veg_lab::ovn::check_prerequisites(&install)?;
        for &interval in &args.timers {
            eprintln!(
                "{}, {} mode, BFD {interval} ms × 3: {} kills, {} flows, a probe per flow every {} ms",
                install.describe(),
                mode.name(),
                args.kills,
                args.flows,
                args.interval_ms
            );
            let (ready_ms, kills, steady) = run_setting(&args, (build, mode), interval, &veg)?;
            rows.push((build, mode, interval, ready_ms, kills, steady));
        }
    }
    println!(
        "\n| OVN | mode | BFD | kill | kills | flows hit per kill (mean) | traffic gap median / p95 / max (ms) | kill → withdrawn in NB median / p95 / max (ms) | gap p95 / detection time | never recovered | lab up → gateway Ready (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (build, mode, interval, ready_ms, kills, _) in &rows {
        let gaps: Vec<f64> = kills
            .iter()
            .filter(|k| k.affected > 0)
            .map(|k| k.gap_ms)
            .collect();
        let nbs: Vec<f64> = kills
            .iter()
            .map(|k| k.nb_ms)
            .filter(|v| v.is_finite())
            .collect();
        let hit =
            kills.iter().map(|k| k.affected).sum::<usize>() as f64 / kills.len().max(1) as f64;
        let detection = f64::from(*interval) * 3.0;
        println!(
            "| {} | {} | {interval} ms × 3 | {} | {} | {hit:.1} / {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.2} | {} | {ready_ms:.0} |",
            build.name(),
            mode.name(),
            if args.kill_node { "node" } else { "pod" },
            kills.len(),
            args.flows,
            percentile(&gaps, 50.0),
            percentile(&gaps, 95.0),
            percentile(&gaps, 100.0),
            percentile(&nbs, 50.0),
            percentile(&nbs, 95.0),
            percentile(&nbs, 100.0),
            percentile(&gaps, 95.0) / detection,
            kills.iter().map(|k| k.unrecovered).sum::<usize>(),
        );
    }
    if args.steady > 0 {
        println!("\n| OVN | mode | BFD | steady run | withdrawals (all false: nothing failed) |");
        println!("|---|---|---|---|---|");
        for (build, mode, interval, _, _, steady) in &rows {
            println!(
                "| {} | {} | {interval} ms × 3 | {} s | {} |",
                build.name(),
                mode.name(),
                args.steady,
                steady.map_or("-".to_owned(), |n| n.to_string())
            );
        }
    }
    Ok(())
}
