//! The controller's HTTP endpoint: `GET /metrics`, `GET /livez`, `GET /readyz` (the caches are
//! complete), and `PUT /log-level` (body: a tracing filter such as `debug` or
//! `info,veg_controller=trace`). HTTP/1.x, one request per connection, bounded reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Changes the log filter.
pub type SetLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// What the endpoint serves.
pub struct Endpoint {
    /// The metrics.
    pub registry: Registry,
    /// Set once every watch has listed (standbys are ready too: they serve and wait).
    pub ready: AtomicBool,
    /// Changes the log filter.
    pub set_level: SetLevel,
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: Arc<Endpoint>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(stream, &endpoint)).await;
        });
    }
}

/// The answer to one request: status line, content type, body.
pub fn respond(
    endpoint: &Endpoint,
    method: &str,
    path: &str,
    body: &str,
) -> (&'static str, String) {
    match (method, path) {
        ("GET", "/metrics") => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, &endpoint.registry) {
                Ok(()) => ("200 OK", text),
                Err(_) => ("500 Internal Server Error", "encoding failed\n".into()),
            }
        }
        ("GET", "/livez") => ("200 OK", "ok\n".into()),
        ("GET", "/readyz") if endpoint.ready.load(Ordering::Relaxed) => ("200 OK", "ok\n".into()),
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "caches not complete yet\n".into(),
        ),
        ("PUT", "/log-level") => match (endpoint.set_level)(body) {
            Ok(()) => ("200 OK", format!("log level: {}\n", body.trim())),
            Err(error) => ("400 Bad Request", format!("{error}\n")),
        },
        _ => ("404 Not Found", "not found\n".into()),
    }
}

async fn answer(mut stream: TcpStream, endpoint: &Endpoint) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let header_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if request.len() > 8192 {
            return Ok(());
        }
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&request[..header_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(4096);
    while request.len() < header_end + length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let body_end = request.len().min(header_end + length);
    let body = String::from_utf8_lossy(&request[header_end..body_end]).into_owned();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, text) = respond(endpoint, method, path, &body);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let levels = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = levels.clone();
        let endpoint = Endpoint {
            registry: Registry::default(),
            ready: AtomicBool::new(false),
            set_level: Arc::new(move |level: &str| {
                if level.trim() == "nonsense[" {
                    return Err("bad directive".into());
                }
                seen.lock()
                    .map_err(|e| e.to_string())?
                    .push(level.trim().to_owned());
                Ok(())
            }),
        };
        assert_eq!(respond(&endpoint, "GET", "/livez", "").0, "200 OK");
        assert_eq!(
            respond(&endpoint, "GET", "/readyz", "").0,
            "503 Service Unavailable"
        );
        endpoint.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&endpoint, "GET", "/readyz", "").0, "200 OK");
        assert_eq!(
            respond(&endpoint, "PUT", "/log-level", "debug\n").0,
            "200 OK"
        );
        assert_eq!(
            respond(&endpoint, "PUT", "/log-level", "nonsense[").0,
            "400 Bad Request"
        );
        assert_eq!(respond(&endpoint, "GET", "/nope", "").0, "404 Not Found");
        assert_eq!(
            levels.lock().map(|l| l.clone()).unwrap_or_default(),
            vec!["debug".to_owned()]
        );
    }
}
