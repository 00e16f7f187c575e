//! `veg monitor` end to end: a real `ovsdb-server` holding a router with two BFD-enabled
//! reroute policies in monitor mode, two gateway instances running `veg bfdd` (passive), two
//! monitors — all in network namespaces on one bridge (198.18.0.0/24). A gateway's bfdd killed
//! → its nexthop removed; restarted → added back; all killed → nexthops empty; the writing
//! monitor killed → the other one takes over and writes the next change. Needs root, ip,
//! ovsdb-server; under CI=true a missing one fails.

use veg_testkit::ovsdb as server;
mod support;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use support::run;
use veg_ovsdb::{Atom, Client, ClientConfig, Operation, Row, Value};

const GATEWAYS: [&str; 2] = ["198.18.0.12", "198.18.0.13"];

fn prerequisites() -> bool {
    server::prerequisites() && support::require("monitor lab", &["/usr/sbin/ip"])
}

struct Lab {
    id: String,
    dir: std::path::PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
}

impl Lab {
    fn new() -> Result<Lab> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // Per process and per test: the tests of this binary run side by side.
        let id = format!(
            "vm{}{}",
            std::process::id() % 1000,
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{id}-monitor"));
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            id,
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
        };
        let sw = lab.ns("sw");
        run("ip", &["netns", "add", &sw])?;
        lab.namespaces.push(sw.clone());
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &sw, "link", "set", "br0", "up"])?;
        for (role, address) in [
            ("ma", "198.18.0.1"),
            ("mb", "198.18.0.2"),
            ("g1", GATEWAYS[0]),
            ("g2", GATEWAYS[1]),
        ] {
            let ns = lab.ns(role);
            run("ip", &["netns", "add", &ns])?;
            lab.namespaces.push(ns.clone());
            let port = format!("{}{role}", lab.id);
            run(
                "ip",
                &[
                    "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                    "netns", &sw,
                ],
            )?;
            run(
                "ip",
                &["-n", &sw, "link", "set", &port, "master", "br0", "up"],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    "eth0",
                ],
            )?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// The lab with both gateways' bfdd running.
    fn with_gateways() -> Result<Lab> {
        let mut lab = Lab::new()?;
        lab.gateway_bfdd(0)?;
        lab.gateway_bfdd(1)?;
        Ok(lab)
    }

    /// Every write to the policies' nexthops from now on, recorded by ovsdb-client.
    fn record_policies(&self, nb: &str) -> Result<veg_testkit::recorder::TableRecorder> {
        veg_testkit::recorder::TableRecorder::start(
            std::path::Path::new("ovsdb-client"),
            nb,
            "OVN_Northbound",
            "Logical_Router_Policy",
            &["nexthops"],
            &self.dir.join("policies.jsonl"),
        )
    }

    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.id)
    }

    fn spawn(&mut self, name: &str, role: &str, args: &[&str]) -> Result<()> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(role), env!("CARGO_BIN_EXE_veg")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    fn gateway_bfdd(&mut self, index: usize) -> Result<()> {
        self.gateway_bfdd_with(index, &[])
    }

    fn gateway_bfdd_with(&mut self, index: usize, extra: &[&str]) -> Result<()> {
        let socket = self.dir.join(format!("g{index}.sock"));
        let socket = socket.to_string_lossy().into_owned();
        let (role, local) = (format!("g{}", index + 1), GATEWAYS[index]);
        let mut args = vec![
            "bfdd",
            "--allow",
            "198.18.0.1,198.18.0.2",
            "--local",
            local,
            "--min-tx-ms",
            "100",
            "--min-rx-ms",
            "100",
            "--multiplier",
            "3",
            "--min-ttl",
            "254",
            "--no-ipv6",
            "--control-socket",
            &socket,
        ];
        args.extend_from_slice(extra);
        self.spawn(&format!("g{index}"), &role, &args)
    }

    /// Whether process `name` still runs.
    fn running(&mut self, name: &str) -> bool {
        self.children
            .iter_mut()
            .find(|(n, _)| n == name)
            .is_some_and(|(_, child)| matches!(child.try_wait(), Ok(None)))
    }

    fn monitor(&mut self, holder: &str, role: &str, local: &str, nb: &str) -> Result<()> {
        self.monitor_with(holder, role, local, nb, &[])
    }

    fn monitor_with(
        &mut self,
        holder: &str,
        role: &str,
        local: &str,
        nb: &str,
        extra: &[&str],
    ) -> Result<()> {
        let socket = self.dir.join(format!("{holder}.sock"));
        let socket = socket.to_string_lossy().into_owned();
        let mut args = vec![
            "monitor",
            "--nb",
            nb,
            "--vpc",
            "ovn-cluster",
            "--local",
            local,
            "--holder",
            holder,
            "--control-socket",
            &socket,
            "--renew-ms",
            "500",
            "--lease-timeout-ms",
            "1500",
        ];
        args.extend_from_slice(extra);
        self.spawn(holder, role, &args)
    }

    /// SIGKILL: no AdminDown, no goodbye (a crash).
    fn kill(&mut self, name: &str) -> Result<()> {
        let position = self
            .children
            .iter()
            .position(|(n, _)| n == name)
            .with_context(|| format!("no process {name}"))?;
        let (_, mut child) = self.children.remove(position);
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGSTOP or SIGCONT: a writer frozen (a long pause, a starved process) and woken.
    fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let (_, child) = self
            .children
            .iter()
            .find(|(n, _)| n == name)
            .with_context(|| format!("no process {name}"))?;
        run("kill", &[&format!("-{signal}"), &child.id().to_string()])
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nexthops(client: &Client) -> Vec<BTreeSet<String>> {
    client
        .replica()
        .table("Logical_Router_Policy")
        .map(|(_, row)| {
            row.get("nexthops")
                .map(Value::as_set)
                .unwrap_or_default()
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        })
        .collect()
}

fn lease(client: &Client) -> String {
    client
        .replica()
        .table("NB_Global")
        .next()
        .and_then(|(_, row)| {
            row.get("external_ids")?
                .as_map()
                .get(&Atom::string("veg-monitor:ovn-cluster"))
                .and_then(|v| v.as_str().map(str::to_owned))
        })
        .unwrap_or_default()
}

async fn wait_nexthops(client: &Client, want: &[&str], limit: Duration) -> Result<Duration> {
    let want: BTreeSet<String> = want.iter().map(|s| (*s).to_owned()).collect();
    let started = Instant::now();
    client
        .wait_for(limit, |_| {
            let all = nexthops(client);
            all.len() == 2 && all.iter().all(|hops| *hops == want)
        })
        .await
        .with_context(|| {
            format!(
                "nexthops not {want:?} within {limit:?}: {:?}",
                nexthops(client)
            )
        })?;
    Ok(started.elapsed())
}

/// An NB with the router's two monitored policies, as the controller writes them in monitor
/// mode (candidates and timers) with `nexthops` as a writer left them, and a client watching
/// it; no lease.
async fn nb_with_policies(nexthops: &[&str]) -> Result<(server::Servers, String, Client)> {
    let servers = server::Servers::standalone()?;
    let nb = format!("unix:{}", servers.socket(0).display());
    let mut monitor = veg_ovsdb::MonitorSpec::new();
    for table in ["NB_Global", "Logical_Router", "Logical_Router_Policy"] {
        monitor.insert(table.to_owned(), Vec::new());
    }
    let client = Client::connect(
        ClientConfig::northbound(&nb, monitor)?,
        Duration::from_secs(5),
    )
    .await?;
    let hops = Value::string_set(nexthops.iter().map(|h| (*h).to_owned()));
    let policy = |name: &str, matching: &str| Operation::Insert {
        table: "Logical_Router_Policy".into(),
        row: Row::from([
            ("priority".to_owned(), Value::integer(29100)),
            ("match".to_owned(), Value::string(matching)),
            ("action".to_owned(), Value::string("reroute")),
            ("nexthops".to_owned(), hops.clone()),
            (
                "external_ids".to_owned(),
                Value::string_map([
                    ("vendor", "kube-ovn"),
                    ("vpc-egress-gateway", "default/gateway1"),
                    ("af", "4"),
                    ("veg-candidates", "198.18.0.12,198.18.0.13"),
                    ("veg-bfd", "100/100/3"),
                ]),
            ),
        ]),
        uuid_name: Some(name.to_owned()),
    };
    client
        .transact(&[
            Operation::Insert {
                table: "NB_Global".into(),
                row: Row::new(),
                uuid_name: None,
            },
            policy("p1", "ip4.src == $VEG.8ca38ae7da18.ipv4"),
            policy("p2", "ip4.src == $VEG.8ca38ae7da18_ip4"),
            Operation::Insert {
                table: "Logical_Router".into(),
                row: Row::from([
                    ("name".to_owned(), Value::string("ovn-cluster")),
                    (
                        "policies".to_owned(),
                        Value::Set(
                            [Atom::NamedUuid("p1".into()), Atom::NamedUuid("p2".into())].into(),
                        ),
                    ),
                ]),
                uuid_name: None,
            },
        ])
        .await?;
    Ok((servers, nb, client))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_keep_nexthops_to_the_instances_whose_session_is_up() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let (_servers, nb, client) = nb_with_policies(&[]).await?;
    let mut lab = Lab::with_gateways()?;
    lab.monitor("a", "ma", "198.18.0.1", &nb)?;
    lab.monitor("b", "mb", "198.18.0.2", &nb)?;
    let both = ["198.18.0.12", "198.18.0.13"];
    let took = wait_nexthops(&client, &both, Duration::from_secs(10))
        .await
        .with_context(|| format!("monitor a:\n{}\nmonitor b:\n{}", lab.log("a"), lab.log("b")))?;
    eprintln!("both instances in the nexthops {took:?} after start");
    let holder = lease(&client);
    ensure!(
        holder.starts_with("a/") || holder.starts_with("b/"),
        "lease {holder:?}"
    );

    // A gateway's bfdd crashes: detection (300 ms) + one transaction. Not in the first
    // milliseconds after Up: until the peer's first packet at its configured rate arrives (it
    // goes out at once on Up), the detection time is still 3 × its slow-start 1 s — a kill in
    // that window was seen to take 3 s, here and in the all-down step.
    let settle = || tokio::time::sleep(Duration::from_millis(200));
    settle().await;
    lab.kill("g0")?;
    let took = wait_nexthops(&client, &["198.18.0.13"], Duration::from_secs(2))
        .await
        .with_context(|| format!("monitor a:\n{}\nmonitor b:\n{}", lab.log("a"), lab.log("b")))?;
    eprintln!("crashed instance removed in {took:?}");
    ensure!(took < Duration::from_millis(1500), "removal took {took:?}");
    lab.gateway_bfdd(0)?;
    let took = wait_nexthops(&client, &both, Duration::from_secs(5)).await?;
    eprintln!("restarted instance added back in {took:?}");

    // Every instance gone: empty nexthops (the 29090 drop would catch the traffic).
    settle().await;
    lab.kill("g0")?;
    lab.kill("g1")?;
    wait_nexthops(&client, &[], Duration::from_secs(2))
        .await
        .with_context(|| format!("monitor a:\n{}\nmonitor b:\n{}", lab.log("a"), lab.log("b")))?;
    lab.gateway_bfdd(0)?;
    lab.gateway_bfdd(1)?;
    wait_nexthops(&client, &both, Duration::from_secs(5)).await?;

    // The writer crashes: the standby takes the lease and writes the next change.
    let writer = lease(&client);
    let (dead, alive) = if writer.starts_with("a/") {
        ("a", "b")
    } else {
        ("b", "a")
    };
    lab.kill(dead)?;
    let started = Instant::now();
    client
        .wait_for(Duration::from_secs(5), |_| {
            lease(&client).starts_with(&format!("{alive}/"))
        })
        .await
        .with_context(|| {
            format!(
                "{alive} did not take over: {:?}\n{}",
                lease(&client),
                lab.log(alive)
            )
        })?;
    eprintln!("lease taken over by {alive} in {:?}", started.elapsed());
    lab.kill("g1")?;
    let took = wait_nexthops(&client, &["198.18.0.12"], Duration::from_secs(3)).await?;
    eprintln!("the new writer removed a crashed instance in {took:?}");
    Ok(())
}

/// A monitor that starts (or takes over) before its sessions could come Up must not withdraw
/// the instances the NB carries: with no lease it writes at once, and a write from an empty
/// Up set would empty the nexthops and let the 29090 drop blackhole the gateway until the
/// sessions are Up. Every NB write over the first 4 s is recorded by ovsdb-client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_monitor_withdraws_nothing_before_its_sessions_can_be_up() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let both = ["198.18.0.12", "198.18.0.13"];
    let (_servers, nb, client) = nb_with_policies(&both).await?;
    let mut lab = Lab::with_gateways()?;
    let record = lab.record_policies(&nb)?;
    lab.monitor("a", "ma", "198.18.0.1", &nb)?;
    client
        .wait_for(Duration::from_secs(3), |_| lease(&client).starts_with("a/"))
        .await
        .with_context(|| format!("monitor a took no lease:\n{}", lab.log("a")))?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let states = record.stop()?;
    let want: BTreeSet<String> = both.iter().map(|h| (*h).to_owned()).collect();
    let short: Vec<String> = states
        .iter()
        .flat_map(|rows| rows.values())
        .map(|row| veg_testkit::recorder::strings(&row["nexthops"]))
        .filter(|hops| hops.iter().cloned().collect::<BTreeSet<_>>() != want)
        .map(|hops| hops.join(","))
        .collect();
    ensure!(
        !states.is_empty() && short.is_empty(),
        "a starting monitor withdrew live instances: {short:?} in {} updates\n{}",
        states.len(),
        lab.log("a")
    );
    // And it judges for real once its sessions had their time: a dead instance goes.
    lab.kill("g1")?;
    wait_nexthops(&client, &["198.18.0.12"], Duration::from_secs(2)).await?;
    Ok(())
}

/// A writer frozen long enough for the standby to take the lease wakes up believing it still
/// writes, and with every session timed out in its eyes: its write must be refused by the
/// lease guard, so the NB keeps what the new writer wrote. Every NB write is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_writer_that_wakes_up_writes_nothing() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let (_servers, nb, client) = nb_with_policies(&[]).await?;
    let mut lab = Lab::with_gateways()?;
    lab.monitor("a", "ma", "198.18.0.1", &nb)?;
    let both = ["198.18.0.12", "198.18.0.13"];
    wait_nexthops(&client, &both, Duration::from_secs(10)).await?;
    // b starts once a holds the lease: a is the writer.
    lab.monitor("b", "mb", "198.18.0.2", &nb)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    ensure!(
        lease(&client).starts_with("a/"),
        "lease {:?}",
        lease(&client)
    );
    lab.signal("a", "STOP")?;
    client
        .wait_for(Duration::from_secs(5), |_| lease(&client).starts_with("b/"))
        .await
        .with_context(|| format!("b did not take over:\n{}", lab.log("b")))?;
    lab.kill("g1")?;
    wait_nexthops(&client, &["198.18.0.12"], Duration::from_secs(3)).await?;
    let record = lab.record_policies(&nb)?;
    // a wakes: its sessions expired while it was frozen, and it still thinks it writes.
    lab.signal("a", "CONT")?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let states = record.stop()?;
    let written: Vec<String> = states
        .iter()
        .flat_map(|rows| rows.values())
        .map(|row| veg_testkit::recorder::strings(&row["nexthops"]).join(","))
        .filter(|hops| hops != "198.18.0.12")
        .collect();
    let log = lab.log("a");
    ensure!(
        !states.is_empty() && written.is_empty(),
        "the deposed writer changed the NB: {written:?}\n{log}"
    );
    // Whether it tried before it read the new lease depends on which of its wake-ups comes
    // first; either way nothing of its reached the NB.
    eprintln!(
        "the deposed writer's write was {}",
        if log.contains("nexthop write failed") {
            "refused by the guard"
        } else {
            "not attempted (it read the new lease first)"
        }
    );
    Ok(())
}

/// Started before the NB (an OVN not up yet, an outage): the monitor waits and says why,
/// instead of exiting after 10 s as it did; once the NB comes it takes the lease and does
/// its work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_started_before_the_nb_waits_for_it() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let both = ["198.18.0.12", "198.18.0.13"];
    let (servers, nb, client) = nb_with_policies(&both).await?;
    servers.stop(0, false)?;
    let mut lab = Lab::with_gateways()?;
    lab.monitor("a", "ma", "198.18.0.1", &nb)?;
    // Longer than the 10 s after which it used to give up.
    tokio::time::sleep(Duration::from_secs(11)).await;
    ensure!(
        lab.running("a"),
        "the monitor exited while the NB was down:\n{}",
        lab.log("a")
    );
    ensure!(
        lab.log("a")
            .contains("the OVN Northbound database is not reachable; still trying"),
        "no word of the wait:\n{}",
        lab.log("a")
    );
    servers.start(0)?;
    client
        .wait_for(Duration::from_secs(10), |_| {
            lease(&client).starts_with("a/")
        })
        .await
        .with_context(|| format!("no lease once the NB came:\n{}", lab.log("a")))?;
    lab.kill("g1")?;
    wait_nexthops(&client, &["198.18.0.12"], Duration::from_secs(6)).await?;
    Ok(())
}

/// SIGTERM (a rolling update, a drained node): the writer gives the lease up, so the standby
/// takes it at its next renewal (these monitors renew every 500 ms), not after the lease
/// timeout (1.5 s here since the last renewal, so at least 1 s after the signal) that a
/// crashed writer costs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitor_stopped_by_sigterm_hands_the_lease_over_at_once() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let both = ["198.18.0.12", "198.18.0.13"];
    let (_servers, nb, client) = nb_with_policies(&both).await?;
    let mut lab = Lab::with_gateways()?;
    lab.monitor("a", "ma", "198.18.0.1", &nb)?;
    client
        .wait_for(Duration::from_secs(5), |_| lease(&client).starts_with("a/"))
        .await
        .with_context(|| format!("monitor a took no lease:\n{}", lab.log("a")))?;
    lab.monitor("b", "mb", "198.18.0.2", &nb)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(
        lease(&client).starts_with("a/"),
        "b took the lease from a live a"
    );
    let stopped = Instant::now();
    lab.signal("a", "TERM")?;
    client
        .wait_for(Duration::from_secs(5), |_| lease(&client).starts_with("b/"))
        .await
        .with_context(|| format!("b did not take over:\n{}\n{}", lab.log("a"), lab.log("b")))?;
    let took = stopped.elapsed();
    eprintln!("lease handed over {took:?} after SIGTERM");
    ensure!(
        lab.log("a").contains("released the writer lease"),
        "a did not release:\n{}",
        lab.log("a")
    );
    // One renewal period (500 ms) plus a transaction; a lease left to time out takes 1 s or
    // more (measured 1.53 s before the release existed, 32 ms with it).
    ensure!(took < Duration::from_millis(900), "hand-over took {took:?}");
    Ok(())
}

/// An instance whose session keeps going Down is held out of the nexthops after it comes back
/// Up (its Pods' traffic is not moved back and forth, and a spoofer cannot make it flap at
/// will), then rejoins when the hold ends. Here: 3 Downs within 30 s hold it for 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_instance_is_held_out_then_rejoins() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let both = ["198.18.0.12", "198.18.0.13"];
    let (_servers, nb, client) = nb_with_policies(&both).await?;
    let mut lab = Lab::with_gateways()?;
    lab.monitor_with(
        "a",
        "ma",
        "198.18.0.1",
        &nb,
        &[
            "--flaps",
            "3",
            "--flap-window-ms",
            "30000",
            "--hold-down-ms",
            "3000",
        ],
    )?;
    client
        .wait_for(Duration::from_secs(5), |_| lease(&client).starts_with("a/"))
        .await
        .with_context(|| format!("no lease:\n{}", lab.log("a")))?;
    // Past the first verdict (sessions judged) with both in.
    tokio::time::sleep(Duration::from_secs(4)).await;
    wait_nexthops(&client, &both, Duration::from_secs(5)).await?;
    for flap in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        lab.kill("g0")?;
        wait_nexthops(&client, &["198.18.0.13"], Duration::from_secs(3))
            .await
            .with_context(|| format!("flap {flap}: g0 not withdrawn\n{}", lab.log("a")))?;
        lab.gateway_bfdd(0)?;
        if flap < 2 {
            wait_nexthops(&client, &both, Duration::from_secs(5))
                .await
                .with_context(|| format!("flap {flap}: g0 not back\n{}", lab.log("a")))?;
        }
    }
    let restarted = Instant::now();
    // Its session comes Up within a second or so; the hold keeps it out meanwhile.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ensure!(
        nexthops(&client)
            .iter()
            .all(|hops| !hops.contains("198.18.0.12")),
        "a flapping instance rejoined at once: {:?}\n{}",
        nexthops(&client),
        lab.log("a")
    );
    ensure!(
        lab.log("a").contains("instance flapping"),
        "the hold is not reported:\n{}",
        lab.log("a")
    );
    wait_nexthops(&client, &both, Duration::from_secs(6))
        .await
        .with_context(|| format!("g0 did not rejoin after the hold\n{}", lab.log("a")))?;
    eprintln!("held out for {:?} after its restart", restarted.elapsed());
    Ok(())
}

/// Keyed SHA1 on both ends (`--auth-key-file`): a gateway with the monitor's key comes Up and
/// into the nexthops; one with another key never does (its packets do not verify), nor does
/// one without authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_sha1_sessions_come_up_only_with_the_same_key() -> Result<()> {
    if !prerequisites() {
        return Ok(());
    }
    let (_servers, nb, client) = nb_with_policies(&[]).await?;
    let mut lab = Lab::new()?;
    let key = |name: &str, text: &str| -> Result<String> {
        let path = lab.dir.join(name);
        std::fs::write(&path, text)?;
        Ok(path.to_string_lossy().into_owned())
    };
    let (good, other) = (
        key("good.key", "s3cret-shared-key\n")?,
        key("other.key", "not-the-same")?,
    );
    lab.gateway_bfdd_with(0, &["--auth-key-file", &good])?;
    lab.gateway_bfdd_with(1, &["--auth-key-file", &other])?;
    lab.monitor_with("a", "ma", "198.18.0.1", &nb, &["--auth-key-file", &good])?;
    wait_nexthops(&client, &["198.18.0.12"], Duration::from_secs(10))
        .await
        .with_context(|| format!("the keyed session did not come up:\n{}", lab.log("a")))?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        nexthops(&client)
            .iter()
            .all(|hops| !hops.contains("198.18.0.13")),
        "a gateway with another key came in: {:?}",
        nexthops(&client)
    );
    // Without authentication at all: still out.
    lab.kill("g1")?;
    lab.gateway_bfdd(1)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ensure!(
        nexthops(&client)
            .iter()
            .all(|hops| hops.len() == 1 && hops.contains("198.18.0.12")),
        "an unauthenticated gateway came in: {:?}",
        nexthops(&client)
    );
    Ok(())
}
