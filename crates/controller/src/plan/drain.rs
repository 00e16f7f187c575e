//! Graceful scale-down (pure): when a gateway scales down, the instances that will go are
//! taken out of the nexthops first; only after a drain window is the Deployment scaled, and
//! the Pods the ReplicaSet deletes are exactly those (they carry the lowest
//! `controller.kubernetes.io/pod-deletion-cost`). Connections already through a leaving
//! instance keep working until its Pod stops; new ones go elsewhere from the first pass.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::plan::context::Instance;

/// The annotation the ReplicaSet controller orders deletions by (lowest first).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
/// The cost given to leaving instances.
pub const LEAVING_COST: &str = "-1000";
/// The default drain window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5);

/// What a pass does about scaling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    /// The replicas to render now.
    pub replicas: i32,
    /// Instances (Pod names) kept out of the nexthops.
    pub leaving: BTreeSet<String>,
    /// When the window ends (the pass to come back at), while draining.
    pub requeue_after: Option<Duration>,
    /// When the drain started (to remember until the next pass), or `None` when none runs.
    pub started: Option<Timestamp>,
}

/// Decides the scaling step. `current` is the Deployment's replicas (`None`: no Deployment
/// yet); `instances` are sorted by Pod name.
pub fn decide(
    current: Option<i32>,
    wanted: i32,
    instances: &[Instance],
    started: Option<Timestamp>,
    now: Timestamp,
    window: Duration,
) -> Drain {
    let Some(current) = current.filter(|current| *current > wanted) else {
        return Drain {
            replicas: wanted,
            leaving: BTreeSet::new(),
            requeue_after: None,
            started: None,
        };
    };
    // A ReplicaSet deletes Pods that are unscheduled, pending or not ready before running,
    // ready ones, whatever their deletion cost (`ActivePodsWithRanks`): the Pods that are not
    // instances go first, then instances not ready; only the rest of the excess is drained.
    let not_instances = usize::try_from(current)
        .unwrap_or(0)
        .saturating_sub(instances.len());
    let excess = usize::try_from(current - wanted)
        .unwrap_or(0)
        .saturating_sub(not_instances);
    if excess == 0 {
        return Drain {
            replicas: wanted,
            leaving: BTreeSet::new(),
            requeue_after: None,
            started: None,
        };
    }
    // Not ready first, then the last by name: deterministic, and the same on every pass.
    let mut candidates: Vec<&Instance> = instances.iter().collect();
    candidates.sort_by(|a, b| a.ready.cmp(&b.ready).then_with(|| b.pod.cmp(&a.pod)));
    let leaving: BTreeSet<String> = candidates
        .into_iter()
        .take(excess)
        .map(|instance| instance.pod.clone())
        .collect();
    let started = started.unwrap_or(now);
    let elapsed = now
        .duration_since(started)
        .try_into()
        .unwrap_or(Duration::ZERO);
    if elapsed < window {
        Drain {
            replicas: current,
            leaving,
            requeue_after: Some(window - elapsed),
            started: Some(started),
        }
    } else {
        Drain {
            replicas: wanted,
            leaving,
            requeue_after: None,
            started: Some(started),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn instances(names: &[&str]) -> Vec<Instance> {
        names
            .iter()
            .map(|pod| Instance {
                pod: (*pod).to_owned(),
                node: "worker1".into(),
                internal_ips: vec![IpAddr::from([198, 18, 0, 12])],
                external_ips: vec![],
                ready: true,
            })
            .collect()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn scale_down_drains_first_then_scales() {
        let three = instances(&["gw-a", "gw-b", "gw-c"]);
        let window = Duration::from_secs(5);
        // 3 → 2: gw-c leaves the nexthops now; the Deployment keeps 3 for the window.
        let first = decide(Some(3), 2, &three, None, at(100), window);
        assert_eq!(first.replicas, 3);
        assert_eq!(first.leaving, BTreeSet::from(["gw-c".to_owned()]));
        assert_eq!(first.requeue_after, Some(window));
        // Two seconds later: still holding, 3 s to go.
        let second = decide(Some(3), 2, &three, first.started, at(102), window);
        assert_eq!(
            (second.replicas, second.requeue_after),
            (3, Some(Duration::from_secs(3)))
        );
        // Window over: scale to 2.
        let third = decide(Some(3), 2, &three, first.started, at(105), window);
        assert_eq!((third.replicas, third.requeue_after), (2, None));
        assert_eq!(third.leaving, BTreeSet::from(["gw-c".to_owned()]));
        // Done (the Deployment has 2): nothing drains.
        let done = decide(Some(2), 2, &three[..2], third.started, at(110), window);
        assert_eq!(
            done,
            Drain {
                replicas: 2,
                leaving: BTreeSet::new(),
                requeue_after: None,
                started: None
            }
        );
    }

    #[test]
    fn pods_that_are_not_instances_go_before_any_instance_is_drained() {
        let window = Duration::from_secs(5);
        // 3 → 2 with one of the three Pods Pending (not an instance): it goes, nobody drains.
        let two = instances(&["gw-a", "gw-b"]);
        let step = decide(Some(3), 2, &two, None, at(100), window);
        assert_eq!(
            step,
            Drain {
                replicas: 2,
                leaving: BTreeSet::new(),
                requeue_after: None,
                started: None
            }
        );
        // 3 → 1 with one Pending: one instance still drains, the not-ready one first.
        let mut two = instances(&["gw-a", "gw-b"]);
        two[0].ready = false;
        let step = decide(Some(3), 1, &two, None, at(100), window);
        assert_eq!(step.leaving, BTreeSet::from(["gw-a".to_owned()]));
        assert_eq!(step.replicas, 3);
    }

    #[test]
    fn scale_up_and_first_creation_are_immediate() {
        let two = instances(&["gw-a", "gw-b"]);
        assert_eq!(
            decide(None, 2, &[], None, at(1), DEFAULT_WINDOW).replicas,
            2
        );
        let up = decide(Some(2), 4, &two, None, at(1), DEFAULT_WINDOW);
        assert_eq!(
            (up.replicas, up.leaving.len(), up.requeue_after),
            (4, 0, None)
        );
    }
}
