//! The `veg` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Result, ensure};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn veg(args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_veg"))
        .args(args)
        .current_dir(repo_root())
        .output()?)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn validate_accepts_the_examples() -> Result<()> {
    let mut args = vec!["validate"];
    let examples = [
        "examples/nad.yaml",
        "examples/subnets.yaml",
        "examples/gateway.yaml",
        "examples/vpc-bfd-port.yaml",
        "examples/gateway-bfd.yaml",
    ];
    args.extend(examples);
    let output = veg(&args)?;
    ensure!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stdout(&output)
    );
    ensure!(
        stdout(&output).is_empty(),
        "unexpected output: {}",
        stdout(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("3 object(s) checked, 0 invalid"),
        "summary: {stderr}"
    );
    Ok(())
}

#[test]
fn validate_names_every_error_and_exits_1() -> Result<()> {
    let file = "crates/cli/tests/data/invalid.yaml";
    let output = veg(&["validate", file])?;
    ensure!(output.status.code() == Some(1), "exit {:?}", output.status);
    let lines: Vec<String> = stdout(&output).lines().map(str::to_owned).collect();
    let expected = [
        "VpcEgressGateway/broken: spec.externalSubent: unknown field",
        "VpcEgressGateway/broken: spec.externalSubnet: the subnet of the external leg is required",
        "VpcEgressGateway/broken: spec.internalIPs[0]: ",
        "VpcEgressGateway/broken: spec.internalIPs[1]: ",
        "VpcEgressGateway/broken: spec.internalIPs: Size of Internal IPs MUST be equal to or greater than Replicas (2 < 3)",
        "VpcEgressGateway/broken: spec.internalIPPool: internalIPs and internalIPPool are mutually exclusive",
        "VpcEgressGateway/broken: spec.policies[0]: Each policy MUST have at least one ipBlocks or subnets",
        "VpcEgressGateway/broken: spec.policies[1].ipBlocks[0]: ",
        "VpcEgressGateway/broken: spec.bfd.minRX: must be between 1 and 3600000 ms, got 0",
        "VpcEgressGateway/broken: spec.bfd.multiplier: ",
        "VpcEgressGateway/wrong-type: spec.trafficPolicy: unknown variant `Nearest`",
        "Vpc/vpc1: spec.bfdPort.ip: ",
    ];
    ensure!(
        lines.len() == expected.len(),
        "expected {} lines, got:\n{}",
        expected.len(),
        lines.join("\n")
    );
    for (line, want) in lines.iter().zip(expected) {
        let want = format!("{file}: {want}");
        ensure!(
            line.starts_with(&want),
            "line {line:?} should start with {want:?}"
        );
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("3 object(s) checked, 3 invalid"),
        "summary: {stderr}"
    );
    Ok(())
}

#[test]
fn validate_reports_yaml_errors_and_missing_files() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("veg-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let broken = dir.join("broken.yaml");
    std::fs::write(&broken, "apiVersion: [unclosed\n")?;
    let broken = broken.to_string_lossy().into_owned();
    let output = veg(&["validate", &broken]);
    let _ = std::fs::remove_dir_all(&dir);
    let output = output?;
    ensure!(output.status.code() == Some(1), "exit {:?}", output.status);
    ensure!(
        stdout(&output).starts_with(&format!("{broken}: not valid YAML")),
        "{}",
        stdout(&output)
    );

    let output = veg(&["validate", "no/such/file.yaml"])?;
    ensure!(output.status.code() == Some(2), "exit {:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(stderr.contains("cannot read no/such/file.yaml"), "{stderr}");
    Ok(())
}

#[test]
fn crd_prints_the_committed_crd() -> Result<()> {
    let output = veg(&["crd"])?;
    ensure!(output.status.success());
    let committed =
        std::fs::read_to_string(repo_root().join("deploy/crds/vpc-egress-gateways.yaml"))?;
    ensure!(
        stdout(&output) == committed,
        "veg crd differs from deploy/crds; run scripts/gen-crd.sh"
    );
    Ok(())
}

/// Only commands that work are offered.
#[test]
fn help_lists_the_working_commands() -> Result<()> {
    let output = veg(&["--help"])?;
    ensure!(output.status.success());
    let help = stdout(&output);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    ensure!(
        commands
            == [
                "crd",
                "validate",
                "bfdd",
                "bfdctl",
                "gateway",
                "monitor",
                "controller",
                "lab",
                "kubectl-plugin",
                "help"
            ],
        "{commands:?}"
    );
    Ok(())
}

/// Serves one connection on loopback with `answer`, returning the port.
fn answer_once(answer: &'static str) -> Result<(u16, std::thread::JoinHandle<String>)> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let server = std::thread::spawn(move || {
        let mut request = String::new();
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buffer = [0u8; 1024];
            while !request.contains("\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => request.push_str(&String::from_utf8_lossy(&buffer[..read])),
                }
            }
            let _ = stream.write_all(answer.as_bytes());
        }
        request
    });
    Ok((port, server))
}

#[test]
fn gateway_probe_asks_loopback_and_exits_by_the_status() -> Result<()> {
    let (port, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")?;
    let output = veg(&[
        "gateway",
        "probe",
        "--port",
        &port.to_string(),
        "--path",
        "/livez",
    ])?;
    let request = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    ensure!(
        request.starts_with("GET /livez HTTP/1.1\r\n"),
        "{request:?}"
    );
    ensure!(output.status.success(), "{output:?}");
    ensure!(stdout(&output).trim() == "200 ok", "{output:?}");

    let (port, server) =
        answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\nnot in sync: nft table veg\n")?;
    let output = veg(&["gateway", "probe", "--port", &port.to_string()])?;
    let request = server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    ensure!(request.starts_with("GET /readyz "), "{request:?}");
    ensure!(output.status.code() == Some(1), "{output:?}");
    ensure!(
        stdout(&output).contains("503 not in sync: nft table veg"),
        "{output:?}"
    );

    // Nothing listening: refused, said, exit 1.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let output = veg(&["gateway", "probe", "--port", &port.to_string()])?;
    ensure!(output.status.code() == Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains(&format!("GET http://127.0.0.1:{port}/readyz"))
            && stderr.contains("refused"),
        "{stderr}"
    );
    Ok(())
}

/// bfdd runs out of file descriptors (a flood of control connections under a low
/// RLIMIT_NOFILE): its control socket keeps serving once descriptors are free again. It used
/// to stop for good at the first failed accept while the daemon ran on. In a network
/// namespace of its own (no BFD port shared with anything else); needs root.
#[test]
fn bfdd_control_socket_survives_running_out_of_file_descriptors() -> Result<()> {
    if !veg_testkit::require(
        "the bfdd descriptor test",
        &["/usr/bin/unshare", "/usr/bin/prlimit"],
    ) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("vfd{}-bfdd", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("ctl.sock");
    struct Stop(std::process::Child, PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }
    let daemon = Command::new("unshare")
        .args(["-n", "prlimit", "--nofile=64:64"])
        .arg(env!("CARGO_BIN_EXE_veg"))
        .args(["bfdd", "--no-ipv6", "--control-socket"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("bfdd.log"))?)
        .spawn()?;
    let _stop = Stop(daemon, dir.clone());
    let status = || {
        Command::new(env!("CARGO_BIN_EXE_veg"))
            .arg("bfdctl")
            .arg("--socket")
            .arg(&socket)
            .arg("status")
            .output()
            .is_ok_and(|output| output.status.success())
    };
    ensure!(
        wait_for(Duration::from_secs(5), status),
        "bfdd's control socket never answered"
    );
    // More connections than descriptors: accepts fail with EMFILE for a while.
    let flood: Vec<std::os::unix::net::UnixStream> = (0..100)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&socket).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let log = std::fs::read_to_string(dir.join("bfdd.log"))?;
    ensure!(
        log.contains("Too many open files"),
        "the flood exhausted no descriptors (connected {}): {log}",
        flood.len()
    );
    drop(flood);
    ensure!(
        wait_for(Duration::from_secs(5), status),
        "the control socket stopped after running out of descriptors:\n{}",
        std::fs::read_to_string(dir.join("bfdd.log"))?
    );
    Ok(())
}

fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    done()
}

/// The ports the gateway's nftables table closes on the external leg are the ones the
/// controller renders for the Pod's listeners.
#[test]
fn the_gateway_closes_the_ports_the_controller_renders() {
    use veg_controller::plan::workload::{BFDD_HTTP_PORT, GATEWAY_HTTP_PORT};
    assert_eq!(i32::from(veg_gateway::GATEWAY_HTTP_PORT), GATEWAY_HTTP_PORT);
    assert_eq!(i32::from(veg_gateway::BFDD_HTTP_PORT), BFDD_HTTP_PORT);
}
