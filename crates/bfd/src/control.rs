//! The control socket: a unix stream socket carrying one JSON request per line and one JSON
//! response per line. `veg bfdctl` and the gateway agent (uplink fate sharing) use it.
//!
//! ```text
//! → {"command":"status"}
//! ← {"ok":true,"sessions":[{"local_discr":…,"peer":"198.51.100.1","state":"Up",…}]}
//! → {"command":"admin-down","peer":null,"diag":"path-down"}
//! ← {"ok":true,"changed":1}
//! ```

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::session::{Role, SessionStatus};

/// Longest request line accepted; longer ones are answered with an error and the
/// connection is closed.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// Timers of a session, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    /// Desired Min TX, ms.
    pub min_tx_ms: u32,
    /// Required Min RX, ms.
    pub min_rx_ms: u32,
    /// Detect Mult.
    pub multiplier: u8,
}

/// Diagnostics a client may give with `admin-down`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminDiag {
    /// 7, Administratively Down.
    AdminDown,
    /// 5, Path Down: this system lost its way to the outside (uplink fate sharing).
    PathDown,
}

/// A request on the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Every session and allowed peer.
    Status {},
    /// Add a session.
    Add {
        peer: IpAddr,
        /// Our address towards it.
        #[serde(default)]
        local: Option<IpAddr>,
        /// Active (default) or passive.
        #[serde(default)]
        role: Option<Role>,
        /// Timers; the daemon's defaults when absent.
        #[serde(default)]
        timers: Option<Timers>,
        /// Lowest TTL accepted; 255 when absent.
        #[serde(default)]
        min_ttl: Option<u8>,
    },
    /// Remove the peer's session.
    Remove { peer: IpAddr },
    /// Restart the peer's session from Down.
    Reset { peer: IpAddr },
    /// Let the peer open a passive session.
    Allow {
        peer: IpAddr,
        /// Lowest TTL accepted; 255 when absent.
        #[serde(default)]
        min_ttl: Option<u8>,
    },
    /// Refuse the peer and drop its session.
    Block { peer: IpAddr },
    /// AdminDown for the peer's session, or all sessions when `peer` is absent.
    AdminDown {
        /// The peer, or all.
        #[serde(default)]
        peer: Option<IpAddr>,
        /// The diagnostic sent; `admin-down` when absent.
        #[serde(default)]
        diag: Option<AdminDiag>,
    },
    /// Leave AdminDown.
    AdminUp {
        /// The peer, or all.
        #[serde(default)]
        peer: Option<IpAddr>,
    },
    /// Change timers live (a Poll Sequence announces them).
    SetTimers {
        /// The peer, or all (and the defaults of allowed peers).
        #[serde(default)]
        peer: Option<IpAddr>,
        /// The new timers.
        timers: Timers,
    },
    /// Change the lowest TTL accepted from a peer.
    SetMinTtl {
        peer: IpAddr,
        /// 1–255.
        min_ttl: u8,
    },
}

/// A response on the control socket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Response {
    Status {
        /// Always true.
        ok: bool,
        sessions: Vec<SessionStatus>,
        /// Peers allowed to open passive sessions.
        allowed: Vec<IpAddr>,
        /// Packets dropped since start, by reason.
        #[serde(default)]
        dropped: std::collections::BTreeMap<String, u64>,
    },
    /// A change was applied.
    Done {
        /// Always true.
        ok: bool,
        /// Sessions whose state changed.
        changed: usize,
    },
    /// The request failed.
    Failed {
        /// Always false.
        ok: bool,
        /// Why.
        error: String,
    },
}

/// A request with the channel for its response, as handed to the daemon's loop.
pub type Command = (Request, oneshot::Sender<Response>);

// ===== impls =====

impl Timers {
    /// Checks the bounds: intervals 1 ms – 1 h, multiplier ≥ 1.
    pub fn check(&self) -> Result<(), RequestError> {
        let range = 1..=3_600_000;
        if !range.contains(&self.min_tx_ms) || !range.contains(&self.min_rx_ms) {
            return Err(RequestError::IntervalOutOfRange);
        }
        if self.multiplier == 0 {
            return Err(RequestError::ZeroMultiplier);
        }
        Ok(())
    }
}

impl Response {
    /// A failure.
    pub fn failed(error: impl std::fmt::Display) -> Self {
        Response::Failed {
            ok: false,
            error: error.to_string(),
        }
    }

    /// A success that changed `changed` sessions.
    pub fn done(changed: usize) -> Self {
        Response::Done { ok: true, changed }
    }
}

/// Why a control request was refused (invalid input: the daemon's state is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The line is longer than [`MAX_REQUEST_LEN`].
    #[error("request longer than {MAX_REQUEST_LEN} bytes")]
    TooLong,
    /// Not a request in the protocol's JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A timer outside 1 ms – 1 h.
    #[error("intervals must be between 1 and 3600000 ms")]
    IntervalOutOfRange,
    /// A detection multiplier of 0.
    #[error("the multiplier must be at least 1")]
    ZeroMultiplier,
    /// A minimum TTL of 0.
    #[error("min_ttl must be between 1 and 255")]
    ZeroMinTtl,
}

/// Parses one request line.
pub fn parse_request(line: &str) -> Result<Request, RequestError> {
    if line.len() > MAX_REQUEST_LEN {
        return Err(RequestError::TooLong);
    }
    let request: Request = serde_json::from_str(line)?;
    if let Request::SetTimers { timers, .. }
    | Request::Add {
        timers: Some(timers),
        ..
    } = &request
    {
        timers.check()?;
    }
    if let Request::SetMinTtl { min_ttl: 0, .. } = request {
        return Err(RequestError::ZeroMinTtl);
    }
    Ok(request)
}

// ===== server =====

/// Serves the control socket, forwarding requests to `commands`, until the task is dropped.
/// A failing `accept` (out of file descriptors, for one) is logged and waited out with a
/// growing pause (5 ms to 1 s); it used to end the server for good while the daemon ran on.
pub async fn serve(listener: UnixListener, path: &Path, commands: mpsc::Sender<Command>) {
    let mut pause = None;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                if pause.take().is_some() {
                    tracing::info!(path = %path.display(), "control socket accepting again");
                }
                stream
            }
            Err(error) => {
                if pause.is_none() {
                    tracing::warn!(path = %path.display(), %error,
                        "accepting control connections failed; retrying with backoff");
                }
                let wait = veg_daemon::http::accept_backoff(pause);
                pause = Some(wait);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let commands = commands.clone();
        tokio::spawn(async move {
            if let Err(error) = handle_connection(stream, commands).await {
                tracing::debug!(error = %error, "control connection ended");
            }
        });
    }
}

/// Binds the control socket at `path`, replacing a stale socket file. The socket is made
/// under a temporary name, given mode 0600 (only its owner may steer sessions, whatever the
/// umask) and then renamed into place, so it is never reachable with a wider mode.
pub fn bind(path: &Path) -> Result<UnixListener, Error> {
    let error = |error| Error::ControlSocket {
        path: PathBuf::from(path),
        error,
    };
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".{}.tmp", std::process::id()));
    let staging = PathBuf::from(staging);
    for stale in [path, staging.as_path()] {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
    }
    let listener = UnixListener::bind(&staging).map_err(error)?;
    let placed = std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&staging, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&staging);
        return Err(error(e));
    }
    Ok(listener)
}

async fn handle_connection(
    stream: UnixStream,
    commands: mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader).take(MAX_REQUEST_LEN as u64 + 1);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_REQUEST_LEN;
        let response = match parse_request(line.trim_end()) {
            Ok(request) => {
                let (respond_tx, respond_rx) = oneshot::channel();
                if commands.send((request, respond_tx)).await.is_err() {
                    Response::failed("the daemon is shutting down")
                } else {
                    respond_rx
                        .await
                        .unwrap_or_else(|_| Response::failed("the daemon dropped the request"))
                }
            }
            Err(error) => Response::failed(format!("bad request: {error}")),
        };
        let mut text = serde_json::to_string(&response).unwrap_or_else(|_| "{\"ok\":false}".into());
        text.push('\n');
        writer.write_all(text.as_bytes()).await?;
        if too_long {
            return Ok(());
        }
        reader.set_limit(MAX_REQUEST_LEN as u64 + 1);
    }
}

/// Sends one request to a daemon's control socket and reads the response (the client side,
/// for `veg bfdctl` and the gateway agent).
pub async fn request(path: &Path, request: &Request) -> std::io::Result<Response> {
    let stream = UnixStream::connect(path).await?;
    let (reader, mut writer) = stream.into_split();
    let mut text = serde_json::to_string(request).map_err(std::io::Error::other)?;
    text.push('\n');
    writer.write_all(text.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(reader).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only the owner may steer sessions, whatever the umask (022 gave 0755 before).
    #[tokio::test]
    async fn the_control_socket_is_the_owners_only() -> Result<(), Box<dyn std::error::Error>> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("veg-bfd-sock-{}", std::process::id()));
        let path = dir.join("bfdd.sock");
        let _listener = bind(&path)?;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        let leftovers = std::fs::read_dir(&dir)?.count();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(mode, 0o600);
        assert_eq!(leftovers, 1, "the staging name stayed");
        Ok(())
    }

    #[test]
    fn parses_every_request() {
        let cases = [
            (r#"{"command":"status"}"#, Request::Status {}),
            (
                r#"{"command":"admin-down","diag":"path-down"}"#,
                Request::AdminDown {
                    peer: None,
                    diag: Some(AdminDiag::PathDown),
                },
            ),
            (
                r#"{"command":"admin-up","peer":"198.51.100.1"}"#,
                Request::AdminUp {
                    peer: "198.51.100.1".parse().ok(),
                },
            ),
            (
                r#"{"command":"remove","peer":"2001:db8::1"}"#,
                Request::Remove {
                    peer: "2001:db8::1".parse().expect("ip"),
                },
            ),
            (
                r#"{"command":"reset","peer":"198.51.100.1"}"#,
                Request::Reset {
                    peer: "198.51.100.1".parse().expect("ip"),
                },
            ),
            (
                r#"{"command":"allow","peer":"198.51.100.1","min_ttl":254}"#,
                Request::Allow {
                    peer: "198.51.100.1".parse().expect("ip"),
                    min_ttl: Some(254),
                },
            ),
            (
                r#"{"command":"block","peer":"198.51.100.9"}"#,
                Request::Block {
                    peer: "198.51.100.9".parse().expect("ip"),
                },
            ),
            (
                r#"{"command":"set-timers","timers":{"min_tx_ms":300,"min_rx_ms":300,"multiplier":3}}"#,
                Request::SetTimers {
                    peer: None,
                    timers: Timers {
                        min_tx_ms: 300,
                        min_rx_ms: 300,
                        multiplier: 3,
                    },
                },
            ),
            (
                r#"{"command":"set-min-ttl","peer":"198.51.100.1","min_ttl":254}"#,
                Request::SetMinTtl {
                    peer: "198.51.100.1".parse().expect("ip"),
                    min_ttl: 254,
                },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_request(line).ok(), Some(expected), "{line}");
        }
        assert!(matches!(
            parse_request(r#"{"command":"add","peer":"198.51.100.1","role":"Passive"}"#),
            Ok(Request::Add {
                role: Some(Role::Passive),
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_requests() {
        for line in [
            "",
            "status",
            r#"{"command":"launch"}"#,
            r#"{"command":"remove","peer":"not-an-ip"}"#,
            r#"{"command":"status","extra":1}"#,
            r#"{"command":"set-timers","timers":{"min_tx_ms":0,"min_rx_ms":300,"multiplier":3}}"#,
            r#"{"command":"set-timers","timers":{"min_tx_ms":100,"min_rx_ms":100,"multiplier":0}}"#,
            r#"{"command":"set-min-ttl","peer":"198.51.100.1","min_ttl":0}"#,
            r#"{"command":"admin-down","diag":"because"}"#,
        ] {
            assert!(parse_request(line).is_err(), "{line:?} should be rejected");
        }
        assert!(parse_request(&" ".repeat(MAX_REQUEST_LEN + 1)).is_err());
    }
}
