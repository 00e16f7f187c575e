//! `veg bfdd` (the BFD daemon) and `veg bfdctl` (its control client).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use veg_bfd::control::{self, AdminDiag, Request, Response, Timers};
use veg_bfd::metrics::Metrics;
use veg_bfd::{DaemonConfig, Role, SessionConfig, SessionStatus};

use crate::logging::{self, LogFormat};

/// Default control socket.
const DEFAULT_SOCKET: &str = "/run/veg/bfdd.sock";

/// Arguments of `veg bfdd`.
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// Peers to run active sessions with (repeat, or comma-separate).
    #[arg(long = "peer", env = "VEG_BFD_PEERS", value_delimiter = ',')]
    peers: Vec<IpAddr>,
    /// Peers allowed to open passive sessions (repeat, or comma-separate).
    #[arg(long = "allow", env = "VEG_BFD_ALLOW", value_delimiter = ',')]
    allowed: Vec<IpAddr>,
    /// Local addresses; a session sends from the one of its peer's family.
    #[arg(long = "local", env = "VEG_BFD_LOCAL", value_delimiter = ',')]
    locals: Vec<IpAddr>,
    #[command(flatten)]
    auth: AuthArgs,
    /// Desired Min TX interval, ms.
    #[arg(long, env = "VEG_BFD_MIN_TX", default_value_t = 1000)]
    min_tx_ms: u32,
    /// Required Min RX interval, ms.
    #[arg(long, env = "VEG_BFD_MIN_RX", default_value_t = 1000)]
    min_rx_ms: u32,
    /// Detect multiplier.
    #[arg(long, env = "VEG_BFD_MULTIPLIER", default_value_t = 3)]
    multiplier: u8,
    /// Lowest TTL/hop limit accepted: 255 for direct peers, 254 for peers one routed hop
    /// away (OVN routes its BFD packets).
    #[arg(long, env = "VEG_BFD_MIN_TTL", default_value_t = 255)]
    min_ttl: u8,
    /// Control socket path.
    #[arg(long, env = "VEG_BFD_CONTROL_SOCKET", default_value = DEFAULT_SOCKET)]
    control_socket: PathBuf,
    /// Address for /metrics, /livez and /readyz (none when absent).
    #[arg(long, env = "VEG_BFD_HTTP")]
    http: Option<SocketAddr>,
    /// Signal a Path Down (the uplink lost) by silence, not AdminDown packets: OVN reports a
    /// peer's AdminDown up to 5 s late, a silent peer within its detection time (native mode).
    #[arg(long, env = "VEG_BFD_SILENT_PATH_DOWN")]
    silent_path_down: bool,
    /// Do not open the IPv6 socket.
    #[arg(long)]
    no_ipv6: bool,
    /// Log format.
    #[arg(long, env = "VEG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Arguments of `veg bfdctl`.
#[derive(Debug, clap::Args)]
pub struct ControlArgs {
    /// Control socket of the daemon.
    #[arg(long, env = "VEG_BFD_CONTROL_SOCKET", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    #[command(subcommand)]
    command: ControlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ControlCommand {
    /// One line per session (`--json` for the full status).
    Status {
        /// Print the daemon's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a session.
    Add {
        /// The peer.
        peer: IpAddr,
        /// Our address towards it.
        #[arg(long)]
        local: Option<IpAddr>,
        /// Wait for the peer to start.
        #[arg(long)]
        passive: bool,
        /// Lowest TTL accepted.
        #[arg(long)]
        min_ttl: Option<u8>,
    },
    /// Remove a session.
    Remove {
        /// The peer.
        peer: IpAddr,
    },
    /// Restart a session from Down.
    Reset {
        /// The peer.
        peer: IpAddr,
    },
    /// Let a peer open a passive session.
    Allow {
        /// The peer.
        peer: IpAddr,
        /// Lowest TTL accepted.
        #[arg(long)]
        min_ttl: Option<u8>,
    },
    /// Drop a peer's session and ignore it from now on.
    Block {
        /// The peer.
        peer: IpAddr,
    },
    /// Put one session (or all) AdminDown.
    AdminDown {
        /// The peer; all sessions when absent.
        #[arg(long)]
        peer: Option<IpAddr>,
        /// Diagnostic to send.
        #[arg(long, value_enum, default_value_t = DiagArg::AdminDown)]
        diag: DiagArg,
    },
    /// Bring one session (or all) out of AdminDown.
    AdminUp {
        /// The peer; all sessions when absent.
        #[arg(long)]
        peer: Option<IpAddr>,
    },
    /// Change timers live (announced with a Poll Sequence).
    SetTimers {
        /// The peer; all sessions and the defaults when absent.
        #[arg(long)]
        peer: Option<IpAddr>,
        /// Desired Min TX, ms.
        #[arg(long)]
        min_tx_ms: u32,
        /// Required Min RX, ms.
        #[arg(long)]
        min_rx_ms: u32,
        /// Detect multiplier.
        #[arg(long)]
        multiplier: u8,
    },
    /// Change the lowest TTL accepted from a peer.
    SetMinTtl {
        /// The peer.
        peer: IpAddr,
        /// 1–255.
        min_ttl: u8,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DiagArg {
    /// Diag 7, administratively down.
    AdminDown,
    /// Diag 5, path down (the uplink is gone).
    PathDown,
}

// ===== veg bfdd =====

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run_daemon(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.log_format);
    let timers = Timers {
        min_tx_ms: args.min_tx_ms,
        min_rx_ms: args.min_rx_ms,
        multiplier: args.multiplier,
    };
    timers.check().context("invalid timers")?;
    if args.min_ttl == 0 {
        bail!("--min-ttl must be between 1 and 255");
    }
    let auth = args.auth.key()?;
    let session = |peer: IpAddr, role| SessionConfig {
        peer,
        local: args
            .locals
            .iter()
            .copied()
            .find(|local| local.is_ipv4() == peer.is_ipv4()),
        role,
        desired_min_tx: Duration::from_millis(u64::from(timers.min_tx_ms)),
        required_min_rx: Duration::from_millis(u64::from(timers.min_rx_ms)),
        detect_mult: timers.multiplier,
        min_ttl: args.min_ttl,
        auth: auth.clone(),
        silent_path_down: args.silent_path_down,
    };
    let config = DaemonConfig {
        sessions: args
            .peers
            .iter()
            .map(|peer| session(*peer, Role::Active))
            .collect(),
        allowed: args
            .allowed
            .iter()
            .map(|peer| session(*peer, Role::Passive))
            .collect(),
        default_timers: timers,
        control_socket: Some(args.control_socket.clone()),
        http: args.http,
        ipv4: true,
        ipv6: !args.no_ipv6,
        events: veg_bfd::EventSink::default(),
        auth: auth.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = veg_daemon::shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
        veg_bfd::run(config, Arc::new(Metrics::default()), shutdown)
            .await
            .context("bfd daemon failed")
    })?;
    Ok(ExitCode::SUCCESS)
}

// ===== veg bfdctl =====

/// Sends one request to the daemon and prints the answer; exit 1 when it failed.
pub fn run_control(args: ControlArgs) -> anyhow::Result<ExitCode> {
    let (request, json) = match args.command {
        ControlCommand::Status { json } => (Request::Status {}, json),
        other => (to_request(other), false),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let response = runtime
        .block_on(control::request(&args.socket, &request))
        .with_context(|| format!("cannot talk to bfdd at {}", args.socket.display()))?;
    match response {
        Response::Status {
            sessions, allowed, ..
        } => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"sessions": sessions, "allowed": allowed})
                    )?
                );
            } else {
                for session in &sessions {
                    println!("{}", status_line(session));
                }
                if sessions.is_empty() {
                    println!("no sessions");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Done { changed, .. } => {
            println!("ok ({changed} session(s) changed state)");
            Ok(ExitCode::SUCCESS)
        }
        Response::Failed { error, .. } => {
            eprintln!("bfdctl: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn to_request(command: ControlCommand) -> Request {
    match command {
        ControlCommand::Status { .. } => Request::Status {},
        ControlCommand::Add {
            peer,
            local,
            passive,
            min_ttl,
        } => Request::Add {
            peer,
            local,
            role: Some(if passive { Role::Passive } else { Role::Active }),
            timers: None,
            min_ttl,
        },
        ControlCommand::Remove { peer } => Request::Remove { peer },
        ControlCommand::Reset { peer } => Request::Reset { peer },
        ControlCommand::Allow { peer, min_ttl } => Request::Allow { peer, min_ttl },
        ControlCommand::Block { peer } => Request::Block { peer },
        ControlCommand::AdminDown { peer, diag } => Request::AdminDown {
            peer,
            diag: Some(match diag {
                DiagArg::AdminDown => AdminDiag::AdminDown,
                DiagArg::PathDown => AdminDiag::PathDown,
            }),
        },
        ControlCommand::AdminUp { peer } => Request::AdminUp { peer },
        ControlCommand::SetTimers {
            peer,
            min_tx_ms,
            min_rx_ms,
            multiplier,
        } => Request::SetTimers {
            peer,
            timers: Timers {
                min_tx_ms,
                min_rx_ms,
                multiplier,
            },
        },
        ControlCommand::SetMinTtl { peer, min_ttl } => Request::SetMinTtl { peer, min_ttl },
    }
}

/// One session, in the spirit of `bfdd-control status`:
/// `id=1 local=10.16.0.103 (p) remote=10.255.255.255 state=Up …`.
fn status_line(session: &SessionStatus) -> String {
    let local = session
        .local
        .map_or_else(|| "*".to_owned(), |local| local.to_string());
    let role = match session.role {
        Role::Active => 'a',
        Role::Passive => 'p',
    };
    format!(
        "id={} local={local} ({role}) remote={} state={} diag={} remote-id={} remote-state={} \
         tx={}ms rx={}ms mult={} detect={}ms min-ttl={} for={:.1}s rx-packets={} tx-packets={}",
        session.local_discr,
        session.peer,
        session.state.as_str(),
        session.diag.as_str(),
        session.remote_discr,
        session.remote_state.as_str(),
        session.desired_min_tx_us / 1000,
        session.required_min_rx_us / 1000,
        session.detect_mult,
        session.detection_time_us / 1000,
        session.min_ttl,
        session.since_ms as f64 / 1000.0,
        session.counters.rx,
        session.counters.tx,
    )
}

/// Keyed SHA1 authentication (RFC 5880 §6.7.4), shared by `veg bfdd` and `veg monitor`: both
/// ends must have the same key and key ID. Without it any host that can reach the port with
/// TTL 255 and a peer's address can forge packets.
#[derive(Debug, clap::Args)]
pub struct AuthArgs {
    /// A file holding the key (1 to 20 bytes; a trailing newline is ignored), e.g. a mounted
    /// Secret. Sessions then send and require Meticulous Keyed SHA1.
    #[arg(long, env = "VEG_BFD_AUTH_KEY_FILE")]
    auth_key_file: Option<std::path::PathBuf>,
    /// The key ID sent and required.
    #[arg(long, env = "VEG_BFD_AUTH_KEY_ID", default_value_t = 1)]
    auth_key_id: u8,
}

impl AuthArgs {
    /// The key, when a key file is given.
    pub fn key(&self) -> anyhow::Result<Option<veg_bfd::AuthKey>> {
        let Some(path) = &self.auth_key_file else {
            return Ok(None);
        };
        let mut key =
            std::fs::read(path).with_context(|| format!("--auth-key-file {}", path.display()))?;
        while key
            .last()
            .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
        {
            key.pop();
        }
        if key.is_empty() || key.len() > 20 {
            bail!(
                "--auth-key-file {}: the key must be 1 to 20 bytes (Keyed SHA1), it has {}",
                path.display(),
                key.len()
            );
        }
        Ok(Some(veg_bfd::AuthKey {
            key_id: self.auth_key_id,
            key,
            meticulous: true,
        }))
    }
}
