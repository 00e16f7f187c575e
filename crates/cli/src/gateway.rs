//! `veg gateway init|run|show|probe`: the agent of a gateway Pod. Flags mirror what the controller
//! renders into the Pod (each has a `VEG_GW_*` variable); lists are comma separated and each
//! entry's family says where it belongs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ipnet::IpNet;
use veg_gateway::agent::{self, AgentConfig};
use veg_gateway::config::AgentInput;
use veg_gateway::metrics::Metrics;

use crate::logging::{self, LogFormat};

/// The gateway agent.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: GatewayCommand,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Apply once and exit (non-zero with the failed step, its object and the kernel's error).
    Init(InputArgs),
    /// Apply, then repair drift, watch the uplink and serve metrics until SIGTERM.
    Run(RunArgs),
    /// Print the applied rules, routes and nftables tables (and, with
    /// --internal-gateway, what differs from the plan).
    Show(InputArgs),
    /// Ask the Pod's own agent or bfdd over loopback (an exec probe: the kubelet cannot reach
    /// Pods of a custom VPC); exit 0 when it answers 2xx.
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
struct ProbeArgs {
    /// The local HTTP port (the agent's 10670, bfdd's 10669).
    #[arg(long, default_value_t = 10670)]
    port: u16,
    /// The path to ask.
    #[arg(long, default_value = "/readyz")]
    path: String,
    /// Give up after this long, ms.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// What the gateway is.
#[derive(Debug, Args)]
struct InputArgs {
    /// The leg in the VPC; `auto`: the interface whose subnet holds the internal gateway.
    #[arg(long, env = "VEG_GW_INTERNAL_INTERFACE", default_value = "eth0")]
    internal_interface: String,
    /// The leg outside (the Multus attachment); `auto`: the interface whose subnet holds the
    /// external gateway.
    #[arg(long, env = "VEG_GW_EXTERNAL_INTERFACE", default_value = "net1")]
    external_interface: String,
    /// The VPC router's address on the internal subnet (one per family); init and run need
    /// it, show compares with the plan only when it is given.
    #[arg(long, env = "VEG_GW_INTERNAL_GATEWAY", value_delimiter = ',')]
    internal_gateway: Vec<IpAddr>,
    /// The external network's gateway (one per family; a family without one gets no
    /// default route and no SNAT).
    #[arg(long, env = "VEG_GW_EXTERNAL_GATEWAY", value_delimiter = ',')]
    external_gateway: Vec<IpAddr>,
    /// Sources forwarded without SNAT (policies with snat: false).
    #[arg(long, env = "VEG_GW_FORWARD_ONLY", value_delimiter = ',', value_parser = parse_net)]
    forward_only: Vec<IpNet>,
    /// Every policy source; routed back through the internal leg.
    #[arg(long = "source", env = "VEG_GW_SOURCES", value_delimiter = ',', value_parser = parse_net)]
    sources: Vec<IpNet>,
    /// The VPC's BFD port addresses.
    #[arg(long = "bfd-peer", env = "VEG_GW_BFD_PEERS", value_delimiter = ',')]
    bfd_peers: Vec<IpAddr>,
    /// The BFD peers are router ports (native mode): routed through the internal gateway
    /// even inside the internal subnet (else such a peer is taken as on-link: a monitor).
    #[arg(long, env = "VEG_GW_BFD_PEERS_ROUTED")]
    bfd_peers_routed: bool,
    /// The nft program.
    #[arg(long, env = "VEG_GW_NFT", default_value = "nft")]
    nft: String,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Full check period, ms (netlink changes are also acted on at once).
    #[arg(long, env = "VEG_GW_CHECK_INTERVAL_MS", default_value_t = 1000)]
    check_interval_ms: u64,
    /// Uplink probe period, ms; 0 disables the uplink check.
    #[arg(long, env = "VEG_GW_UPLINK_INTERVAL_MS", default_value_t = 200)]
    uplink_interval_ms: u64,
    /// Probes in a row that change the uplink state.
    #[arg(long, env = "VEG_GW_UPLINK_MULTIPLIER", default_value_t = 3)]
    uplink_multiplier: u32,
    /// The local veg bfdd control socket, told AdminDown (path down) when the uplink fails.
    #[arg(long, env = "VEG_GW_BFD_CONTROL")]
    bfd_control: Option<PathBuf>,
    /// Address of /metrics, /livez and /readyz.
    #[arg(long, env = "VEG_GW_HTTP")]
    http: Option<SocketAddr>,
    /// Log format.
    #[arg(long, env = "VEG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// A CIDR, or a bare address as a host prefix.
fn parse_net(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR"))
}

impl InputArgs {
    fn input(&self) -> AgentInput {
        AgentInput {
            internal_interface: self.internal_interface.clone(),
            external_interface: self.external_interface.clone(),
            internal_gateways: self.internal_gateway.clone(),
            external_gateways: self.external_gateway.clone(),
            forward_only: self.forward_only.clone(),
            sources: self.sources.clone(),
            bfd_peers: self.bfd_peers.clone(),
            bfd_peers_routed: self.bfd_peers_routed,
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs a `veg gateway` subcommand.
pub fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        GatewayCommand::Init(args) => init(&args),
        GatewayCommand::Run(args) => run_agent(args),
        GatewayCommand::Show(args) => show(args),
        GatewayCommand::Probe(args) => Ok(probe(&args)),
    }
}

/// One HTTP/1.1 GET on loopback; the answer's status line (and body, which says why when not
/// ready) is printed, so a failing probe explains itself in the Pod's events.
fn probe(args: &ProbeArgs) -> ExitCode {
    use std::io::{Read as _, Write as _};
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    let address = SocketAddr::from(([127, 0, 0, 1], args.port));
    let answer = (|| -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&address, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        // One write: the request reaches the server whole.
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            args.path
        );
        stream.write_all(request.as_bytes())?;
        let mut answer = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut answer)?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })();
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("GET http://{address}{}: {error}", args.path);
            return ExitCode::from(1);
        }
    };
    match http_status(&answer) {
        Some((status, body)) => {
            let body = body.trim();
            println!("{status} {body}");
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        None => {
            eprintln!("GET http://{address}{}: not an HTTP answer", args.path);
            ExitCode::from(1)
        }
    }
}

/// The status code and body of an HTTP/1.x answer (chunked bodies are shown as sent).
fn http_status(answer: &str) -> Option<(u16, &str)> {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status_line = head.lines().next()?;
    let mut words = status_line.split_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = words.next()?.parse().ok()?;
    Some((status, body))
}

fn init(args: &InputArgs) -> anyhow::Result<ExitCode> {
    let input = args.input();
    let report = runtime()?.block_on(async {
        let kernel = agent::kernel(&args.nft)?;
        agent::init(&kernel, &input).await
    });
    match report {
        Ok(report) => {
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("veg gateway init: {error}");
            Ok(ExitCode::from(1))
        }
    }
}

fn run_agent(args: RunArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.log_format);
    let config = AgentConfig {
        input: args.input.input(),
        nft: args.input.nft.clone(),
        check_interval: Duration::from_millis(args.check_interval_ms.max(50)),
        uplink_interval: Duration::from_millis(args.uplink_interval_ms),
        uplink_multiplier: args.uplink_multiplier,
        bfd_control: args.bfd_control,
        http: args.http,
    };
    runtime()?.block_on(async {
        let shutdown = veg_daemon::shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
        agent::run(config, Arc::new(Metrics::default()), shutdown)
            .await
            .context("gateway agent failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

fn show(args: InputArgs) -> anyhow::Result<ExitCode> {
    let input = (!args.internal_gateway.is_empty()).then(|| args.input());
    let text = runtime()?.block_on(async {
        let kernel = agent::kernel(&args.nft)?;
        agent::show(&kernel, input.as_ref()).await
    })?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::http_status;

    #[test]
    fn http_status_reads_the_status_line_and_body() {
        let answer = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\n\r\nout of sync\n";
        assert_eq!(http_status(answer), Some((503, "out of sync\n")));
        assert_eq!(http_status("HTTP/1.0 200 OK\r\n\r\n"), Some((200, "")));
        assert_eq!(http_status("SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(http_status("HTTP/1.1 abc\r\n\r\n"), None);
        assert_eq!(http_status(""), None);
    }
}
