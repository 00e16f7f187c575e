//! The one HTTP/1.x endpoint of every daemon: `GET /metrics` (OpenMetrics text), `GET /livez`,
//! `GET /readyz` and, where the daemon offers it, `PUT /log-level` (body: a tracing filter such
//! as `debug` or `info,veg_controller=trace`). One request per connection, bounded reads, no web
//! framework: enough for the kubelet and Prometheus.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Changes the log filter of the running process (`PUT /log-level`).
pub type SetLevel = Arc<dyn Fn(&str) -> Result<(), InvalidLevel> + Send + Sync>;

/// A log filter that was refused; the cause is the filter parser's own error.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {directive:?}")]
pub struct InvalidLevel {
    /// The directive as sent.
    pub directive: String,
    /// Why it was refused.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// The endpoint could not listen.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for HTTP on {address}")]
pub struct BindError {
    /// The address asked for.
    pub address: SocketAddr,
    /// The kernel's answer.
    #[source]
    pub source: std::io::Error,
}

/// Liveness and readiness, shared between a daemon's loop and its endpoint.
///
/// A daemon whose loop calls [`Health::beat`] is live only while it keeps beating (a wedged
/// loop fails `/livez`); one that never beats is live while the process serves.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
    heartbeat_ms: AtomicU64,
}

/// A beating loop must turn at least this often to be live (loops wake every second when idle).
const STALE_AFTER: Duration = Duration::from_secs(5);

impl Health {
    /// Records a turn of the loop.
    pub fn beat(&self) {
        self.heartbeat_ms.store(unix_ms().max(1), Ordering::Relaxed);
    }

    /// Whether the loop turned recently (always, for a daemon that does not beat).
    pub fn live(&self) -> bool {
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        last == 0
            || unix_ms().saturating_sub(last)
                < u64::try_from(STALE_AFTER.as_millis()).unwrap_or(u64::MAX)
    }

    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// What one daemon's endpoint serves.
pub struct Endpoint {
    /// The daemon's metrics.
    pub registry: Registry,
    /// Liveness and readiness.
    pub health: Arc<Health>,
    /// The body of a 503 on `/readyz`: what the daemon is waiting for.
    pub not_ready: &'static str,
    /// `PUT /log-level`, when the daemon offers it.
    pub set_level: Option<SetLevel>,
}

impl Endpoint {
    /// An endpoint for `registry` with no log-level route.
    pub fn new(registry: Registry, health: Arc<Health>, not_ready: &'static str) -> Endpoint {
        Endpoint {
            registry,
            health,
            not_ready,
            set_level: None,
        }
    }

    /// The answer to one request: status line and body (pure, so routes are unit-tested).
    /// `PUT /log-level` is taken only from the Pod itself (loopback: `kubectl exec`, or
    /// `kubectl port-forward`): any other Pod could otherwise silence or flood the logs.
    pub fn respond(
        &self,
        method: &str,
        path: &str,
        body: &str,
        from_loopback: bool,
    ) -> (&'static str, String) {
        match (method, path) {
            ("GET", "/metrics") => {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &self.registry) {
                    Ok(()) => ("200 OK", text),
                    Err(_) => ("500 Internal Server Error", "encoding failed\n".into()),
                }
            }
            ("GET", "/livez") if self.health.live() => ("200 OK", "ok\n".into()),
            ("GET", "/livez") => ("503 Service Unavailable", "event loop stalled\n".into()),
            ("GET", "/readyz") if self.health.ready() => ("200 OK", "ok\n".into()),
            ("GET", "/readyz") => ("503 Service Unavailable", format!("{}\n", self.not_ready)),
            ("PUT", "/log-level") if self.set_level.is_some() && !from_loopback => (
                "403 Forbidden",
                "the log level is set from the Pod itself (kubectl exec or port-forward)\n".into(),
            ),
            ("PUT", "/log-level") if self.set_level.is_some() => {
                match self.set_level.as_ref().map(|set| set(body)) {
                    Some(Err(error)) => ("400 Bad Request", format!("{}\n", chain(&error))),
                    _ => ("200 OK", format!("log level: {}\n", body.trim())),
                }
            }
            ("GET", _) => ("404 Not Found", "not found\n".into()),
            _ if path == "/log-level" => ("404 Not Found", "not found\n".into()),
            _ => ("405 Method Not Allowed", "GET only\n".into()),
        }
    }
}

/// Binds the listener (separately from serving, so a bad address fails at start-up). `[::]`
/// takes both families (IPV6_V6ONLY off, whatever the node's `bindv6only`), so the kubelet's
/// probes reach it at the Pod's address in an IPv4, IPv6 or dual-stack cluster; where the
/// kernel has no IPv6 at all it falls back to `0.0.0.0`.
pub async fn bind(address: SocketAddr) -> Result<TcpListener, BindError> {
    let error = |source| BindError { address, source };
    if address.ip() != std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        return TcpListener::bind(address).await.map_err(error);
    }
    let socket = match socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    ) {
        Ok(socket) => socket,
        Err(source) if source.raw_os_error() == Some(EAFNOSUPPORT) => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], address.port()));
            return TcpListener::bind(v4).await.map_err(error);
        }
        Err(source) => return Err(error(source)),
    };
    socket.set_only_v6(false).map_err(error)?;
    socket.set_reuse_address(true).map_err(error)?;
    socket.set_nonblocking(true).map_err(error)?;
    socket.bind(&address.into()).map_err(error)?;
    socket.listen(1024).map_err(error)?;
    TcpListener::from_std(socket.into()).map_err(error)
}

/// EAFNOSUPPORT on Linux: a kernel booted with `ipv6.disable=1`.
const EAFNOSUPPORT: i32 = 97;

/// How many connections one peer address may hold open at once: the kubelet's probes and a
/// scraper need a few, and one Pod holding slow connections cannot take the others' slots.
pub const MAX_CONNECTIONS_PER_PEER: usize = 8;
/// How many connections the endpoint holds open at once (file descriptors stay bounded).
pub const MAX_CONNECTIONS: usize = 256;
/// How long one connection may take, from accept to the last byte of the answer.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);

/// The open connections, by peer address (pure bookkeeping, so the admission is tested
/// without sockets).
#[derive(Debug, Default)]
pub struct ConnectionLimits {
    open: std::collections::HashMap<std::net::IpAddr, usize>,
    total: usize,
}

impl ConnectionLimits {
    /// Takes a slot for a new connection from `peer`, or says no (the connection is closed
    /// at once).
    pub fn admit(&mut self, peer: std::net::IpAddr) -> bool {
        let mine = self.open.get(&peer).copied().unwrap_or(0);
        if mine >= MAX_CONNECTIONS_PER_PEER || self.total >= MAX_CONNECTIONS {
            return false;
        }
        self.open.insert(peer, mine + 1);
        self.total += 1;
        true
    }

    /// Gives back a slot of `peer`.
    pub fn release(&mut self, peer: std::net::IpAddr) {
        if let Some(count) = self.open.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&peer);
            }
            self.total = self.total.saturating_sub(1);
        }
    }
}

/// Serves until the task is dropped. A failing `accept` (out of file descriptors, which a
/// flood of connections can cause) is waited out with a growing pause instead of retried at
/// once, which spun a core. Each peer holds at most [`MAX_CONNECTIONS_PER_PEER`] connections
/// (more are closed at once), each lasting at most [`CONNECTION_TIMEOUT`].
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    let limits = Arc::new(std::sync::Mutex::new(ConnectionLimits::default()));
    let mut refusals: u64 = 0;
    let mut pause = None;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                pause = None;
                accepted
            }
            Err(error) => {
                let wait = accept_backoff(pause);
                if pause.is_none() {
                    tracing::warn!(%error, "accepting HTTP connections failed; retrying with backoff");
                }
                pause = Some(wait);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let address = peer.ip().to_canonical();
        let admitted = limits
            .lock()
            .map(|mut limits| limits.admit(address))
            .unwrap_or(false);
        if !admitted {
            // Closed unanswered; said once per thousand so a flood does not flood the logs.
            if refusals.is_multiple_of(1000) {
                tracing::warn!(%peer, refusals, "too many HTTP connections; closing new ones");
            }
            refusals += 1;
            drop(stream);
            continue;
        }
        let endpoint = endpoint.clone();
        let limits = limits.clone();
        let from_loopback = is_loopback_peer(peer);
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &endpoint, from_loopback))
                    .await;
            if let Ok(mut limits) = limits.lock() {
                limits.release(address);
            }
        });
    }
}

/// Whether a peer is this Pod itself; a `[::]` listener sees IPv4 peers as mapped addresses.
pub fn is_loopback_peer(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

/// The pause after a failed `accept`: 5 ms, doubling up to 1 s (as Go's HTTP server does).
pub fn accept_backoff(previous: Option<Duration>) -> Duration {
    previous.map_or(Duration::from_millis(5), |pause| {
        (pause * 2).min(Duration::from_secs(1))
    })
}

/// Largest request head read.
pub const MAX_HEAD: usize = 8192;
/// Largest body accepted (longer ones are cut).
pub const MAX_BODY: usize = 4096;

async fn answer(
    mut stream: TcpStream,
    endpoint: &Endpoint,
    from_loopback: bool,
) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let parsed = loop {
        match parse_request(&request) {
            Parse::Complete(parsed) => break parsed,
            Parse::TooLarge => return Ok(()),
            Parse::Incomplete => {}
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            // The body may end early (shorter than its content-length): take what came.
            match parse_request_at_end(&request) {
                Some(parsed) => break parsed,
                None => return Ok(()),
            }
        }
        request.extend_from_slice(&chunk[..read]);
    };
    let Request { method, path, body } = &parsed;
    let (status, text) = endpoint.respond(method, path, body, from_loopback);
    let content_type = if path == "/metrics" && status.starts_with("200") {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain"
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// One request as the endpoint reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// At most [`MAX_BODY`] bytes, as text.
    pub body: String,
}

/// How far the bytes read so far make a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parse {
    Complete(Request),
    /// More bytes are needed.
    Incomplete,
    /// The head is longer than [`MAX_HEAD`]: the connection is dropped.
    TooLarge,
}

/// Parses the bytes read so far (pure: the parser fuzzed and unit-tested on its own).
pub fn parse_request(bytes: &[u8]) -> Parse {
    let Some(header_end) = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
    else {
        return if bytes.len() > MAX_HEAD {
            Parse::TooLarge
        } else {
            Parse::Incomplete
        };
    };
    if header_end > MAX_HEAD + 4 {
        return Parse::TooLarge;
    }
    let head = String::from_utf8_lossy(&bytes[..header_end]);
    let length = content_length(&head).min(MAX_BODY);
    if bytes.len() < header_end + length {
        return Parse::Incomplete;
    }
    Parse::Complete(request_of(&head, &bytes[header_end..header_end + length]))
}

/// What the bytes make once the peer closed its side: a request whose body came short.
fn parse_request_at_end(bytes: &[u8]) -> Option<Request> {
    let header_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
        .filter(|end| *end <= MAX_HEAD + 4)?;
    let head = String::from_utf8_lossy(&bytes[..header_end]);
    let length = content_length(&head).min(MAX_BODY);
    let body_end = bytes.len().min(header_end + length);
    Some(request_of(&head, &bytes[header_end..body_end]))
}

fn request_of(head: &str, body: &[u8]) -> Request {
    let mut words = head.split_whitespace();
    Request {
        method: words.next().unwrap_or("").to_owned(),
        path: words.next().unwrap_or("").to_owned(),
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn endpoint() -> (Endpoint, Arc<Mutex<Vec<String>>>) {
        let levels = Arc::new(Mutex::new(Vec::new()));
        let seen = levels.clone();
        let set_level: SetLevel = Arc::new(move |level: &str| {
            if level.trim() == "nonsense[" {
                return Err(InvalidLevel {
                    directive: level.to_owned(),
                    source: "bad directive".into(),
                });
            }
            if let Ok(mut seen) = seen.lock() {
                seen.push(level.trim().to_owned());
            }
            Ok(())
        });
        let mut endpoint = Endpoint::new(
            Registry::default(),
            Arc::new(Health::default()),
            "caches not complete yet",
        );
        endpoint.set_level = Some(set_level);
        (endpoint, levels)
    }

    /// `[::]` answers on both families: a probe to an IPv4 or an IPv6 Pod address gets in.
    #[tokio::test]
    async fn the_unspecified_ipv6_address_listens_on_both_families() -> std::io::Result<()> {
        let listener = bind("[::]:0".parse().map_err(std::io::Error::other)?)
            .await
            .map_err(std::io::Error::other)?;
        let port = listener.local_addr()?.port();
        for peer in ["127.0.0.1", "::1"] {
            let address = SocketAddr::new(peer.parse().map_err(std::io::Error::other)?, port);
            let (connected, accepted) =
                tokio::join!(TcpStream::connect(address), listener.accept());
            assert!(connected.is_ok() && accepted.is_ok(), "{address}");
        }
        Ok(())
    }

    #[test]
    fn routes() {
        let (endpoint, levels) = endpoint();
        assert_eq!(endpoint.respond("GET", "/livez", "", true).0, "200 OK");
        assert_eq!(
            endpoint.respond("GET", "/readyz", "", true),
            (
                "503 Service Unavailable",
                "caches not complete yet\n".to_owned()
            )
        );
        endpoint.health.set_ready(true);
        assert_eq!(endpoint.respond("GET", "/readyz", "", true).0, "200 OK");
        assert_eq!(
            endpoint.respond("PUT", "/log-level", "debug\n", true).0,
            "200 OK"
        );
        assert_eq!(
            endpoint.respond("PUT", "/log-level", "nonsense[", true),
            (
                "400 Bad Request",
                "invalid log filter \"nonsense[\": bad directive\n".to_owned()
            )
        );
        assert_eq!(
            endpoint.respond("GET", "/nope", "", true).0,
            "404 Not Found"
        );
        assert_eq!(
            endpoint.respond("POST", "/metrics", "", true).0,
            "405 Method Not Allowed"
        );
        // From another Pod: refused, and the level is not touched.
        assert_eq!(
            endpoint.respond("PUT", "/log-level", "error", false).0,
            "403 Forbidden"
        );
        assert_eq!(
            levels.lock().map(|l| l.clone()).unwrap_or_default(),
            vec!["debug".to_owned()]
        );
    }

    #[test]
    fn requests_parse_when_whole_and_wait_or_give_up_otherwise() {
        let get = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            parse_request(get),
            Parse::Complete(Request {
                method: "GET".into(),
                path: "/livez".into(),
                body: String::new()
            })
        );
        assert_eq!(parse_request(&get[..get.len() - 2]), Parse::Incomplete);
        let put = b"PUT /log-level HTTP/1.1\r\ncontent-length: 5\r\n\r\ndeb";
        assert_eq!(parse_request(put), Parse::Incomplete);
        assert_eq!(
            parse_request_at_end(put).map(|r| r.body),
            Some("deb".to_owned())
        );
        let mut whole = put.to_vec();
        whole.extend_from_slice(b"ugEXTRA");
        assert!(matches!(parse_request(&whole), Parse::Complete(r) if r.body == "debug"));
        // A body longer than MAX_BODY is cut there.
        let big = format!(
            "PUT / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n{}",
            "x".repeat(MAX_BODY)
        );
        assert!(
            matches!(parse_request(big.as_bytes()), Parse::Complete(r) if r.body.len() == MAX_BODY)
        );
        assert_eq!(parse_request(&vec![b'a'; MAX_HEAD + 1]), Parse::TooLarge);
    }

    #[test]
    fn each_peer_holds_a_few_connections_and_all_of_them_a_bounded_number() {
        let mut limits = ConnectionLimits::default();
        let one: std::net::IpAddr = [198, 51, 100, 7].into();
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            assert!(limits.admit(one));
        }
        assert!(!limits.admit(one), "a ninth connection of one peer");
        limits.release(one);
        assert!(limits.admit(one), "a slot given back is free again");
        let mut others = 0usize;
        for peer in 0..u32::MAX {
            if !limits.admit(std::net::IpAddr::from(std::net::Ipv4Addr::from(
                0x0a00_0000 + peer,
            ))) {
                break;
            }
            others += 1;
        }
        assert_eq!(others + MAX_CONNECTIONS_PER_PEER, MAX_CONNECTIONS);
        // Releasing a peer that holds nothing changes nothing.
        limits.release([203, 0, 113, 1].into());
        assert!(!limits.admit([203, 0, 113, 2].into()));
    }

    /// One peer holding its slots with idle connections: its next one is closed at once, and
    /// another peer (the kubelet) is still answered.
    #[tokio::test]
    async fn a_peer_holding_idle_connections_does_not_lock_out_the_others() -> std::io::Result<()> {
        let listener = bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?)
            .await
            .map_err(std::io::Error::other)?;
        let address = listener.local_addr()?;
        let (endpoint, _) = endpoint();
        let _server = tokio::spawn(serve(listener, Arc::new(endpoint)));
        let connect_from = |source: [u8; 4]| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((source, 0)))?;
            socket.connect(address).await
        };
        let ask = |mut stream: TcpStream| async move {
            stream
                .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                .await?;
            let mut answer = String::new();
            let read =
                tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer))
                    .await;
            Ok::<_, std::io::Error>(match read {
                Ok(Ok(_)) | Ok(Err(_)) => answer,
                Err(_) => "(no answer in 2 s)".to_owned(),
            })
        };
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS_PER_PEER {
            idle.push(connect_from([127, 0, 0, 1]).await?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = ask(connect_from([127, 0, 0, 1]).await?).await?;
        assert_eq!(refused, "", "the peer's ninth connection was answered");
        let other = ask(connect_from([127, 0, 0, 2]).await?).await?;
        assert!(other.starts_with("HTTP/1.1 200"), "{other:?}");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let again = ask(connect_from([127, 0, 0, 1]).await?).await?;
        assert!(again.starts_with("HTTP/1.1 200"), "{again:?}");
        Ok(())
    }

    #[test]
    fn loopback_peers_in_either_family() {
        for (peer, loopback) in [
            ("127.0.0.1:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("198.51.100.7:1", false),
            ("[::ffff:198.51.100.7]:1", false),
            ("[2001:db8::7]:1", false),
        ] {
            let peer: SocketAddr = peer.parse().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
            assert_eq!(is_loopback_peer(peer), loopback, "{peer}");
        }
    }

    #[test]
    fn accept_failures_back_off_to_a_second() {
        let mut pause = None;
        let mut pauses = Vec::new();
        for _ in 0..10 {
            let next = accept_backoff(pause);
            pauses.push(next.as_millis());
            pause = Some(next);
        }
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }

    /// Over TCP from 127.0.0.1 (through the `[::]` listener, as `::ffff:127.0.0.1`): taken.
    #[tokio::test]
    async fn the_log_level_is_set_only_from_loopback() -> std::io::Result<()> {
        let (endpoint, levels) = endpoint();
        let listener = bind("[::]:0".parse().map_err(std::io::Error::other)?)
            .await
            .map_err(std::io::Error::other)?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(serve(listener, Arc::new(endpoint)));
        let put = |address: SocketAddr| async move {
            let mut stream = TcpStream::connect(address).await?;
            stream
                .write_all(b"PUT /log-level HTTP/1.1\r\ncontent-length: 4\r\n\r\ninfo")
                .await?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await?;
            Ok::<_, std::io::Error>(answer)
        };
        let local = put(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        assert!(local.starts_with("HTTP/1.1 200"), "{local}");
        server.abort();
        assert_eq!(
            levels.lock().map(|l| l.clone()).unwrap_or_default(),
            vec!["info".to_owned()]
        );
        Ok(())
    }

    #[test]
    fn no_log_level_route_unless_offered() {
        let endpoint = Endpoint::new(Registry::default(), Arc::default(), "not ready");
        assert_eq!(
            endpoint.respond("PUT", "/log-level", "debug", true).0,
            "404 Not Found"
        );
    }

    #[test]
    fn a_beating_loop_that_stops_is_not_live() {
        let health = Health::default();
        assert!(health.live(), "a daemon that never beats is live");
        health.beat();
        assert!(health.live());
        health.heartbeat_ms.store(1, Ordering::Relaxed);
        assert!(!health.live(), "a beat from 1970 is stale");
    }
}
