//! The decision table, and two contenders against one mocked Lease API: exactly one leads and
//! only its outputs write; when it stops, the other takes over after the Lease expires.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::*;
use crate::adapters::kube::KubeOutputs;
use crate::adapters::kube::fake;
use crate::run::outputs::Outputs;

fn lease(holder: &str, renewed: Timestamp) -> Lease {
    Lease {
        spec: Some(LeaseSpec {
            holder_identity: (!holder.is_empty()).then(|| holder.to_owned()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }),
        ..Lease::default()
    }
}

#[test]
fn decisions() {
    let now = Timestamp::now();
    let d = Duration::from_secs(15);
    let fresh = Duration::from_secs(1);
    assert_eq!(decide(None, "a", fresh, d), Decision::Create);
    assert_eq!(
        decide(Some(&lease("a", now)), "a", fresh, d),
        Decision::Renew
    );
    assert_eq!(
        decide(Some(&lease("b", now)), "a", fresh, d),
        Decision::Follow("b".into())
    );
    assert_eq!(
        decide(Some(&lease("b", now)), "a", Duration::from_secs(16), d),
        Decision::TakeOver
    );
    assert_eq!(
        decide(Some(&lease("", now)), "a", fresh, d),
        Decision::TakeOver
    );
}

/// The holder's renewTime is its own clock's: judged by ours it could look expired while the
/// holder renews (our clock ahead: two writers) or live long after it stopped (its clock
/// ahead). Only how long this replica has seen the record unchanged counts.
#[test]
fn a_skewed_holder_clock_neither_expires_a_live_lease_nor_keeps_a_dead_one() {
    let d = Duration::from_secs(15);
    let start = std::time::Instant::now();
    let mut observed = Observed::default();
    // The holder's clock is an hour behind ours, and it renews every 2 s: always followed.
    let behind = Timestamp::now() - SignedDuration::from_secs(3600);
    for renewal in 0..20u64 {
        let at = start + Duration::from_secs(2 * renewal);
        let read = lease("b", behind + SignedDuration::from_secs(2 * renewal as i64));
        let unchanged = observed.unchanged_for(Some(&read), at);
        assert_eq!(
            decide(Some(&read), "a", unchanged, d),
            Decision::Follow("b".into()),
            "renewal {renewal}"
        );
    }
    // Its clock is an hour ahead and it stopped: taken over once unchanged for 15 s.
    let mut observed = Observed::default();
    let ahead = lease("b", Timestamp::now() + SignedDuration::from_secs(3600));
    let first = observed.unchanged_for(Some(&ahead), start);
    assert_eq!(
        decide(Some(&ahead), "a", first, d),
        Decision::Follow("b".into())
    );
    let later = observed.unchanged_for(Some(&ahead), start + Duration::from_secs(16));
    assert_eq!(decide(Some(&ahead), "a", later, d), Decision::TakeOver);
}

fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "kube-system".into(),
        name: "veg-controller".into(),
        identity: identity.into(),
        duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry: Duration::from_millis(100),
    }
}

#[tokio::test]
async fn two_contenders_one_writer_then_a_takeover() -> anyhow::Result<()> {
    let (client, state) = fake::server();
    let (a_tx, a_rx) = watch::channel(false);
    let (b_tx, b_rx) = watch::channel(false);
    let a = tokio::spawn(run(client.clone(), config("a"), a_tx));
    let b = tokio::spawn(run(client.clone(), config("b"), b_tx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (a_leads, b_leads) = (*a_rx.borrow(), *b_rx.borrow());
    anyhow::ensure!(
        a_leads != b_leads,
        "exactly one leader: a {a_leads}, b {b_leads}"
    );

    // Both controllers try to write; only the leader's request reaches the API server.
    let outputs_a = KubeOutputs::new(client.clone(), "a", a_rx.clone());
    let outputs_b = KubeOutputs::new(client.clone(), "b", b_rx.clone());
    if let Ok(mut state) = state.lock() {
        state.objects.insert(
            "/api/v1/namespaces/default/pods/gw-a".into(),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gw-a", "namespace": "default"}}),
        );
    }
    let wrote_a = outputs_a.annotate_pod("default", "gw-a", "k", "a").await;
    let wrote_b = outputs_b.annotate_pod("default", "gw-a", "k", "b").await;
    anyhow::ensure!(
        wrote_a.is_ok() != wrote_b.is_ok(),
        "{wrote_a:?} {wrote_b:?}"
    );
    let pod_writes = state
        .lock()
        .map(|s| {
            s.writes()
                .iter()
                .filter(|r| r.path.ends_with("/pods/gw-a"))
                .count()
        })
        .unwrap_or(0);
    anyhow::ensure!(
        pod_writes == 1,
        "{pod_writes} writes reached the API server"
    );

    // The leader stops (crash): the standby takes over once the Lease expires (1 s).
    let (leader, follower_rx) = if a_leads { (a, b_rx) } else { (b, a_rx) };
    leader.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while !*follower_rx.borrow() {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no takeover within 3 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lease = state
        .lock()
        .map(|s| {
            s.objects["/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/veg-controller"]
                .clone()
        })
        .unwrap_or_default();
    anyhow::ensure!(lease["spec"]["leaseTransitions"] == 1, "{lease}");
    for request in state.lock().map(|s| s.requests.clone()).unwrap_or_default() {
        anyhow::ensure!(
            crate::adapters::kube::rbac::granted_request(
                &request.method,
                &request.path,
                &request.query
            ),
            "not granted: {request:?}"
        );
    }
    Ok(())
}

/// The API server goes silent while the leader writes (requests hang; nothing fails, as
/// behind a partition). At the renew deadline the leader stops: its flag drops, the write
/// waiting on the silent server is abandoned, no write request reaches the server after that,
/// and all of it before the Lease could expire for the other replicas.
#[tokio::test]
async fn a_leader_cut_off_by_a_silent_api_server_stops_writing_at_the_renew_deadline()
-> anyhow::Result<()> {
    use std::time::Instant;
    let (client, state) = fake::server();
    let config = LeaseConfig {
        duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(1),
        ..config("a")
    };
    let (tx, rx) = watch::channel(false);
    let election = tokio::spawn(run(client.clone(), config.clone(), tx));
    let mut leading = rx.clone();
    tokio::time::timeout(Duration::from_secs(3), leading.wait_for(|l| *l))
        .await
        .map_err(|_| anyhow::anyhow!("no leader within 3 s"))??;
    if let Ok(mut state) = state.lock() {
        state.objects.insert(
            "/api/v1/namespaces/default/pods/gw-a".into(),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gw-a", "namespace": "default"}}),
        );
    }

    // A pass's writes, one every 20 ms: when each was started, when it returned, and how.
    let (stop_tx, stop_rx) = watch::channel(false);
    let outputs = KubeOutputs::new(client.clone(), "a", rx.clone());
    let writer = tokio::spawn(async move {
        let mut results = Vec::new();
        let mut n = 0;
        while !*stop_rx.borrow() {
            let started = Instant::now();
            let written = outputs
                .annotate_pod("default", "gw-a", "n", &n.to_string())
                .await;
            results.push((started, Instant::now(), written.map_err(|e| e.to_string())));
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        results
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cut = Instant::now();
    if let Ok(mut state) = state.lock() {
        state.silent = true;
    }
    let flipped = tokio::time::timeout(Duration::from_secs(5), leading.wait_for(|l| !*l)).await;
    let flip = Instant::now();
    anyhow::ensure!(
        flipped.is_ok(),
        "still leading 5 s after the API server went silent"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let results = tokio::time::timeout(Duration::from_secs(2), writer)
        .await
        .map_err(|_| anyhow::anyhow!("a write still waits on the silent server"))??;
    election.abort();

    let requests = state.lock().map(|s| s.requests.clone()).unwrap_or_default();
    let lease_path = "/leases/veg-controller";
    let last_renewal = requests
        .iter()
        .filter(|r| r.path.ends_with(lease_path) && r.method != "GET" && r.at < cut)
        .map(|r| r.at)
        .max()
        .ok_or_else(|| anyhow::anyhow!("no Lease write before the cut"))?;
    let stopped_after = flip.duration_since(last_renewal);
    anyhow::ensure!(
        stopped_after < config.duration,
        "writes stopped {stopped_after:?} after the last renewal: the Lease ({:?}) could have \
         expired and another replica written meanwhile",
        config.duration
    );
    let pod_writes: Vec<_> = requests
        .iter()
        .filter(|r| r.path.ends_with("/pods/gw-a"))
        .collect();
    anyhow::ensure!(
        pod_writes.iter().all(|r| r.at < flip),
        "a write reached the server after leadership ended: {:?}",
        pod_writes
            .iter()
            .filter(|r| r.at >= flip)
            .collect::<Vec<_>>()
    );
    let (before, after): (Vec<_>, Vec<_>) = results.iter().partition(|(_, end, _)| *end < cut);
    anyhow::ensure!(
        before.iter().any(|(_, _, r)| r.is_ok()),
        "no write succeeded before the cut: {before:?}"
    );
    anyhow::ensure!(
        !after.is_empty() && after.iter().all(|(_, _, r)| r.is_err()),
        "a write returned Ok after the cut, or none was tried: {after:?}"
    );
    // The one write sent to the silent server was abandoned when leadership ended.
    let hung = after
        .iter()
        .find(|(started, _, _)| *started < flip)
        .ok_or_else(|| anyhow::anyhow!("no write was waiting on the silent server"))?;
    anyhow::ensure!(
        hung.1 >= last_renewal + config.renew_deadline
            && hung.2.as_ref().is_err_and(|e| e.contains("not the leader")),
        "the waiting write ended {:?} after the last renewal (deadline {:?}), with {:?}",
        hung.1.duration_since(last_renewal),
        config.renew_deadline,
        hung.2
    );
    eprintln!(
        "writes stopped {stopped_after:?} after the last renewal (renew deadline {:?}, Lease {:?})",
        config.renew_deadline, config.duration
    );
    Ok(())
}

/// Without an election (`--leader-elect=false`, one replica) the flag's sender is dropped at
/// once: the outputs still write. (The race against the flag answered "not the leader" to every
/// write when the channel was closed.)
#[tokio::test]
async fn without_an_election_the_outputs_write() -> anyhow::Result<()> {
    let (client, state) = fake::server();
    let (tx, rx) = watch::channel(true);
    drop(tx);
    if let Ok(mut state) = state.lock() {
        state.objects.insert(
            "/api/v1/namespaces/default/pods/gw-a".into(),
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gw-a", "namespace": "default"}}),
        );
    }
    let outputs = KubeOutputs::new(client, "only", rx);
    let written = tokio::time::timeout(
        Duration::from_secs(5),
        outputs.annotate_pod("default", "gw-a", "k", "v"),
    )
    .await;
    anyhow::ensure!(
        matches!(written, Ok(Ok(()))),
        "a single replica's write failed: {written:?}"
    );
    Ok(())
}
