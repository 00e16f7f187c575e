//! Real `ovsdb-server`s for integration tests, with OVN's Northbound schema: standalone or a
//! three-member Raft cluster on loopback TCP. Every file and socket is under a per-test temp
//! dir; each server is stopped by its pid (checked against /proc cmdline) when the harness is
//! dropped, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::process::{run, wait_until};

/// OVN's Northbound schema as Debian installs it.
pub const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether ovsdb-server and the schema are here; under CI a missing one fails the test.
pub fn prerequisites() -> bool {
    let missing: Vec<&str> = [
        "/usr/sbin/ovsdb-server",
        "/usr/bin/ovsdb-tool",
        "/usr/bin/ovs-appctl",
        NB_SCHEMA,
    ]
    .into_iter()
    .filter(|path| !Path::new(path).exists())
    .collect();
    if missing.is_empty() {
        return true;
    }
    crate::ci::skip_or_fail(&format!(
        "needs {} (scripts/install-deps.sh installs them)",
        missing.join(", ")
    ))
}

/// One server of the harness.
pub struct Member {
    pub dir: PathBuf,
    pub db: PathBuf,
    pub raft_port: Option<u16>,
}

pub struct Servers {
    pub root: PathBuf,
    pub members: Vec<Member>,
}

impl Servers {
    /// A standalone NB database.
    pub fn standalone() -> Result<Servers> {
        Servers::standalone_with_schema(Path::new(NB_SCHEMA))
    }

    /// A standalone database of the given schema file.
    pub fn standalone_with_schema(schema: &Path) -> Result<Servers> {
        let root = new_root("standalone")?;
        let member = Member {
            dir: root.join("s0"),
            db: root.join("s0/nb.db"),
            raft_port: None,
        };
        std::fs::create_dir_all(&member.dir)?;
        run(
            "ovsdb-tool",
            &[
                "create",
                &member.db.to_string_lossy(),
                &schema.to_string_lossy(),
            ],
        )?;
        let servers = Servers {
            root,
            members: vec![member],
        };
        servers.start(0)?;
        Ok(servers)
    }

    /// A three-member clustered NB database on loopback ports.
    pub fn cluster() -> Result<Servers> {
        let root = new_root("cluster")?;
        let base = 20_000
            + (std::process::id() % 2000) as u16 * 10
            + (NEXT.fetch_add(1, Ordering::Relaxed) % 10) as u16 * 3;
        let members: Vec<Member> = (0..3)
            .map(|index| Member {
                dir: root.join(format!("s{index}")),
                db: root.join(format!("s{index}/nb.db")),
                raft_port: Some(base + index),
            })
            .collect();
        for member in &members {
            std::fs::create_dir_all(&member.dir)?;
        }
        let address = |member: &Member| format!("tcp:127.0.0.1:{}", member.raft_port.unwrap_or(0));
        run(
            "ovsdb-tool",
            &[
                "create-cluster",
                &members[0].db.to_string_lossy(),
                NB_SCHEMA,
                &address(&members[0]),
            ],
        )?;
        for member in &members[1..] {
            run(
                "ovsdb-tool",
                &[
                    "join-cluster",
                    &member.db.to_string_lossy(),
                    "OVN_Northbound",
                    &address(member),
                    &address(&members[0]),
                ],
            )?;
        }
        let servers = Servers { root, members };
        for index in 0..3 {
            servers.start(index)?;
        }
        ensure!(
            wait_until(Duration::from_secs(10), || servers.leader().is_some()),
            "the cluster elected no leader"
        );
        Ok(servers)
    }

    pub fn socket(&self, index: usize) -> PathBuf {
        self.members[index].dir.join("nb.sock")
    }

    /// `unix:…,unix:…` for every member.
    pub fn remotes(&self) -> String {
        (0..self.members.len())
            .map(|index| format!("unix:{}", self.socket(index).display()))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn start(&self, index: usize) -> Result<()> {
        self.launch(index, &[])
    }

    /// Starts member `index` with its private paths plus `extra` arguments, and waits for its
    /// unix socket.
    fn launch(&self, index: usize, extra: &[String]) -> Result<()> {
        let member = &self.members[index];
        let dir = member.dir.to_string_lossy();
        let mut args = vec![
            "--detach".to_owned(),
            "--no-chdir".to_owned(),
            format!("--pidfile={dir}/pid"),
            format!("--log-file={dir}/log"),
            format!("--unixctl={dir}/ctl"),
            format!("--remote=punix:{dir}/nb.sock"),
        ];
        args.extend_from_slice(extra);
        args.push(member.db.to_string_lossy().into_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ovsdb-server", &args)?;
        ensure!(
            wait_until(Duration::from_secs(5), || self.socket(index).exists()),
            "ovsdb-server {index} did not open its socket"
        );
        Ok(())
    }

    fn pid(&self, index: usize) -> Option<u32> {
        let dir = &self.members[index].dir;
        let pid: u32 = std::fs::read_to_string(dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&*dir.to_string_lossy())
            .then_some(pid)
    }

    /// Stops member `index` (SIGKILL when `hard`), and waits until it is gone.
    pub fn stop(&self, index: usize, hard: bool) -> Result<()> {
        let Some(pid) = self.pid(index) else {
            return Ok(());
        };
        run(
            "kill",
            &[if hard { "-KILL" } else { "-TERM" }, &pid.to_string()],
        )?;
        ensure!(
            wait_until(Duration::from_secs(5), || !Path::new(&format!(
                "/proc/{pid}"
            ))
            .exists()),
            "ovsdb-server {pid} did not stop"
        );
        let _ = std::fs::remove_file(self.socket(index));
        Ok(())
    }

    /// Sends a signal (e.g. `-STOP`, `-CONT`) to member `index`.
    pub fn signal(&self, index: usize, signal: &str) -> Result<()> {
        let pid = self.pid(index).context("server not running")?;
        run("kill", &[signal, &pid.to_string()])
    }

    /// The index of the member that is the Raft leader now.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|index| {
            let ctl = self.members[*index].dir.join("ctl");
            Command::new("ovs-appctl")
                .args([
                    "-t",
                    &ctl.to_string_lossy(),
                    "cluster/status",
                    "OVN_Northbound",
                ])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("Role: leader"))
        })
    }
}

impl Servers {
    /// Restarts member `index` with an extra `pssl:PORT:127.0.0.1` remote using `pki`.
    pub fn add_ssl_remote(&self, index: usize, pki: &Path, port: u16) -> Result<()> {
        self.stop(index, false)?;
        let file = |name: &str| pki.join(name).to_string_lossy().into_owned();
        self.launch(
            index,
            &[
                format!("--remote=pssl:{port}:127.0.0.1"),
                format!("--private-key={}", file("server.key")),
                format!("--certificate={}", file("server.crt")),
                format!("--ca-cert={}", file("ca.crt")),
            ],
        )?;
        ensure!(
            wait_until(Duration::from_secs(5), || std::net::TcpStream::connect((
                "127.0.0.1",
                port
            ))
            .is_ok()),
            "ovsdb-server did not listen on {port}"
        );
        Ok(())
    }
}

/// A CA signing a server and a client certificate, and a stranger signed by another CA.
pub fn make_pki(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    for ca in ["ca", "other-ca"] {
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
                "-keyout",
                &path(&format!("{ca}.key")),
                "-out",
                &path(&format!("{ca}.crt")),
            ],
        )?;
    }
    // X.509 v3 with the usual extensions: WebPKI refuses v1 certificates, which is what
    // `openssl x509 -req` writes without them.
    let extensions = dir.join("ext.cnf");
    std::fs::write(
        &extensions,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1\n",
    )?;
    for (name, ca) in [("server", "ca"), ("client", "ca"), ("stranger", "other-ca")] {
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &path(&format!("{name}.key")),
                "-out",
                &path(&format!("{name}.csr")),
            ],
        )?;
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                &path(&format!("{name}.csr")),
                "-CA",
                &path(&format!("{ca}.crt")),
                "-CAkey",
                &path(&format!("{ca}.key")),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &extensions.to_string_lossy(),
                "-out",
                &path(&format!("{name}.crt")),
            ],
        )?;
    }
    Ok(())
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

impl Drop for Servers {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            let _ = self.stop(index, true);
        }
        if std::env::var_os("VEG_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn new_root(kind: &str) -> Result<PathBuf> {
    let root = std::env::temp_dir().join(format!(
        "vo{}{}-{kind}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&root).context("creating the test dir")?;
    Ok(root)
}

impl Servers {
    /// Runs one NB transaction of RFC 7047 operations (JSON) on member `index` with
    /// `ovsdb-client`, independent of the client under test.
    pub fn transact(&self, index: usize, operations: &[serde_json::Value]) -> Result<String> {
        let mut request = vec![serde_json::Value::from("OVN_Northbound")];
        request.extend(operations.iter().cloned());
        let output = Command::new("ovsdb-client")
            .arg("transact")
            .arg(format!("unix:{}", self.socket(index).display()))
            .arg(serde_json::Value::Array(request).to_string())
            .output()
            .context("running ovsdb-client")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        ensure!(
            output.status.success() && !text.contains("\"error\""),
            "ovsdb-client transact: {} {}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(text)
    }

    /// Seeds what the controller and the monitor expect of a Kube-OVN NB: the NB_Global row,
    /// the router `router`, and the logical switch ports `ports` (by name).
    pub fn seed_nb(&self, index: usize, router: &str, ports: &[&str]) -> Result<()> {
        let mut operations = vec![
            serde_json::json!({"op": "insert", "table": "NB_Global", "row": {}}),
            serde_json::json!({"op": "insert", "table": "Logical_Router",
                "row": {"name": router}}),
        ];
        operations.extend(ports.iter().map(|port| {
            serde_json::json!({"op": "insert", "table": "Logical_Switch_Port",
                "row": {"name": port}})
        }));
        self.transact(index, &operations).map(|_| ())
    }
}
