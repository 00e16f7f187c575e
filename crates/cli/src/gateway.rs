//! `veg gateway init|run|show`: the agent of a gateway Pod. Flags mirror what the controller
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
    }
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
        let shutdown = crate::bfd::shutdown_signal()?;
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
