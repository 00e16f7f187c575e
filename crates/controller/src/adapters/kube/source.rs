//! The cluster as a [`Source`]: one watcher per kind (metadata-only for Namespaces, whose labels
//! are all the planner reads; Nodes stripped to their metadata and Ready condition on arrival;
//! Deployments only the gateways' own,
//! by label), each feeding one channel; the source applies every event to its snapshot and
//! turns it into an [`Update`]. A relist of a kind replaces that kind wholesale (objects
//! deleted while the watch was down vanish) and resyncs.

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, NodeCondition, NodeStatus, Pod};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{info, warn};
use veg_api::kubeovn::{IPPool, Subnet, Vpc};
use veg_api::multus::NetworkAttachmentDefinition;
use veg_api::{VpcEgressGateway, names};

use crate::plan::snapshot::{MemorySnapshot, ObjectKind, Snapshot};
use crate::run::driver::{Source, Update};

/// One object of a watched kind.
#[derive(Clone, Debug)]
pub enum Object {
    Gateway(Box<VpcEgressGateway>),
    Vpc(Box<Vpc>),
    Subnet(Box<Subnet>),
    IPPool(Box<IPPool>),
    /// A NetworkAttachmentDefinition.
    Nad(Box<NetworkAttachmentDefinition>),
    /// A Namespace (metadata only).
    Namespace(Box<Namespace>),
    Pod(Box<Pod>),
    /// A Node (metadata and its Ready condition).
    Node(Box<Node>),
    /// A gateway's Deployment.
    Deployment(Box<Deployment>),
}

/// What a watcher saw.
#[derive(Debug)]
pub enum Observed {
    /// Added or changed.
    Apply(Object),
    /// Deleted.
    Delete(Object),
    /// A complete list of a kind (start-up or after a watch gap).
    Relisted(ObjectKind, Vec<Object>),
    /// The watch failed (it retries with backoff).
    Failed(ObjectKind, String),
}

fn name_of(meta: &kube::api::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The cluster's objects, kept current by watches.
pub struct KubeSource {
    snapshot: MemorySnapshot,
    /// The VPC of gateways whose `spec.vpc` is empty (`--default-vpc`).
    default_vpc: String,
    events: mpsc::Receiver<Observed>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn spawn<K, S>(
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
    sender: &mpsc::Sender<Observed>,
    kind: ObjectKind,
    stream: S,
    wrap: fn(K) -> Object,
) where
    K: Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let sender = sender.clone();
    tasks.push(tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut listed = Vec::new();
        while let Some(item) = stream.next().await {
            let observed = match item {
                Ok(Event::Init) => {
                    listed.clear();
                    continue;
                }
                Ok(Event::InitApply(object)) => {
                    listed.push(wrap(object));
                    continue;
                }
                Ok(Event::InitDone) => Observed::Relisted(kind, std::mem::take(&mut listed)),
                Ok(Event::Apply(object)) => Observed::Apply(wrap(object)),
                Ok(Event::Delete(object)) => Observed::Delete(wrap(object)),
                Err(error) => Observed::Failed(kind, error.to_string()),
            };
            if sender.send(observed).await.is_err() {
                return;
            }
        }
    }));
}

impl KubeSource {
    /// Starts the watches and returns once every kind has been listed (the snapshot is then
    /// complete). A missing IPPool CRD counts as an empty list: older Kube-OVNs lack it.
    pub async fn start(client: Client, default_vpc: &str) -> Self {
        let (sender, events) = mpsc::channel(1024);
        let mut tasks = Vec::new();
        let config = watcher::Config::default;
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Gateway,
            watcher(Api::<VpcEgressGateway>::all(client.clone()), config()).default_backoff(),
            |o| Object::Gateway(Box::new(o)),
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Vpc,
            watcher(Api::<Vpc>::all(client.clone()), config()).default_backoff(),
            |o| Object::Vpc(Box::new(o)),
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Subnet,
            watcher(Api::<Subnet>::all(client.clone()), config()).default_backoff(),
            |o| Object::Subnet(Box::new(o)),
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::IPPool,
            watcher(Api::<IPPool>::all(client.clone()), config()).default_backoff(),
            |o| Object::IPPool(Box::new(o)),
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Nad,
            watcher(
                Api::<NetworkAttachmentDefinition>::all(client.clone()),
                config(),
            )
            .default_backoff(),
            |o| Object::Nad(Box::new(o)),
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Namespace,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                config(),
            )
            .default_backoff(),
            |o| {
                Object::Namespace(Box::new(Namespace {
                    metadata: o.metadata,
                    ..Namespace::default()
                }))
            },
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Node,
            watcher(Api::<Node>::all(client.clone()), config()).default_backoff(),
            // Metadata and the Ready condition (the stale-BFD guard's second opinion); the
            // rest of a Node (images, capacity, addresses) is dropped on arrival.
            |o| {
                let ready = o.status.and_then(|status| {
                    let conditions: Vec<NodeCondition> = status
                        .conditions
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| c.type_ == "Ready")
                        .map(|c| NodeCondition {
                            type_: c.type_,
                            status: c.status,
                            reason: c.reason,
                            ..NodeCondition::default()
                        })
                        .collect();
                    (!conditions.is_empty()).then(|| NodeStatus {
                        conditions: Some(conditions),
                        ..NodeStatus::default()
                    })
                });
                Object::Node(Box::new(Node {
                    metadata: o.metadata,
                    status: ready,
                    ..Node::default()
                }))
            },
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Pod,
            watcher(Api::<Pod>::all(client.clone()), config()).default_backoff(),
            |o| Object::Pod(Box::new(o)),
        );
        spawn(
            &mut tasks,
            &sender,
            ObjectKind::Deployment,
            watcher(
                Api::<Deployment>::all(client),
                config().labels(&format!("{}={}", names::LABEL_APP, names::LABEL_APP_VALUE)),
            )
            .default_backoff(),
            |o| Object::Deployment(Box::new(o)),
        );
        let mut source = Self {
            snapshot: MemorySnapshot::compact(),
            default_vpc: default_vpc.to_owned(),
            events,
            tasks,
        };
        let mut pending: std::collections::BTreeSet<ObjectKind> =
            ObjectKind::ALL.into_iter().collect();
        while !pending.is_empty() {
            let Some(observed) = source.events.recv().await else {
                break;
            };
            match &observed {
                Observed::Relisted(kind, _) => {
                    pending.remove(kind);
                }
                Observed::Failed(ObjectKind::IPPool, _) => {
                    pending.remove(&ObjectKind::IPPool);
                }
                _ => {}
            }
            source.apply(observed);
        }
        info!("every kind listed: the snapshot is complete");
        source
    }

    /// A source over `snapshot` without watches (tests and tools feed it with [`Self::apply`]).
    pub fn with_snapshot(snapshot: MemorySnapshot) -> Self {
        let (_, events) = mpsc::channel(1);
        Self {
            snapshot,
            default_vpc: names::DEFAULT_VPC.to_owned(),
            events,
            tasks: Vec::new(),
        }
    }

    pub fn snapshot_ref(&self) -> &dyn Snapshot {
        &self.snapshot
    }

    /// Applies one observation; the update it makes, if any.
    pub fn apply(&mut self, observed: Observed) -> Option<Update> {
        let default_vpc = self.default_vpc.clone();
        // A gateway without `spec.vpc` serves the cluster's default VPC.
        let defaulted = move |object: Object| match object {
            Object::Gateway(mut gateway) if gateway.spec.vpc.is_empty() => {
                gateway.spec.vpc = default_vpc.clone();
                Object::Gateway(gateway)
            }
            other => other,
        };
        let s = &mut self.snapshot;
        let observed = match observed {
            Observed::Apply(object) => Observed::Apply(defaulted(object)),
            Observed::Delete(object) => Observed::Delete(defaulted(object)),
            Observed::Relisted(kind, objects) => {
                Observed::Relisted(kind, objects.into_iter().map(&defaulted).collect())
            }
            failed => failed,
        };
        match observed {
            Observed::Failed(kind, error) => {
                warn!(?kind, %error, "watch failed; retrying");
                None
            }
            Observed::Relisted(kind, objects) => {
                s.clear(kind);
                for object in objects {
                    put(s, object);
                }
                Some(Update::Resync)
            }
            Observed::Apply(object) => Some(changed(s, object, false)),
            Observed::Delete(object) => Some(changed(s, object, true)),
        }
    }
}

fn put(s: &mut MemorySnapshot, object: Object) {
    match object {
        Object::Gateway(o) => s.put_gateway(*o),
        Object::Vpc(o) => s.put_vpc(*o),
        Object::Subnet(o) => s.put_subnet(*o),
        Object::IPPool(o) => s.put_ip_pool(*o),
        Object::Nad(o) => s.put_nad(*o),
        Object::Namespace(o) => s.put_namespace(*o),
        Object::Pod(o) => s.put_pod(*o),
        Object::Node(o) => s.put_node(*o),
        Object::Deployment(o) => s.put_deployment(*o),
    }
}

fn changed(s: &mut MemorySnapshot, object: Object, deleted: bool) -> Update {
    match object {
        Object::Gateway(o) => {
            let (namespace, name) = name_of(&o.metadata);
            if deleted {
                s.remove_gateway(&namespace, &name);
            } else {
                s.put_gateway(*o);
            }
            Update::Gateway { namespace, name }
        }
        Object::Vpc(o) => {
            let (_, name) = name_of(&o.metadata);
            if deleted {
                s.remove_vpc(&name);
            } else {
                s.put_vpc(*o);
            }
            Update::Vpc(name)
        }
        Object::Subnet(o) => {
            let (_, name) = name_of(&o.metadata);
            if deleted {
                s.remove_subnet(&name);
            } else {
                s.put_subnet(*o);
            }
            Update::Subnet(name)
        }
        Object::IPPool(o) => {
            let (_, name) = name_of(&o.metadata);
            if deleted {
                s.remove_ip_pool(&name);
            } else {
                s.put_ip_pool(*o);
            }
            Update::IPPool(name)
        }
        Object::Nad(o) => {
            let (namespace, name) = name_of(&o.metadata);
            if deleted {
                s.remove_nad(&namespace, &name);
            } else {
                s.put_nad(*o);
            }
            Update::Nad { namespace, name }
        }
        Object::Namespace(o) => {
            let (_, name) = name_of(&o.metadata);
            let old = s.namespace(&name).cloned().map(Box::new);
            if deleted {
                s.remove_namespace(&name);
                Update::Namespace { old, new: None }
            } else {
                s.put_namespace((*o).clone());
                Update::Namespace { old, new: Some(o) }
            }
        }
        Object::Pod(o) => {
            let (namespace, name) = name_of(&o.metadata);
            let old = s.pod_for_change(&namespace, &name).map(Box::new);
            if deleted {
                s.remove_pod(&namespace, &name);
                Update::Pod { old, new: None }
            } else {
                s.put_pod((*o).clone());
                Update::Pod { old, new: Some(o) }
            }
        }
        Object::Node(o) => {
            let (_, name) = name_of(&o.metadata);
            let old = s.node(&name).cloned().map(Box::new);
            if deleted {
                s.remove_node(&name);
                Update::Node { old, new: None }
            } else {
                s.put_node((*o).clone());
                Update::Node { old, new: Some(o) }
            }
        }
        Object::Deployment(o) => {
            let (namespace, name) = name_of(&o.metadata);
            if deleted {
                s.remove_deployment(&namespace, &name);
            } else {
                s.put_deployment(*o);
            }
            Update::Deployment { namespace, name }
        }
    }
}

impl Source for KubeSource {
    fn snapshot(&self) -> &dyn Snapshot {
        &self.snapshot
    }

    async fn next(&mut self) -> Option<Update> {
        loop {
            let observed = self.events.recv().await?;
            if let Some(update) = self.apply(observed) {
                return Some(update);
            }
        }
    }
}
