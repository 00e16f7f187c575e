//! A mocked API server for the adapter's tests (tower-test, as kube-rs and controller-rs do):
//! it records every request (method, path, body) and answers like a small API server — objects
//! by path with resourceVersions, 404 for missing ones, 409 when a create finds the object or
//! a write carries a stale resourceVersion, merge and apply patches merged into the object.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

/// One request as the server saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// GET, POST, PUT, PATCH, DELETE.
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The query string.
    pub query: String,
    /// The JSON body (`Null` when none).
    pub body: Value,
    /// When the server received it.
    pub at: std::time::Instant,
}

/// What the server holds.
#[derive(Debug, Default)]
pub struct State {
    /// Objects by path.
    pub objects: BTreeMap<String, Value>,
    /// Every request, in order.
    pub requests: Vec<Recorded>,
    /// The server stops answering (requests are recorded and left hanging, as behind a
    /// partition): the test for a leader cut off from the API.
    pub silent: bool,
    version: u64,
}

impl State {
    /// The requests other than reads (GET, and the watch/list traffic).
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests
            .iter()
            .filter(|r| r.method != "GET")
            .cloned()
            .collect()
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": message, "reason": reason, "code": code}),
    )
}

/// The resource (plural) and the path prefix of a collection or object path:
/// `/apis/g/v/[namespaces/ns/]resource[/name]`.
fn split(path: &str) -> Option<(String, Option<String>, String, Option<String>)> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("/api/v1".to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, resource] => {
            Some((prefix, Some((*ns).to_owned()), (*resource).to_owned(), None))
        }
        ["namespaces", ns, resource, name, ..] => Some((
            prefix,
            Some((*ns).to_owned()),
            (*resource).to_owned(),
            Some((*name).to_owned()),
        )),
        [resource] => Some((prefix, None, (*resource).to_owned(), None)),
        [resource, name, ..] => Some((
            prefix,
            None,
            (*resource).to_owned(),
            Some((*name).to_owned()),
        )),
        _ => None,
    }
}

/// A list of the stored objects under a collection path (all namespaces when the path names
/// none), filtered by a `labelSelector=k=v` query; metadata-only when asked.
fn list(state: &State, path: &str, query: &str, metadata_only: bool) -> Value {
    let Some((prefix, namespace, resource, _)) = split(path) else {
        return json!({"items": []});
    };
    let selector: Option<(String, String)> = query.split('&').find_map(|pair| {
        let value = pair
            .strip_prefix("labelSelector=")?
            .replace("%3D", "=")
            .replace("%2F", "/");
        let (k, v) = value.split_once('=')?;
        Some((k.to_owned(), v.to_owned()))
    });
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(object_path, _)| {
            split(object_path).is_some_and(|(p, ns, r, name)| {
                p == prefix
                    && r == resource
                    && name.is_some()
                    && (namespace.is_none() || ns == namespace)
            })
        })
        .filter(|(_, object)| {
            selector
                .as_ref()
                .is_none_or(|(k, v)| object["metadata"]["labels"][k] == v.as_str())
        })
        .map(|(_, object)| {
            if metadata_only {
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                    "metadata": object["metadata"]})
            } else {
                object.clone()
            }
        })
        .collect();
    let version = state.version.to_string();
    if metadata_only {
        json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
            "metadata": {"resourceVersion": version}, "items": items})
    } else {
        json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": version}, "items": items})
    }
}

fn answer(state: &mut State, recorded: &Recorded, metadata_only: bool) -> (u16, Value) {
    if recorded.method == "GET"
        && split(&recorded.path).is_some_and(|(_, _, _, name)| name.is_none())
    {
        // A list, or a watch the mock answers with no events (the watcher then watches again).
        if recorded.query.contains("watch=true") {
            return (200, Value::Null);
        }
        return (
            200,
            list(state, &recorded.path, &recorded.query, metadata_only),
        );
    }
    let path = recorded
        .path
        .strip_suffix("/status")
        .unwrap_or(&recorded.path)
        .to_owned();
    let body = &recorded.body;
    match recorded.method.as_str() {
        "GET" => match state.objects.get(&path) {
            Some(object) => (200, object.clone()),
            None => status(404, "NotFound", &format!("{path} not found")),
        },
        "POST" => {
            let name = body["metadata"]["name"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("generated-{}", state.version + 1));
            let path = format!("{path}/{name}");
            if state.objects.contains_key(&path) {
                return status(409, "AlreadyExists", &format!("{path} exists"));
            }
            state.version += 1;
            let mut object = body.clone();
            object["metadata"]["name"] = json!(name);
            object["metadata"]["resourceVersion"] = json!(state.version.to_string());
            state.objects.insert(path, object.clone());
            (201, object)
        }
        "PUT" | "PATCH" => {
            let current = state.objects.get(&path).cloned();
            let wanted_version = body["metadata"]["resourceVersion"].as_str();
            let current_version = current
                .as_ref()
                .and_then(|c| c["metadata"]["resourceVersion"].as_str());
            if wanted_version.is_some() && wanted_version != current_version {
                return status(409, "Conflict", "the object has been modified");
            }
            let mut object = match (recorded.method.as_str(), current) {
                ("PUT", Some(_)) => body.clone(),
                ("PUT", None) => return status(404, "NotFound", &format!("{path} not found")),
                (_, Some(mut current)) => {
                    merge(&mut current, body);
                    current
                }
                // Server-side apply creates.
                (_, None) if recorded.query.contains("fieldManager") => body.clone(),
                (_, None) => return status(404, "NotFound", &format!("{path} not found")),
            };
            state.version += 1;
            object["metadata"]["resourceVersion"] = json!(state.version.to_string());
            state.objects.insert(path, object.clone());
            (200, object)
        }
        _ => status(405, "MethodNotAllowed", "not in the mock"),
    }
}

/// A client and the server state behind it; the server runs until the client is dropped.
pub fn server() -> (Client, Arc<Mutex<State>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        // Requests left unanswered while silent; dropping one would fail it instead.
        let mut hanging = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let at = std::time::Instant::now();
            let metadata_only = request
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("PartialObjectMetadata"));
            let watch = request
                .uri()
                .query()
                .is_some_and(|q| q.contains("watch=true"));
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            let recorded = Recorded {
                method,
                path,
                query,
                body,
                at,
            };
            let (code, reply) = match shared.lock() {
                Ok(mut state) if state.silent => {
                    state.requests.push(recorded);
                    hanging.push(send);
                    continue;
                }
                Ok(mut state) => {
                    let reply = answer(&mut state, &recorded, metadata_only);
                    state.requests.push(recorded);
                    reply
                }
                Err(_) => status(500, "InternalError", "poisoned"),
            };
            let body = if reply.is_null() {
                Vec::new()
            } else {
                reply.to_string().into_bytes()
            };
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(body));
            if let Ok(response) = response {
                // A watch stays open a while, as a quiet one would, so watchers do not spin.
                tokio::spawn(async move {
                    if watch {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    send.send_response(response);
                });
            }
        }
    });
    (Client::new(service, "default"), state)
}
