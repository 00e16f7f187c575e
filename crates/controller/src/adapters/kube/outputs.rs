//! What a pass writes to the cluster: the Deployment and the gateway status by server-side
//! apply (field manager `veg-controller`, forced: the controller owns those fields), events
//! through the events.k8s.io recorder, merge patches for a VPC's `status.bfdPort` and a Pod's
//! deletion cost, and the finalizer guarded by the object's resourceVersion. Nothing is
//! written while this replica does not hold the lease, and a request still unanswered when
//! the lease is lost is abandoned then (it no longer waits on a silent API server).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::warn;
use veg_api::kubeovn::{BfdPortStatus, Vpc};
use veg_api::{VpcEgressGateway, VpcEgressGatewayStatus, names};

use crate::plan::status::Event;
use crate::run::outputs::{OutputError, Outputs};

/// The field manager of every apply.
pub const FIELD_MANAGER: &str = "veg-controller";

/// The cluster outputs of the controller.
pub struct KubeOutputs {
    client: Client,
    recorder: Recorder,
    leader: watch::Receiver<bool>,
}

impl KubeOutputs {
    /// Outputs writing through `client` while `leader` holds true; events are reported as
    /// `veg-controller` from `instance` (the Pod's name).
    pub fn new(client: Client, instance: &str, leader: watch::Receiver<bool>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some(instance.to_owned()),
            },
        );
        Self {
            client,
            recorder,
            leader,
        }
    }

    fn leading(&self) -> Result<(), OutputError> {
        if *self.leader.borrow() {
            Ok(())
        } else {
            Err(OutputError::NotLeader)
        }
    }

    /// Sends `request` only while leading, and gives up on it when leadership ends first.
    async fn while_leading<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, OutputError> {
        self.leading()?;
        let mut leader = self.leader.clone();
        let lost = async move {
            // A flag whose sender is gone (no election: one replica) never changes.
            if leader.wait_for(|leading| !*leading).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            biased;
            () = lost => Err(OutputError::NotLeader),
            result = request => Ok(result?),
        }
    }

    fn apply_params() -> PatchParams {
        PatchParams::apply(FIELD_MANAGER).force()
    }
}

impl Outputs for KubeOutputs {
    fn may_write(&self) -> Result<(), OutputError> {
        self.leading()
    }

    async fn apply_deployment(&self, deployment: &Deployment) -> Result<(), OutputError> {
        let namespace = deployment.metadata.namespace.clone().unwrap_or_default();
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let mut body = serde_json::to_value(deployment).map_err(OutputError::Encode)?;
        body["apiVersion"] = json!("apps/v1");
        body["kind"] = json!("Deployment");
        let api = Api::<Deployment>::namespaced(self.client.clone(), &namespace);
        self.while_leading(api.patch(&name, &Self::apply_params(), &Patch::Apply(body)))
            .await
            .map(|_| ())
    }

    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &VpcEgressGatewayStatus,
    ) -> Result<(), OutputError> {
        // `phase` and `conditions` always go: the schema requires them.
        let mut status = serde_json::to_value(status).map_err(OutputError::Encode)?;
        if status.get("conditions").is_none() {
            status["conditions"] = json!([]);
        }
        let body = json!({
            "apiVersion": format!("{}/{}", names::GROUP, names::VERSION),
            "kind": names::KIND,
            "status": status,
        });
        let api = Api::<VpcEgressGateway>::namespaced(self.client.clone(), namespace);
        self.while_leading(api.patch_status(name, &Self::apply_params(), &Patch::Apply(body)))
            .await
            .map(|_| ())
    }

    async fn event(&self, namespace: &str, name: &str, event: &Event) {
        if self.leading().is_err() {
            return;
        }
        let reference = ObjectReference {
            api_version: Some(format!("{}/{}", names::GROUP, names::VERSION)),
            kind: Some(names::KIND.into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        };
        let published = self
            .while_leading(self.recorder.publish(
                &KubeEvent {
                    type_: if event.type_ == "Warning" {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason.clone(),
                    note: Some(event.message.clone()),
                    action: "Reconcile".into(),
                    secondary: None,
                },
                &reference,
            ))
            .await;
        if let Err(error) = published {
            warn!(gateway = %format!("{namespace}/{name}"), %error, "event not recorded");
        }
    }

    async fn patch_vpc_bfd_port(
        &self,
        vpc: &str,
        status: Option<&BfdPortStatus>,
    ) -> Result<(), OutputError> {
        let body = json!({"status": {"bfdPort": status}});
        let api = Api::<Vpc>::all(self.client.clone());
        self.while_leading(api.patch_status(vpc, &PatchParams::default(), &Patch::Merge(body)))
            .await
            .map(|_| ())
    }

    async fn annotate_pod(
        &self,
        namespace: &str,
        pod: &str,
        key: &str,
        value: &str,
    ) -> Result<(), OutputError> {
        let body = json!({"metadata": {"annotations": {key: value}}});
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        self.while_leading(api.patch(pod, &PatchParams::default(), &Patch::Merge(body)))
            .await
            .map(|_| ())
    }

    async fn add_finalizer(&self, gateway: &VpcEgressGateway) -> Result<(), OutputError> {
        let mut finalizers = gateway.metadata.finalizers.clone().unwrap_or_default();
        finalizers.push(names::FINALIZER.to_owned());
        self.set_finalizers(gateway, finalizers).await
    }

    async fn remove_finalizer(&self, gateway: &VpcEgressGateway) -> Result<(), OutputError> {
        let finalizers: Vec<String> = gateway
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != names::FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(gateway, finalizers).await
    }
}

impl KubeOutputs {
    /// Replaces the finalizers, only if the object is still the version the pass saw (a
    /// concurrent change fails with a conflict and the pass is retried on the new version).
    async fn set_finalizers(
        &self,
        gateway: &VpcEgressGateway,
        finalizers: Vec<String>,
    ) -> Result<(), OutputError> {
        let namespace = gateway.metadata.namespace.clone().unwrap_or_default();
        let name = gateway.metadata.name.clone().unwrap_or_default();
        let body = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": gateway.metadata.resource_version,
        }});
        let api = Api::<VpcEgressGateway>::namespaced(self.client.clone(), &namespace);
        self.while_leading(api.patch(&name, &PatchParams::default(), &Patch::Merge(body)))
            .await
            .map(|_| ())
    }
}
