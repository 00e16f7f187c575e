//! One writer among the controller's replicas: a `coordination.k8s.io/v1` Lease, taken and
//! renewed with resourceVersion-guarded writes (client-go's algorithm). Two replicas racing
//! for a free or expired Lease both read the same version; the API server accepts only one
//! write and answers the other with 409 Conflict. The decision is pure ([`decide`]); the
//! loop ([`run`]) publishes leadership on a watch channel: standbys keep their caches warm and
//! write nothing; a leader that cannot renew within the renew deadline stops writing at once.
//!
//! Not kube-lease-manager (`shared/reference/crates.md`'s pick): it takes the Lease with
//! server-side apply field ownership, which a mocked API server cannot reproduce faithfully;
//! this one's conflicts are plain resourceVersion checks, tested against an in-memory Lease
//! API with two contenders.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;
use tracing::{info, warn};

/// The Lease and the timings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    pub name: String,
    /// This replica (the Pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// A leader that has not renewed for this long stops writing.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    TakeOver,
    /// Someone else holds it.
    Follow(String),
}

/// What this replica saw of the Lease record, by its own clock: a holder's renewTime is
/// written by the holder's clock, so comparing it with ours would let a skewed clock take a
/// live Lease (two writers). As client-go does, a record counts as expired when this replica
/// has seen it unchanged for the Lease's duration.
#[derive(Debug, Default)]
pub struct Observed {
    record: Option<String>,
    since: Option<std::time::Instant>,
}

impl Observed {
    /// Notes the record read at `now`; how long it has been unchanged.
    pub fn unchanged_for(&mut self, lease: Option<&Lease>, now: std::time::Instant) -> Duration {
        let record = lease.and_then(|lease| lease.spec.as_ref()).map(|spec| {
            format!(
                "{:?}/{:?}/{:?}/{:?}",
                spec.holder_identity, spec.renew_time, spec.acquire_time, spec.lease_transitions
            )
        });
        if record != self.record || self.since.is_none() {
            self.record = record;
            self.since = Some(now);
        }
        self.since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// Decides from the Lease as read, the record unchanged for `unchanged_for` by this replica's
/// clock ([`Observed`]).
pub fn decide(
    lease: Option<&Lease>,
    identity: &str,
    unchanged_for: Duration,
    duration: Duration,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let valid_for = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(duration, Duration::from_secs);
    if unchanged_for < valid_for {
        Decision::Follow(holder)
    } else {
        Decision::TakeOver
    }
}

fn held(
    config: &LeaseConfig,
    now: Timestamp,
    transitions: i32,
    acquired: Option<MicroTime>,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.duration.as_secs()).unwrap_or(15)),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

fn conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// One attempt: whether we hold the Lease afterwards.
pub async fn attempt(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Observed,
) -> Result<bool, kube::Error> {
    let current = api.get_opt(&config.name).await?;
    let unchanged_for = observed.unchanged_for(current.as_ref(), std::time::Instant::now());
    // Written into the Lease for others to see; never compared with another's clock.
    let now = Timestamp::now();
    let written = match decide(
        current.as_ref(),
        &config.identity,
        unchanged_for,
        config.duration,
    ) {
        Decision::Follow(_) => return Ok(false),
        Decision::Create => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held(config, now, 0, None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        decision => {
            let Some(mut lease) = current else {
                return Ok(false);
            };
            let spec = lease.spec.clone().unwrap_or_default();
            lease.spec = Some(if decision == Decision::Renew {
                held(
                    config,
                    now,
                    spec.lease_transitions.unwrap_or(0),
                    spec.acquire_time,
                )
            } else {
                held(config, now, spec.lease_transitions.unwrap_or(0) + 1, None)
            });
            // The read's resourceVersion stays in `lease.metadata`: a concurrent writer wins.
            api.replace(&config.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
    };
    match written {
        Ok(()) => Ok(true),
        Err(error) if conflict(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Runs the election until the task is dropped; `leader` follows whether we hold the Lease.
///
/// No attempt outlives the renew deadline: an API server that stops answering (a request
/// hangs, it does not fail) must not keep a leader writing. The deadline counts from the
/// start of the last successful renewal, since the Lease records that time as renewed.
pub async fn run(client: Client, config: LeaseConfig, leader: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut renewed: Option<Instant> = None;
    let mut observed = Observed::default();
    loop {
        if renewed.is_some_and(|at| at.elapsed() >= config.renew_deadline) {
            if *leader.borrow() {
                warn!(lease = %config.name, "renew deadline passed: writes stopped");
            }
            // The next attempt gets a full deadline of its own to take the Lease back.
            renewed = None;
            leader.send_replace(false);
        }
        let started = Instant::now();
        let deadline = renewed.map(|at| at + config.renew_deadline);
        let limit = deadline.map_or(config.renew_deadline, |end| {
            end.saturating_duration_since(started)
        });
        let outcome = match tokio::time::timeout(limit, attempt(&api, &config, &mut observed)).await
        {
            Ok(result) => result.map_err(|error| error.to_string()),
            Err(_) => Err(format!(
                "the API server did not answer within {} ms",
                limit.as_millis()
            )),
        };
        match outcome {
            Ok(true) => {
                renewed = Some(started);
                if !*leader.borrow() {
                    info!(lease = %config.name, identity = %config.identity, "took the lease: writing");
                }
                leader.send_replace(true);
            }
            Ok(false) => {
                if *leader.borrow() {
                    warn!(lease = %config.name, "lost the lease: writes stopped");
                }
                renewed = None;
                leader.send_replace(false);
            }
            // Still leading until the deadline, checked at the top of the loop.
            Err(error) => warn!(lease = %config.name, %error, "lease not renewed"),
        }
        // A pause never runs past the deadline, so a leader stops writing on time.
        let pause = renewed.map_or(config.retry, |at| {
            config
                .retry
                .min((at + config.renew_deadline).saturating_duration_since(Instant::now()))
        });
        tokio::time::sleep(pause).await;
    }
}

/// Gives the Lease up (on shutdown), so a standby takes over without waiting for expiry.
pub async fn release(client: Client, config: &LeaseConfig) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let Ok(Some(mut lease)) = api.get_opt(&config.name).await else {
        return;
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    lease.spec = Some(spec);
    if let Err(error) = api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        warn!(%error, "lease not released");
    }
}

#[cfg(test)]
mod tests;
