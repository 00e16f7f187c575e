//! A small HTTP/1.x listener for `/metrics`, `/livez` and `/readyz`: GET only, one request
//! per connection, bounded reads. Enough for the kubelet and Prometheus, no web framework.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::Error;

/// Liveness and readiness, shared between the daemon loop and the listener.
#[derive(Debug, Default)]
pub struct Health {
    /// Sockets are open and the loop runs.
    pub ready: AtomicBool,
    /// Unix time in ms of the loop's last turn.
    pub heartbeat_ms: AtomicU64,
}

/// The loop must turn at least this often to be live (it wakes every second when idle).
const STALE_AFTER: Duration = Duration::from_secs(5);

impl Health {
    /// Records a turn of the loop.
    pub fn beat(&self) {
        self.heartbeat_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Whether the loop turned recently. Sessions do not matter: a gateway with no session
    /// yet is healthy (Kube-OVN #7051).
    pub fn live(&self) -> bool {
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        unix_ms().saturating_sub(last) < u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX)
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Binds the listener (separately from serving, so a bad address fails at start-up).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Http { address, source })
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, health: Arc<Health>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(5), answer(stream, &registry, &health))
                    .await;
        });
    }
}

async fn answer(
    mut stream: TcpStream,
    registry: &Registry,
    health: &Health,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") && request.len() < 8192 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let line = request
        .split(|byte| *byte == b'\n')
        .next()
        .unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        ("GET", "/livez") if health.live() => ("200 OK", "text/plain", "ok\n".into()),
        ("GET", "/livez") => (
            "503 Service Unavailable",
            "text/plain",
            "event loop stalled\n".into(),
        ),
        ("GET", "/readyz") if health.ready.load(Ordering::Relaxed) => {
            ("200 OK", "text/plain", "ok\n".into())
        }
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            "not ready\n".into(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".into()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".into()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
