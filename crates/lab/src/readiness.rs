//! Readiness probes as a kubelet runs them: what a container's `readinessProbe` asks (exec or
//! httpGet), how often, and when its answers make the container Ready or not. Kubernetes'
//! defaults and rules: not Ready until `successThreshold` successes in a row, no longer Ready
//! after `failureThreshold` failures in a row; a container without a probe is Ready once
//! running. Pure: the kubelet runs the probes and feeds the answers in.

use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// What a probe does.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeAction {
    /// A command in the container; success is exit status 0.
    Exec(Vec<String>),
    /// `GET http://<host or the Pod's IP>:<port><path>`; success is a 2xx or 3xx answer.
    HttpGet {
        host: Option<String>,
        port: u16,
        path: String,
    },
}

/// One container's readiness probe, defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadinessProbe {
    pub container: String,
    pub action: ProbeAction,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// The readiness probes of a Pod spec's containers; an error names a probe the kubelet could
/// not run (a named port no container port has, an action the lab does not run).
pub fn readiness_probes(spec: &Json) -> Result<Vec<ReadinessProbe>, String> {
    let mut probes = Vec::new();
    for container in spec["containers"].as_array().into_iter().flatten() {
        let probe = &container["readinessProbe"];
        if probe.is_null() {
            continue;
        }
        let name = container["name"].as_str().unwrap_or("container").to_owned();
        let seconds = |field: &str, default: u64| {
            Duration::from_secs(probe[field].as_u64().unwrap_or(default))
        };
        let count = |field: &str, default: u32| {
            probe[field]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .unwrap_or(default)
        };
        let action = if let Some(command) = probe["exec"]["command"].as_array() {
            ProbeAction::Exec(
                command
                    .iter()
                    .map(|arg| arg.as_str().unwrap_or_default().to_owned())
                    .collect(),
            )
        } else if probe["httpGet"].is_object() {
            let http = &probe["httpGet"];
            let port = match &http["port"] {
                Json::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                Json::String(named) => container["ports"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["name"] == named.as_str())
                    .and_then(|p| p["containerPort"].as_u64())
                    .and_then(|n| u16::try_from(n).ok()),
                _ => None,
            }
            .ok_or_else(|| {
                format!(
                    "container {name}: readinessProbe port {} is no port of the container",
                    http["port"]
                )
            })?;
            ProbeAction::HttpGet {
                host: http["host"].as_str().map(str::to_owned),
                port,
                path: http["path"].as_str().unwrap_or("/").to_owned(),
            }
        } else {
            return Err(format!(
                "container {name}: the lab runs exec and httpGet readiness probes only"
            ));
        };
        probes.push(ReadinessProbe {
            container: name,
            action,
            initial_delay: seconds("initialDelaySeconds", 0),
            period: seconds("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: seconds("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: count("successThreshold", 1),
            failure_threshold: count("failureThreshold", 3),
        });
    }
    Ok(probes)
}

/// A probe's answers so far.
#[derive(Clone, Debug)]
pub struct ProbeState {
    pub probe: ReadinessProbe,
    pub ready: bool,
    successes: u32,
    failures: u32,
    next_at: Instant,
}

impl ProbeState {
    /// A probe of a container started at `started`: not Ready, first run after the initial
    /// delay.
    pub fn new(probe: ReadinessProbe, started: Instant) -> ProbeState {
        let next_at = started + probe.initial_delay;
        ProbeState {
            probe,
            ready: false,
            successes: 0,
            failures: 0,
            next_at,
        }
    }

    /// Whether the probe is to run at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_at
    }

    /// Records an answer given at `now`; whether the container's readiness changed.
    pub fn record(&mut self, ok: bool, now: Instant) -> bool {
        self.next_at = now + self.probe.period;
        let was = self.ready;
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes >= self.probe.success_threshold {
                self.ready = true;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures >= self.probe.failure_threshold {
                self.ready = false;
            }
        }
        was != self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_are_read_with_kubernetes_defaults_and_named_ports() {
        let spec = json!({"containers": [
            {"name": "gateway", "ports": [{"name": "gateway-http", "containerPort": 10670}],
             "readinessProbe": {"httpGet": {"path": "/readyz", "port": "gateway-http"},
                                "periodSeconds": 2, "failureThreshold": 1}},
            {"name": "bfdd", "readinessProbe": {"exec": {"command": ["veg", "gateway", "probe"]}}},
            {"name": "plain"}
        ]});
        let probes = readiness_probes(&spec).unwrap_or_default();
        assert_eq!(probes.len(), 2);
        assert_eq!(
            probes[0].action,
            ProbeAction::HttpGet {
                host: None,
                port: 10670,
                path: "/readyz".into()
            }
        );
        assert_eq!(
            (probes[0].period, probes[0].failure_threshold),
            (Duration::from_secs(2), 1)
        );
        assert_eq!(
            (
                probes[1].period,
                probes[1].timeout,
                probes[1].success_threshold,
                probes[1].failure_threshold
            ),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        let bad = json!({"containers": [{"name": "x",
            "readinessProbe": {"httpGet": {"port": "nope"}}}]});
        assert!(readiness_probes(&bad).is_err_and(|e| e.contains("no port of the container")));
        let grpc = json!({"containers": [{"name": "x", "readinessProbe": {"grpc": {"port": 1}}}]});
        assert!(readiness_probes(&grpc).is_err());
    }

    #[test]
    fn readiness_follows_the_thresholds() {
        let start = Instant::now();
        let probe = ReadinessProbe {
            container: "c".into(),
            action: ProbeAction::Exec(vec![]),
            initial_delay: Duration::from_secs(1),
            period: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 2,
        };
        let mut state = ProbeState::new(probe, start);
        assert!(!state.due(start) && state.due(start + Duration::from_secs(1)));
        // Not Ready until two successes in a row.
        assert!(!state.record(true, start) && !state.ready);
        assert!(!state.due(start + Duration::from_secs(1)));
        assert!(!state.record(false, start) && !state.ready);
        assert!(!state.record(true, start));
        assert!(state.record(true, start) && state.ready);
        // One failure is not enough to lose it, two in a row are.
        assert!(!state.record(false, start) && state.ready);
        assert!(!state.record(true, start) && state.ready);
        assert!(!state.record(false, start) && state.ready);
        assert!(state.record(false, start) && !state.ready);
    }
}
