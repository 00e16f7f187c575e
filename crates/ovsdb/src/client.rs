//! Connections to OVSDB servers and the long-lived [`Client`] built on them.
//!
//! ```text
//!  Client::transact ──► Connection::call ──(id)──► server
//!                                    ◄── reader task: responses by id, echo answered,
//!                                         update2/update3 ──► supervisor ──► Replica
//!  supervisor: connect (leader only) → get_schema → monitor_cond_since(last txn) → probe
//!              echo; on loss: reconnect to the next remote and resume the monitor
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::jsonrpc::{FrameSplitter, Message};
use crate::protocol::{Operation, OperationResult};
use crate::replica::Replica;
use crate::schema::Schema;

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Remote {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `tcp:HOST:PORT`.
    Tcp(String),
    /// `ssl:HOST:PORT`, with the [`ClientConfig::tls`] files.
    Ssl(String),
}

/// Tables and columns to monitor (an empty column list means all columns).
pub type MonitorSpec = BTreeMap<String, Vec<String>>;

/// How a [`Client`] connects.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Servers, tried in order (a clustered database lists every member).
    pub remotes: Vec<Remote>,
    /// Database name, e.g. `OVN_Northbound`.
    pub database: String,
    /// Only stay on the cluster leader (writes go there directly).
    pub leader_only: bool,
    /// Send our own echo this often; no answer within the same time closes the connection.
    pub probe_interval: Duration,
    /// What to keep in the replica.
    pub monitor: MonitorSpec,
    /// Certificates for `ssl:` remotes.
    pub tls: Option<crate::tls::TlsFiles>,
    /// Longest message accepted from the server; a longer one closes the connection (it would
    /// cost several times its size to decode).
    pub max_message: usize,
}

impl ClientConfig {
    /// OVN's Northbound database at `remotes` (a comma-separated list, e.g.
    /// `unix:/run/ovn/ovnnb_db.sock`), leader only, 5 s probes, no TLS, keeping `monitor`.
    pub fn northbound(remotes: &str, monitor: MonitorSpec) -> Result<Self, Error> {
        Ok(Self {
            remotes: Remote::parse_list(remotes)?,
            database: "OVN_Northbound".into(),
            leader_only: true,
            probe_interval: Duration::from_secs(5),
            monitor,
            tls: None,
            max_message: crate::jsonrpc::MAX_MESSAGE,
        })
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Pending = Arc<Mutex<HashMap<u64, (String, oneshot::Sender<Result<Json, Error>>)>>>;

/// What the reader task reports besides responses.
#[derive(Debug)]
enum Incoming {
    Notification { method: String, params: Json },
    Closed,
}

/// One open connection.
struct Connection {
    remote: String,
    writer: tokio::sync::Mutex<WriteHalf<Box<dyn Stream>>>,
    pending: Pending,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

/// State shared between the handle and the supervisor.
struct Shared {
    config: ClientConfig,
    connection: RwLock<Option<Arc<Connection>>>,
    replica: RwLock<Replica>,
    schema: RwLock<Schema>,
    /// Bumped after every whole update of the replica, and on (re)connection.
    version_tx: watch::Sender<u64>,
    /// Whether a connection is up and its monitor synced.
    ready_tx: watch::Sender<bool>,
    /// Why the last connection attempt failed, for error messages.
    last_error: Mutex<Option<String>>,
    /// An operation put first in every transaction (a `wait` that fences the writer).
    fence: Mutex<Option<Operation>>,
}

/// A client that stays connected: it reconnects, finds the leader, and keeps a replica of the
/// monitored tables in sync. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _supervisor: Arc<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ===== Remote =====

impl Remote {
    /// Parses `unix:PATH,tcp:HOST:PORT,…`.
    pub fn parse_list(text: &str) -> Result<Vec<Remote>, Error> {
        text.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(Remote::parse)
            .collect()
    }

    /// Parses one remote.
    pub fn parse(text: &str) -> Result<Remote, Error> {
        let bad = || Error::BadRemote {
            remote: text.to_owned(),
        };
        match text.split_once(':') {
            Some(("unix", path)) if !path.is_empty() => Ok(Remote::Unix(PathBuf::from(path))),
            Some(("tcp", address)) if address.contains(':') => Ok(Remote::Tcp(address.to_owned())),
            Some(("ssl", address)) if address.contains(':') => Ok(Remote::Ssl(address.to_owned())),
            _ => Err(bad()),
        }
    }

    fn label(&self) -> String {
        match self {
            Remote::Unix(path) => format!("unix:{}", path.display()),
            Remote::Tcp(address) => format!("tcp:{address}"),
            Remote::Ssl(address) => format!("ssl:{address}"),
        }
    }
}

// ===== Connection =====

impl Connection {
    async fn open(
        remote: &Remote,
        tls: Option<&crate::tls::TlsFiles>,
        max_message: usize,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> Result<Arc<Connection>, Error> {
        let label = remote.label();
        let connect_error = |error| Error::Connect {
            remote: label.clone(),
            error,
        };
        let stream: Box<dyn Stream> = match remote {
            Remote::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_error)?,
            ),
            Remote::Tcp(address) => {
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                Box::new(stream)
            }
            Remote::Ssl(address) => {
                let files = tls.ok_or_else(|| Error::Tls {
                    path: PathBuf::new(),
                    reason: format!("{label} needs a CA certificate, a certificate and a key"),
                })?;
                let connector = files.connector()?;
                let stream = tokio::net::TcpStream::connect(address)
                    .await
                    .map_err(connect_error)?;
                let _ = stream.set_nodelay(true);
                let host = address
                    .rsplit_once(':')
                    .map_or(address.as_str(), |(host, _)| host);
                let host = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned();
                let name =
                    rustls_pki_types::ServerName::try_from(host).map_err(|error| Error::Tls {
                        path: PathBuf::new(),
                        reason: format!("{label}: {error}"),
                    })?;
                Box::new(
                    connector
                        .connect(name, stream)
                        .await
                        .map_err(connect_error)?,
                )
            }
        };
        Ok(Connection::from_stream(
            stream,
            label,
            max_message,
            incoming,
        ))
    }

    fn from_stream(
        stream: Box<dyn Stream>,
        label: String,
        max_message: usize,
        incoming: mpsc::UnboundedSender<Incoming>,
    ) -> Arc<Connection> {
        let (read, write) = tokio::io::split(stream);
        let pending: Pending = Arc::default();
        Arc::new_cyclic(|weak: &std::sync::Weak<Connection>| {
            let reader = tokio::spawn(read_loop(
                read,
                max_message,
                weak.clone(),
                pending.clone(),
                incoming,
                label.clone(),
            ));
            Connection {
                remote: label.clone(),
                writer: tokio::sync::Mutex::new(write),
                pending: pending.clone(),
                next_id: AtomicU64::new(1),
                reader,
            }
        })
    }

    async fn send(&self, message: &Message) -> Result<(), Error> {
        let mut bytes = serde_json::to_vec(&message.to_value()).unwrap_or_default();
        bytes.push(b'\n');
        let mut writer = self.writer.lock().await;
        writer
            .write_all(&bytes)
            .await
            .map_err(|_| Error::Disconnected {
                remote: self.remote.clone(),
            })
    }

    /// Sends a request and waits for its response, matched by id (notifications may arrive
    /// before it).
    async fn call(&self, method: &str, params: Json) -> Result<Json, Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (respond_tx, respond_rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(id, (method.to_owned(), respond_tx));
        }
        let request = Message::Request {
            id: json!(id),
            method: method.to_owned(),
            params,
        };
        if let Err(error) = self.send(&request).await {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&id);
            }
            return Err(error);
        }
        respond_rx.await.unwrap_or_else(|_| {
            Err(Error::Disconnected {
                remote: self.remote.clone(),
            })
        })
    }

    fn close(&self) {
        self.reader.abort();
        fail_pending(&self.pending, &self.remote, None);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Fails every call still waiting: the connection is gone, for `why` when the stream broke
/// the protocol (a message too long, invalid JSON), else plainly lost.
fn fail_pending(pending: &Pending, remote: &str, why: Option<&crate::jsonrpc::FrameError>) {
    let drained: Vec<_> = pending
        .lock()
        .map(|mut map| map.drain().collect())
        .unwrap_or_default();
    for (_, (_, respond)) in drained {
        let error = match why {
            Some(error) => Error::Protocol {
                remote: remote.to_owned(),
                error: error.clone(),
            },
            None => Error::Disconnected {
                remote: remote.to_owned(),
            },
        };
        let _ = respond.send(Err(error));
    }
}

async fn read_loop(
    mut read: ReadHalf<Box<dyn Stream>>,
    max_message: usize,
    connection: std::sync::Weak<Connection>,
    pending: Pending,
    incoming: mpsc::UnboundedSender<Incoming>,
    remote: String,
) {
    let mut splitter = FrameSplitter::with_limit(max_message);
    let mut buffer = vec![0u8; 64 * 1024];
    let mut broken = None;
    'read: loop {
        let read_bytes = match read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(count) => count,
        };
        splitter.push(&buffer[..read_bytes]);
        while let Some(text) = splitter.next_text() {
            let message = match text.and_then(Message::from_value) {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(remote = %remote, error = %error, "ovsdb protocol error; closing");
                    broken = Some(error);
                    break 'read;
                }
            };
            match message {
                Message::Response { id, result, error } => {
                    let Some(id) = id.as_u64() else { continue };
                    let entry = pending.lock().ok().and_then(|mut map| map.remove(&id));
                    if let Some((method, respond)) = entry {
                        let outcome = if error.is_null() {
                            Ok(result)
                        } else {
                            Err(Error::Rpc {
                                remote: remote.clone(),
                                method,
                                error: error.to_string(),
                            })
                        };
                        let _ = respond.send(outcome);
                    }
                }
                // The server's inactivity probe: answer with the same params.
                Message::Request { id, method, params } if method == "echo" => {
                    if let Some(connection) = connection.upgrade() {
                        let _ = connection
                            .send(&Message::Response {
                                id,
                                result: params,
                                error: Json::Null,
                            })
                            .await;
                    }
                }
                Message::Request { .. } => {}
                Message::Notification { method, params } => {
                    let _ = incoming.send(Incoming::Notification { method, params });
                }
            }
        }
    }
    fail_pending(&pending, &remote, broken.as_ref());
    let _ = incoming.send(Incoming::Closed);
}

// ===== Client =====

impl Client {
    /// Starts the client and waits until it is connected and its replica synced (or
    /// `timeout` passes).
    pub async fn connect(config: ClientConfig, timeout: Duration) -> Result<Client, Error> {
        let (client, mut ready_rx) = Client::start(config)?;
        let ready = tokio::time::timeout(timeout, ready_rx.wait_for(|ready| *ready)).await;
        match ready {
            Ok(Ok(_)) => Ok(client),
            _ => {
                let what = match client.last_error() {
                    Some(error) => format!("connecting to the database (last error: {error})"),
                    None => "connecting to the database".to_owned(),
                };
                Err(Error::Timeout {
                    what,
                    seconds: timeout.as_secs(),
                })
            }
        }
    }

    /// Starts the client and waits until it is connected and its replica synced, however
    /// long the database takes to come (the client keeps reconnecting with its backoff);
    /// every `every`, `waiting` hears how long it has waited and the last error, so a daemon
    /// can say why it is not ready yet instead of exiting. Fails only on a remote that cannot
    /// be used at all.
    pub async fn connect_patiently(
        config: ClientConfig,
        every: Duration,
        mut waiting: impl FnMut(Duration, Option<String>),
    ) -> Result<Client, Error> {
        let (client, mut ready_rx) = Client::start(config)?;
        let started = tokio::time::Instant::now();
        loop {
            match tokio::time::timeout(every, ready_rx.wait_for(|ready| *ready)).await {
                Ok(Ok(_)) => return Ok(client),
                // The supervisor is gone (it runs until the client is dropped).
                Ok(Err(_)) => {
                    return Err(Error::Disconnected {
                        remote: String::new(),
                    });
                }
                Err(_) => waiting(started.elapsed(), client.last_error()),
            }
        }
    }

    fn last_error(&self) -> Option<String> {
        self.shared
            .last_error
            .lock()
            .ok()
            .and_then(|last| last.clone())
            .map(|error| error.to_string())
    }

    /// The client and its readiness, its supervisor running.
    fn start(config: ClientConfig) -> Result<(Client, watch::Receiver<bool>), Error> {
        if config.remotes.is_empty() {
            return Err(Error::BadRemote {
                remote: String::new(),
            });
        }
        let (version_tx, _) = watch::channel(0);
        let (ready_tx, ready_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            connection: RwLock::new(None),
            replica: RwLock::new(Replica::default()),
            schema: RwLock::new(Schema::default()),
            version_tx,
            ready_tx,
            last_error: Mutex::new(None),
            fence: Mutex::new(None),
        });
        let supervisor = tokio::spawn(supervise(shared.clone()));
        let client = Client {
            shared,
            _supervisor: Arc::new(AbortOnDrop(supervisor)),
        };
        Ok((client, ready_rx))
    }

    /// Runs a transaction on the current connection; operation errors come back as
    /// [`Error::Transaction`] naming the operation and table. With a fence set, it goes first
    /// and the transaction fails as a whole when it does not hold (its result is not returned).
    pub async fn transact(&self, operations: &[Operation]) -> Result<Vec<OperationResult>, Error> {
        let connection = self.connection().await?;
        let fence = self
            .shared
            .fence
            .lock()
            .ok()
            .and_then(|fence| fence.clone());
        let mut all = Vec::with_capacity(operations.len() + 1);
        all.extend(fence.iter().cloned());
        all.extend(operations.iter().cloned());
        let mut params = vec![json!(self.shared.config.database)];
        params.extend(all.iter().map(Operation::to_json));
        let result = connection.call("transact", Json::Array(params)).await?;
        let mut results = transact_outcome(&connection.remote, &all, &result)?;
        if fence.is_some() && !results.is_empty() {
            results.remove(0);
        }
        Ok(results)
    }

    /// Puts `guard` first in every later transaction of this client (and its clones), or no
    /// longer (`None`): a writer whose right to write is recorded in the database (a leader's
    /// token) cannot write once another has replaced the token.
    pub fn set_fence(&self, guard: Option<Operation>) {
        if let Ok(mut fence) = self.shared.fence.lock() {
            *fence = guard;
        }
    }

    /// The replica of the monitored tables (one whole update at a time).
    pub fn replica(&self) -> std::sync::RwLockReadGuard<'_, Replica> {
        self.shared
            .replica
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The server's schema, as read at the last connection.
    pub fn schema(&self) -> Schema {
        self.shared
            .schema
            .read()
            .map(|schema| schema.clone())
            .unwrap_or_default()
    }

    /// Changes whenever the replica changed or the client reconnected.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.version_tx.subscribe()
    }

    /// The remote currently connected, if any.
    pub fn current_remote(&self) -> Option<String> {
        self.shared
            .connection
            .read()
            .ok()?
            .as_ref()
            .map(|connection| connection.remote.clone())
    }

    /// Waits until `condition` holds on the replica, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&Replica) -> bool,
    ) -> Result<(), Error> {
        let mut changes = self.subscribe();
        let waiting = async {
            loop {
                if condition(&self.replica()) {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, waiting)
            .await
            .map_err(|_| Error::Timeout {
                what: "a replica condition".into(),
                seconds: timeout.as_secs(),
            })
    }

    async fn connection(&self) -> Result<Arc<Connection>, Error> {
        let mut ready = self.shared.ready_tx.subscribe();
        let wait = ready.wait_for(|ready| *ready);
        if tokio::time::timeout(Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            return Err(Error::NoLeader {
                remotes: remotes_label(&self.shared.config),
            });
        }
        self.shared
            .connection
            .read()
            .ok()
            .and_then(|connection| connection.clone())
            .ok_or_else(|| Error::Disconnected {
                remote: remotes_label(&self.shared.config),
            })
    }
}

fn remotes_label(config: &ClientConfig) -> String {
    config
        .remotes
        .iter()
        .map(Remote::label)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads a `transact` result: one element per operation, an error object where one failed,
/// and an extra trailing error when the commit failed.
fn transact_outcome(
    remote: &str,
    operations: &[Operation],
    result: &Json,
) -> Result<Vec<OperationResult>, Error> {
    let results = result.as_array().cloned().unwrap_or_default();
    for (index, element) in results.iter().enumerate() {
        if let Some(error) = element["error"].as_str() {
            let operation = match operations.get(index) {
                Some(op) => format!(
                    "operation {index} ({} on {})",
                    op.name(),
                    op.table().unwrap_or("-")
                ),
                None => "commit".to_owned(),
            };
            return Err(Error::Transaction {
                remote: remote.to_owned(),
                operation,
                error: error.to_owned(),
                details: element["details"].as_str().unwrap_or("").to_owned(),
            });
        }
    }
    Ok(results
        .iter()
        .take(operations.len())
        .map(OperationResult::from_json)
        .collect())
}

/// Keeps a connection: connects to the first suitable remote, syncs, watches, reconnects.
async fn supervise(shared: Arc<Shared>) {
    let remotes = shared.config.remotes.clone();
    let mut next = 0usize;
    let mut backoff = Duration::from_millis(50);
    loop {
        let remote = remotes[next % remotes.len()].clone();
        next += 1;
        let (incoming_tx, mut incoming_rx) = mpsc::unbounded_channel();
        // A member that accepts connections but never answers must not hold us: give up on
        // it after a while and try the next.
        let limit = (shared.config.probe_interval * 2).max(Duration::from_secs(10));
        let attempt = tokio::time::timeout(limit, establish(&shared, &remote, incoming_tx)).await;
        let attempt = attempt.unwrap_or_else(|_| {
            Err(Error::Timeout {
                what: format!("setting up {}", remote.label()),
                seconds: limit.as_secs(),
            })
        });
        match attempt {
            Ok(connection) => {
                backoff = Duration::from_millis(50);
                tracing::info!(remote = %connection.remote, database = %shared.config.database, "ovsdb connected");
                let reason = watch_connection(&shared, &connection, &mut incoming_rx).await;
                let _ = shared.ready_tx.send_replace(false);
                if let Ok(mut current) = shared.connection.write() {
                    *current = None;
                }
                connection.close();
                tracing::warn!(remote = %connection.remote, reason, "ovsdb connection lost; reconnecting");
            }
            Err(error) => {
                tracing::debug!(remote = %remote.label(), error = %error, "ovsdb remote not usable");
                if let Ok(mut last) = shared.last_error.lock() {
                    *last = Some(error.to_string());
                }
                if next.is_multiple_of(remotes.len()) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Connects, reads the schema, checks leadership, and (re)starts the monitor.
async fn establish(
    shared: &Arc<Shared>,
    remote: &Remote,
    incoming: mpsc::UnboundedSender<Incoming>,
) -> Result<Arc<Connection>, Error> {
    let connection = Connection::open(
        remote,
        shared.config.tls.as_ref(),
        shared.config.max_message,
        incoming,
    )
    .await?;
    let config = &shared.config;
    if config.leader_only {
        check_leader(&connection, &config.database).await?;
        // Leadership can move while we stay connected: watch it, and leave when it does.
        let request = json!({"Database": [{"columns": ["name", "model", "leader", "connected"],
                                            "where": [["name", "==", config.database]]}]});
        connection
            .call("monitor_cond", json!(["_Server", SERVER_MONITOR, request]))
            .await?;
    }
    let schema = Schema::from_json(
        &connection
            .call("get_schema", json!([config.database]))
            .await?,
    );
    if let Ok(mut current) = shared.schema.write() {
        *current = schema.clone();
    }
    let requests: serde_json::Map<String, Json> = config
        .monitor
        .iter()
        .filter(|(table, _)| schema.has_table(table))
        .map(|(table, columns)| {
            let request = if columns.is_empty() {
                json!({})
            } else {
                json!({"columns": columns})
            };
            (table.clone(), json!([request]))
        })
        .collect();
    if !requests.is_empty() {
        let last = shared
            .replica
            .read()
            .ok()
            .and_then(|replica| replica.last_txn_id.clone());
        let since = last
            .clone()
            .unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
        let params = json!([config.database, "veg", requests, since]);
        match connection.call("monitor_cond_since", params).await {
            Ok(result) => {
                let found = result[0].as_bool().unwrap_or(false);
                apply_to_replica(
                    shared,
                    &schema,
                    Format::Update2,
                    &result[2],
                    !found,
                    result[1].as_str(),
                );
                tracing::debug!(remote = %connection.remote, resumed = found, "ovsdb monitor synced");
            }
            Err(Error::Rpc { .. }) => {
                // An older server: monitor_cond (update2), else RFC 7047 monitor (update); a
                // full dump at every connection.
                match connection
                    .call("monitor_cond", json!([config.database, "veg", requests]))
                    .await
                {
                    Ok(result) => {
                        apply_to_replica(shared, &schema, Format::Update2, &result, true, None)
                    }
                    Err(Error::Rpc { .. }) => {
                        let plain: serde_json::Map<String, Json> = requests
                            .iter()
                            .map(|(table, request)| (table.clone(), request[0].clone()))
                            .collect();
                        let result = connection
                            .call("monitor", json!([config.database, "veg", plain]))
                            .await?;
                        apply_to_replica(shared, &schema, Format::Rfc7047, &result, true, None);
                    }
                    Err(error) => return Err(error),
                }
            }
            Err(error) => return Err(error),
        }
    }
    if let Ok(mut current) = shared.connection.write() {
        *current = Some(connection.clone());
    }
    let _ = shared.ready_tx.send_replace(true);
    shared.version_tx.send_modify(|version| *version += 1);
    Ok(connection)
}

/// §"Clustered databases" in ovsdb(7): a member reports `leader` and `connected` in
/// `_Server.Database`; a standalone server is always fine.
async fn check_leader(connection: &Connection, database: &str) -> Result<(), Error> {
    let select = json!(["_Server", {"op": "select", "table": "Database", "where": [["name", "==", database]],
                                     "columns": ["model", "leader", "connected"]}]);
    let result = connection.call("transact", select).await?;
    let row = &result[0]["rows"][0];
    let clustered = row["model"] == "clustered";
    if clustered && !(row["leader"] == true && row["connected"] == true) {
        connection.close();
        return Err(Error::NoLeader {
            remotes: connection.remote.clone(),
        });
    }
    Ok(())
}

/// How a monitor reports changes.
#[derive(Clone, Copy)]
enum Format {
    /// `table-updates2` (monitor_cond, monitor_cond_since).
    Update2,
    /// RFC 7047 `table-updates` (monitor).
    Rfc7047,
}

/// Applies one whole update under the write lock, then tells subscribers.
fn apply_to_replica(
    shared: &Shared,
    schema: &Schema,
    format: Format,
    updates: &Json,
    resync: bool,
    txn_id: Option<&str>,
) {
    if let Ok(mut replica) = shared.replica.write() {
        if resync {
            replica.clear();
        }
        match format {
            Format::Update2 => replica.apply(schema, updates),
            Format::Rfc7047 => replica.apply_rfc7047(updates),
        }
        if let Some(txn_id) = txn_id {
            replica.last_txn_id = Some(txn_id.to_owned());
        }
    }
    shared.version_tx.send_modify(|version| *version += 1);
}

/// Monitor id of the `_Server` leadership watch.
const SERVER_MONITOR: &str = "veg-server";

/// Whether a `_Server.Database` update says this member is no longer a connected leader.
fn lost_leadership(updates: &Json) -> bool {
    updates["Database"].as_object().is_some_and(|rows| {
        rows.values().any(|update| {
            let row = update
                .get("modify")
                .or_else(|| update.get("insert"))
                .or_else(|| update.get("initial"));
            row.is_some_and(|row| row["leader"] == false || row["connected"] == false)
        })
    })
}

/// Applies notifications and probes the connection until it breaks; returns why.
async fn watch_connection(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    incoming: &mut mpsc::UnboundedReceiver<Incoming>,
) -> &'static str {
    let probe = shared.config.probe_interval;
    let mut ticker = tokio::time::interval(probe);
    ticker.tick().await;
    let schema = shared
        .schema
        .read()
        .map(|schema| schema.clone())
        .unwrap_or_default();
    loop {
        tokio::select! {
            message = incoming.recv() => match message {
                Some(Incoming::Notification { method, params }) => match method.as_str() {
                    "update3" => apply_to_replica(shared, &schema, Format::Update2, &params[2], false, params[1].as_str()),
                    "update2" if params[0] == SERVER_MONITOR && lost_leadership(&params[1]) => {
                        return "this member is no longer the cluster leader";
                    }
                    "update2" if params[0] == SERVER_MONITOR => {}
                    "update2" => apply_to_replica(shared, &schema, Format::Update2, &params[1], false, None),
                    "update" => apply_to_replica(shared, &schema, Format::Rfc7047, &params[1], false, None),
                    _ => {}
                },
                Some(Incoming::Closed) | None => return "closed by the server or the network",
            },
            _ = ticker.tick() => {
                let echo = connection.call("echo", json!(["veg-probe"]));
                if tokio::time::timeout(probe, echo).await.is_err() {
                    return "no answer to our echo probe";
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server may send notifications (and its own echo) before the reply to our request.
    #[tokio::test]
    async fn replies_are_matched_by_id_whatever_comes_first() -> anyhow::Result<()> {
        use tokio::io::AsyncBufReadExt;
        let (ours, theirs) = tokio::net::UnixStream::pair()?;
        let (incoming_tx, mut incoming_rx) = mpsc::unbounded_channel();
        let connection = Connection::from_stream(
            Box::new(ours),
            "test".into(),
            crate::jsonrpc::MAX_MESSAGE,
            incoming_tx,
        );
        let server = tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(theirs);
            let mut lines = tokio::io::BufReader::new(read).lines();
            let request: Json =
                serde_json::from_str(&lines.next_line().await?.unwrap_or_default())?;
            let id = request["id"].clone();
            let out = format!(
                "{}{}{}",
                json!({"id": null, "method": "update3", "params": ["veg", "t1", {"Address_Set": {}}]}),
                json!({"id": "probe", "method": "echo", "params": ["x"]}),
                json!({"id": id, "result": [{"count": 1}], "error": null}),
            );
            write.write_all(out.as_bytes()).await?;
            let echo_reply: Json =
                serde_json::from_str(&lines.next_line().await?.unwrap_or_default())?;
            anyhow::Ok(echo_reply)
        });
        let result = connection
            .call("transact", json!(["OVN_Northbound"]))
            .await?;
        assert_eq!(result, json!([{"count": 1}]));
        let notification = incoming_rx.recv().await;
        assert!(
            matches!(notification, Some(Incoming::Notification { ref method, .. }) if method == "update3")
        );
        let echo_reply = server.await??;
        assert_eq!(
            echo_reply,
            json!({"id": "probe", "result": ["x"], "error": null})
        );
        Ok(())
    }

    #[test]
    fn notices_lost_leadership() {
        assert!(lost_leadership(
            &json!({"Database": {"u": {"modify": {"leader": false}}}})
        ));
        assert!(lost_leadership(
            &json!({"Database": {"u": {"modify": {"connected": false}}}})
        ));
        assert!(!lost_leadership(
            &json!({"Database": {"u": {"modify": {"index": 7}}}})
        ));
    }

    #[test]
    fn parses_remotes() {
        let remotes = Remote::parse_list("unix:/run/ovn/ovnnb_db.sock, tcp:198.51.100.1:6641");
        assert_eq!(
            remotes.ok(),
            Some(vec![
                Remote::Unix("/run/ovn/ovnnb_db.sock".into()),
                Remote::Tcp("198.51.100.1:6641".into())
            ])
        );
        assert_eq!(
            Remote::parse("ssl:198.51.100.1:6641").ok(),
            Some(Remote::Ssl("198.51.100.1:6641".into()))
        );
        assert!(Remote::parse("ftp:198.51.100.1:6641").is_err());
        assert!(Remote::parse("tcp:nohost").is_err());
    }

    #[test]
    fn transaction_errors_name_the_operation() {
        let operations = [
            Operation::Comment("c".into()),
            Operation::Delete {
                table: "Address_Set".into(),
                conditions: vec![],
            },
        ];
        let result =
            json!([{}, {"error": "referential integrity violation", "details": "row in use"}]);
        let error = transact_outcome("unix:/x", &operations, &result)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "transaction on unix:/x failed at operation 1 (delete on Address_Set): referential integrity violation (row in use)"
            )
        );
        let commit =
            json!([{}, {"count": 1}, {"error": "constraint violation", "details": "duplicate"}]);
        let error = transact_outcome("unix:/x", &operations, &commit)
            .err()
            .map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("failed at commit: constraint violation")));
    }
}
