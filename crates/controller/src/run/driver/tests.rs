//! The loop against a real `ovsdb-server`: the initial resync writes a gateway's rows, a Pod
//! event adds its port, a failing output is retried with backoff, a deleted gateway's rows go,
//! and the loop ends when the source does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use tokio::sync::mpsc;
use veg_api::VpcEgressGatewayStatus;
use veg_api::kubeovn::BfdPortStatus;
use veg_ovsdb::{Atom, Client, Operation, Row, Value};

use super::*;
use crate::BfdMode;
use crate::OutputError;
use crate::fixtures::*;

use crate::plan::snapshot::MemorySnapshot;
use crate::plan::status::Event;
use crate::test_server as server;

type Step = Box<dyn FnOnce(&mut MemorySnapshot) -> Update + Send>;

struct ChannelSource {
    snapshot: MemorySnapshot,
    steps: mpsc::UnboundedReceiver<Step>,
}

impl Source for ChannelSource {
    fn snapshot(&self) -> &dyn Snapshot {
        &self.snapshot
    }
    async fn next(&mut self) -> Option<Update> {
        let step = self.steps.recv().await?;
        Some(step(&mut self.snapshot))
    }
}

/// Outputs whose first `fail_first` Deployment applies fail (or, with `hang`, never return).
#[derive(Default)]
struct Flaky {
    fail_first: usize,
    hang: bool,
    applies: AtomicUsize,
    statuses: Mutex<Vec<String>>,
}

impl Outputs for &Flaky {
    async fn apply_deployment(&self, _: &Deployment) -> Result<(), OutputError> {
        let attempt = self.applies.fetch_add(1, Ordering::SeqCst);
        if self.hang {
            std::future::pending::<()>().await;
        }
        if attempt < self.fail_first {
            Err(OutputError::Refused {
                message: "the API server said no".into(),
                class: crate::ErrorClass::Transient,
            })
        } else {
            Ok(())
        }
    }
    async fn patch_status(
        &self,
        _: &str,
        name: &str,
        status: &VpcEgressGatewayStatus,
    ) -> Result<(), OutputError> {
        if let Ok(mut list) = self.statuses.lock() {
            list.push(format!("{name} {:?}", status.phase));
        }
        Ok(())
    }
    async fn event(&self, _: &str, _: &str, _: &Event) {}
    async fn patch_vpc_bfd_port(
        &self,
        _: &str,
        _: Option<&BfdPortStatus>,
    ) -> Result<(), OutputError> {
        Ok(())
    }
    async fn annotate_pod(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), OutputError> {
        Ok(())
    }
}

fn port_group_size(client: &Client) -> usize {
    client
        .replica()
        .table("Port_Group")
        .map(|(_, row)| {
            row.get("ports")
                .map(Value::as_set)
                .unwrap_or_default()
                .len()
        })
        .sum()
}

#[tokio::test]
async fn updates_become_passes_with_backoff_until_the_source_ends() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let lsp = |name: &str, id: &str| Operation::Insert {
        table: "Logical_Switch_Port".into(),
        row: Row::from([("name".to_owned(), Value::string(name))]),
        uuid_name: Some(id.to_owned()),
    };
    client
        .transact(&[
            lsp("web.default", "l1"),
            lsp("api.default", "l2"),
            Operation::Insert {
                table: "Logical_Switch".into(),
                row: Row::from([
                    ("name".to_owned(), Value::string("ovn-default")),
                    (
                        "ports".to_owned(),
                        Value::Set(
                            [Atom::NamedUuid("l1".into()), Atom::NamedUuid("l2".into())].into(),
                        ),
                    ),
                ]),
                uuid_name: None,
            },
        ])
        .await?;

    let outputs = Flaky {
        fail_first: 2,
        ..Flaky::default()
    };
    let reconciler = Reconciler::new(client.clone(), &outputs, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    snapshot.put_gateway(gateway(base_spec()));
    snapshot.put_pod(instance(
        "gw-a",
        "worker1",
        "198.18.0.12",
        Some("198.51.100.11"),
        true,
    ));
    snapshot.put_pod(client_pod("web"));
    let (steps_tx, steps) = mpsc::unbounded_channel::<Step>();
    let mut source = ChannelSource { snapshot, steps };
    let now = || Time(k8s_openapi::jiff::Timestamp::now());

    let begun = std::time::Instant::now();
    let feeder = async {
        // The resync pass fails twice on the Deployment (backoff 100 ms, 200 ms), then works.
        client
            .wait_for(Duration::from_secs(5), |_| port_group_size(&client) == 1)
            .await?;
        // The NB goes first, the Deployment after: wait for the retries to succeed.
        let started = std::time::Instant::now();
        while outputs.applies.load(Ordering::SeqCst) < 3
            && started.elapsed() < Duration::from_secs(3)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let retried_after = begun.elapsed();
        anyhow::ensure!(
            outputs.applies.load(Ordering::SeqCst) >= 3,
            "no retry happened"
        );
        // Backoff: 100 ms, then 200 ms.
        anyhow::ensure!(
            retried_after >= Duration::from_millis(250),
            "retried too fast: {retried_after:?}"
        );
        // A Pod event: its port joins the group.
        let _ = steps_tx.send(Box::new(|snapshot: &mut MemorySnapshot| {
            let pod = client_pod("api");
            snapshot.put_pod(pod.clone());
            Update::Pod {
                old: None,
                new: Some(Box::new(pod)),
            }
        }));
        client
            .wait_for(Duration::from_secs(5), |_| port_group_size(&client) == 2)
            .await?;
        // The gateway is deleted: its rows go.
        let _ = steps_tx.send(Box::new(|snapshot: &mut MemorySnapshot| {
            snapshot.remove_gateway("default", "gateway1");
            Update::Gateway {
                namespace: "default".into(),
                name: "gateway1".into(),
            }
        }));
        client
            .wait_for(Duration::from_secs(5), |replica| {
                replica.table("Logical_Router_Policy").count() == 0
                    && replica.table("Port_Group").count() == 0
            })
            .await?;
        drop(steps_tx);
        anyhow::Ok(())
    };
    let driver = run(
        &reconciler,
        &mut source,
        now,
        || {},
        std::future::pending::<()>(),
    );
    let (fed, ()) = tokio::time::timeout(Duration::from_secs(20), async {
        tokio::join!(feeder, driver)
    })
    .await?;
    fed?;
    Ok(())
}

fn client_pod(name: &str) -> k8s_openapi::api::core::v1::Pod {
    from(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name},
            "annotations": {"ovn.kubernetes.io/allocated": "true",
                            "ovn.kubernetes.io/logical_router": "ovn-cluster"}},
        "spec": {"containers": [], "nodeName": "worker1"},
        "status": {"phase": "Running"}
    }))
}

/// The heartbeat `/livez` reads: an idle loop still turns every second; a pass that never
/// returns stops it.
#[tokio::test]
async fn an_idle_loop_beats_and_a_wedged_pass_stops_the_heartbeat() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let outputs = Flaky {
        hang: true,
        ..Flaky::default()
    };
    let reconciler = Reconciler::new(client.clone(), &outputs, BfdMode::Native, "veg:test");
    let (steps_tx, steps) = mpsc::unbounded_channel::<Step>();
    let mut source = ChannelSource {
        snapshot: cluster(),
        steps,
    };
    let beats = AtomicUsize::new(0);
    let now = || Time(k8s_openapi::jiff::Timestamp::now());
    let observer = async {
        // Idle: no gateway, nothing due; the loop turns anyway.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let idle = beats.load(Ordering::SeqCst);
        anyhow::ensure!(idle >= 3, "an idle loop beat {idle} times in 2.5 s");
        let _ = steps_tx.send(Box::new(|snapshot: &mut MemorySnapshot| {
            snapshot.put_gateway(gateway(base_spec()));
            Update::Gateway {
                namespace: "default".into(),
                name: "gateway1".into(),
            }
        }));
        // The pass reaches the Deployment and hangs there.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while outputs.applies.load(Ordering::SeqCst) == 0 {
            anyhow::ensure!(std::time::Instant::now() < deadline, "the pass never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let wedged = beats.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let after = beats.load(Ordering::SeqCst);
        anyhow::ensure!(
            after == wedged,
            "a wedged loop kept beating: {wedged} -> {after}"
        );
        anyhow::Ok(())
    };
    let driver = run(
        &reconciler,
        &mut source,
        now,
        || {
            beats.fetch_add(1, Ordering::SeqCst);
        },
        std::future::pending::<()>(),
    );
    tokio::select! {
        outcome = observer => outcome,
        () = driver => anyhow::bail!("the driver ended"),
    }
}

#[test]
fn a_node_heartbeat_triggers_nothing_a_ready_change_does() {
    let node = |status: &str, heartbeat: &str, chassis: &str| -> k8s_openapi::api::core::v1::Node {
        from(
            json!({"metadata": {"name": "worker1", "labels": {"zone": "a"},
            "annotations": {"ovn.kubernetes.io/chassis": chassis}},
            "status": {"conditions": [{"type": "Ready", "status": status,
                "lastHeartbeatTime": heartbeat, "reason": "KubeletReady"}]}}),
        )
    };
    let before = node("True", "2026-12-07T10:00:00Z", "c1");
    assert!(!node_update_matters(
        &before,
        &node("True", "2026-12-07T10:00:10Z", "c1")
    ));
    assert!(node_update_matters(
        &before,
        &node("Unknown", "2026-12-07T10:00:00Z", "c1")
    ));
    assert!(node_update_matters(
        &before,
        &node("True", "2026-12-07T10:00:00Z", "c2")
    ));
}
