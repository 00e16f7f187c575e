//! Pods as namespaces on a real OVN: two subnets on one VPC router; a Pod of each talks to the
//! other through the router over TCP and UDP, IPv4 and IPv6, and the peer sees the Pod's own
//! address. Needs root, the OVN/OVS packages, python3 and ethtool; under CI=true a missing one
//! fails the test.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use veg_lab::{LabPod, LabSubnet, Ovn, OvnConfig};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn net(text: &str) -> ipnet::IpNet {
    text.parse()
        .unwrap_or_else(|_| ipnet::IpNet::from(IpAddr::from([0, 0, 0, 0])))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

#[test]
fn pods_of_two_subnets_talk_through_the_vpc_router() -> Result<()> {
    pods_talk(1, "vt")
}

/// The same with each Pod on its own node (chassis), over Geneve: full-size packets too.
#[test]
fn pods_on_two_nodes_talk_over_geneve() -> Result<()> {
    pods_talk(2, "vg")
}

fn pods_talk(nodes: usize, tag: &str) -> Result<()> {
    // What users run: Kube-OVN's build (the stock one is covered by the lab e2e tests).
    let install = match veg_lab::OvnInstall::locate(veg_lab::OvnBuild::KubeOvn) {
        Ok(install) => install,
        Err(error) => {
            veg_testkit::skip_or_fail(&format!("the lab: {error}"));
            return Ok(());
        }
    };
    if let Err(error) = veg_lab::ovn::check_prerequisites(&install) {
        veg_testkit::skip_or_fail(&format!("the lab: {error}"));
        return Ok(());
    }
    let id = format!("{tag}{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(format!("{id}-ovn"));
    let ovn = Ovn::start(
        &OvnConfig {
            state_dir: dir.clone(),
            prefix: id.clone(),
            chassis: (1..=nodes).map(|n| format!("{id}-c{n}")).collect(),
            install,
        },
        &mut |_, _| {},
    )?;
    let started = Instant::now();
    ovn.add_router("ovn-cluster")?;
    for (name, v4, v6, gw4, gw6) in [
        (
            "subnet-a",
            "198.18.1.0/24",
            "2001:db8:1::/64",
            "198.18.1.1",
            "2001:db8:1::1",
        ),
        (
            "subnet-b",
            "198.18.2.0/24",
            "2001:db8:2::/64",
            "198.18.2.1",
            "2001:db8:2::1",
        ),
    ] {
        ovn.add_subnet(
            "ovn-cluster",
            &LabSubnet {
                name: name.into(),
                cidrs: vec![net(v4), net(v6)],
                gateways: vec![ip(gw4), ip(gw6)],
            },
        )?;
    }
    let pod = |name: &str, v4: &str, v6: &str, gw4: &str, gw6: &str| LabPod {
        name: name.into(),
        namespace: "default".into(),
        addresses: vec![net(v4), net(v6)],
        gateways: vec![ip(gw4), ip(gw6)],
    };
    let a = ovn.add_pod(
        "subnet-a",
        &pod(
            "a1",
            "198.18.1.10/24",
            "2001:db8:1::10/64",
            "198.18.1.1",
            "2001:db8:1::1",
        ),
        0,
        &format!("{id}-c1"),
    )?;
    let b = ovn.add_pod(
        "subnet-b",
        &pod(
            "b1",
            "198.18.2.10/24",
            "2001:db8:2::10/64",
            "198.18.2.1",
            "2001:db8:2::1",
        ),
        1,
        &format!("{id}-c{nodes}"),
    )?;
    ovn.sync()?;
    eprintln!("topology and two Pods in {:?}", started.elapsed());

    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    veg_testkit::probe::write_scripts(&scripts)?;
    let log = scripts.join("echo.log");
    let _server = Server(
        Command::new("ip")
            .args(["netns", "exec", &b, "python3"])
            .arg(scripts.join("echo.py"))
            .arg("7777")
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("ready")
    {
        ensure!(Instant::now() < deadline, "the echo service did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    for (proto, target, want) in [
        ("tcp", "198.18.2.10", "198.18.1.10"),
        ("udp", "198.18.2.10", "198.18.1.10"),
        ("tcp", "2001:db8:2::10", "2001:db8:1::10"),
        ("udp", "2001:db8:2::10", "2001:db8:1::10"),
    ] {
        let output = Command::new("ip")
            .args(["netns", "exec", &a, "python3"])
            .arg(scripts.join("ask.py"))
            // 20 attempts of 1 s (TCP) or 0.5 s (UDP), as the test always waited.
            .args([
                proto,
                target,
                "7777",
                "20",
                if proto == "udp" { "0.5" } else { "1" },
            ])
            .output()?;
        let seen = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        ensure!(
            seen == want,
            "{proto} a1 → {target}: seen as {seen:?}, want {want} ({})",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // A full 1500-byte packet crosses (Geneve's 58 bytes fit the underlay's MTU).
    let ping = Command::new("ip")
        .args([
            "netns", "exec", &a, "ping", "-c1", "-W2", "-M", "do", "-s", "1472",
        ])
        .arg("198.18.2.10")
        .output()?;
    ensure!(
        ping.status.success(),
        "a 1500-byte ping a1 → b1 was lost: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    // Each port is bound to the chassis of its node.
    let chassis_of = |port: &str| -> Result<String> {
        let uuid = ovn
            .install()
            .command("ovn-sbctl")
            .arg(format!("--db={}", ovn.sb_remote()))
            .args(["--bare", "--columns=chassis", "find", "Port_Binding"])
            .arg(format!("logical_port={port}"))
            .output()?;
        let uuid = String::from_utf8_lossy(&uuid.stdout).trim().to_owned();
        let name = ovn
            .install()
            .command("ovn-sbctl")
            .arg(format!("--db={}", ovn.sb_remote()))
            .args(["--bare", "--columns=name", "list", "Chassis", &uuid])
            .output()?;
        Ok(String::from_utf8_lossy(&name.stdout).trim().to_owned())
    };
    ensure!(chassis_of("a1.default")? == format!("{id}-c1"));
    ensure!(chassis_of("b1.default")? == format!("{id}-c{nodes}"));
    // The port names are Kube-OVN's.
    let ports = ovn.nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"])?;
    ensure!(ports.lines().any(|l| l.trim() == "a1.default"), "{ports}");
    let policies = ovn.nbctl(&["lr-policy-list", "ovn-cluster"])?;
    ensure!(policies.matches("31000").count() == 4, "{policies}");
    drop(ovn);
    ensure!(!dir.exists(), "the lab left {}", dir.display());
    let namespaces = Command::new("ip").args(["netns", "list"]).output()?;
    ensure!(
        !String::from_utf8_lossy(&namespaces.stdout).contains(&id),
        "namespaces left"
    );
    Ok(())
}
