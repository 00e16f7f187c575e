//! The echo service and its client the namespace tests use, as Python scripts (python3 is in
//! every test image; a Rust binary would need building per test).
//!
//! - `echo.py PORT [tagged]` serves TCP and UDP on IPv4 and IPv6 and answers each connection
//!   or datagram with the source address it sees (`tcp `/`udp ` first when tagged); prints
//!   `ready` once listening.
//! - `ask.py PROTO HOST PORT [ATTEMPTS] [TIMEOUT]` asks once per attempt until one answers
//!   and prints the answer (nothing when none does).

use std::path::{Path, PathBuf};

/// The echo service.
pub const ECHO: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
tagged = len(sys.argv) > 2 and sys.argv[2] == "tagged"
def tag(kind):
    return (kind + " ") if tagged else ""
def serve(family, kind, address):
    s = socket.socket(family, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((address, port))
    if kind == socket.SOCK_STREAM:
        s.listen(64)
        while True:
            c, peer = s.accept(); c.sendall((tag("tcp") + peer[0] + "\n").encode()); c.close()
    while True:
        data, peer = s.recvfrom(2048); s.sendto((tag("udp") + peer[0] + "\n").encode(), peer)
for family, address in [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")]:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        threading.Thread(target=serve, args=(family, kind, address), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"#;

/// The echo service's client.
pub const ASK: &str = r#"
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
attempts = int(sys.argv[4]) if len(sys.argv) > 4 else 1
timeout = float(sys.argv[5]) if len(sys.argv) > 5 else 2.0
family = socket.AF_INET6 if ":" in host else socket.AF_INET
for attempt in range(attempts):
    try:
        if proto == "tcp":
            s = socket.create_connection((host, port), timeout=timeout)
            print(s.recv(100).decode().strip()); break
        s = socket.socket(family, socket.SOCK_DGRAM); s.settimeout(timeout)
        s.sendto(b"?", (host, port)); print(s.recvfrom(100)[0].decode().strip()); break
    except OSError:
        continue
"#;

/// Writes `echo.py` and `ask.py` into `dir`; returns their paths.
pub fn write_scripts(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let (echo, ask) = (dir.join("echo.py"), dir.join("ask.py"));
    std::fs::write(&echo, ECHO)?;
    std::fs::write(&ask, ASK)?;
    Ok((echo, ask))
}
