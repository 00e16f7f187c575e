//! `veg monitor`: runs active BFD to every gateway instance a VPC's policies list as
//! candidates and keeps each policy's nexthops = the instances whose session is Up (monitor
//! mode, for stock OVN). Two may run per VPC; one writes, the other stands by.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use veg_monitor::MonitorConfig;
use veg_ovsdb::MonitorSpec;

use crate::logging::{self, LogFormat};
use crate::northbound::NorthboundArgs;

/// `veg monitor` flags.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    northbound: NorthboundArgs,
    /// The VPC's logical router.
    #[arg(long, env = "VEG_MONITOR_VPC", default_value = "ovn-cluster")]
    vpc: String,
    /// This monitor's addresses in the VPC (one per family).
    #[arg(
        long = "local",
        env = "VEG_MONITOR_LOCAL",
        value_delimiter = ',',
        required = true
    )]
    locals: Vec<IpAddr>,
    /// Identity in the writer lease (default: the host name).
    #[arg(long, env = "VEG_MONITOR_HOLDER")]
    holder: Option<String>,
    /// Control socket of the embedded BFD daemon.
    #[arg(
        long,
        env = "VEG_MONITOR_CONTROL_SOCKET",
        default_value = "/run/veg/monitor-bfdd.sock"
    )]
    control_socket: PathBuf,
    /// Lease renewal period, ms.
    #[arg(long, default_value_t = 1000)]
    renew_ms: u64,
    /// A lease not renewed for this long is taken over, ms.
    #[arg(long, default_value_t = 3000)]
    lease_timeout_ms: u64,
    /// `/metrics`, `/livez`, `/readyz` of the BFD daemon.
    #[arg(long, env = "VEG_MONITOR_HTTP")]
    http: Option<SocketAddr>,
    #[command(flatten)]
    auth: crate::bfd::AuthArgs,
    /// Flap dampening: this many Downs of an instance's session within --flap-window-ms hold
    /// it out of the nexthops, from its next Up, for --hold-down-ms (doubling with each such
    /// burst, up to --max-hold-down-ms). 0 turns dampening off.
    /// (A crash-looping Pod restarts 10 s or more apart and is not counted by the defaults;
    /// a session flapping at BFD speed, from a lossy link or spoofed packets, is.)
    #[arg(long, env = "VEG_MONITOR_FLAPS", default_value_t = 4)]
    flaps: usize,
    /// Flap dampening window, ms.
    #[arg(long, default_value_t = 10_000)]
    flap_window_ms: u64,
    /// The first hold-down, ms.
    #[arg(long, default_value_t = 5_000)]
    hold_down_ms: u64,
    /// The longest hold-down, ms (also how long a peer must stay quiet to start over).
    #[arg(long, default_value_t = 300_000)]
    max_hold_down_ms: u64,
    /// Log format.
    #[arg(long, env = "VEG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (a tracing filter; RUST_LOG wins when set).
    #[arg(long, env = "VEG_LOG_LEVEL", default_value = "info")]
    log_level: String,
}

/// Runs the monitor until SIGTERM/SIGINT.
pub fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    // The monitor serves no PUT /log-level, so the reload handle is not kept.
    let _ = logging::init_reloadable(args.log_format, &args.log_level);
    let holder = match args.holder {
        Some(holder) => holder,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| format!("monitor-{}", std::process::id())),
    };
    let config = MonitorConfig {
        nb: args.northbound.config(MonitorSpec::new())?,
        router: args.vpc,
        locals: args.locals,
        holder,
        control_socket: args.control_socket,
        renew: Duration::from_millis(args.renew_ms.max(100)),
        timeout: Duration::from_millis(args.lease_timeout_ms.max(300)),
        http: args.http,
        auth: args.auth.key()?,
        dampening: veg_monitor::DampeningConfig {
            // Off: a burst can never be counted.
            flaps: if args.flaps == 0 {
                usize::MAX
            } else {
                args.flaps
            },
            window: Duration::from_millis(args.flap_window_ms),
            hold: Duration::from_millis(args.hold_down_ms),
            max_hold: Duration::from_millis(args.max_hold_down_ms.max(args.hold_down_ms)),
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = veg_daemon::shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
        veg_monitor::run(config, shutdown)
            .await
            .context("monitor failed")
    })?;
    Ok(ExitCode::SUCCESS)
}
