//! What a pass hands to its adapter: the narrow set of writes outside the NB (the
//! Deployment, the status, events, a VPC's BFD port status, a Pod annotation, the finalizer),
//! and the typed error an adapter answers with.

use k8s_openapi::api::apps::v1::Deployment;
use veg_api::{VpcEgressGateway, VpcEgressGatewayStatus};

use crate::error::ErrorClass;
use crate::plan::status::Event;

/// Why an adapter could not write.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// This replica does not hold the lease.
    #[error("not the leader: writes are stopped")]
    NotLeader,
    /// The API server refused or could not be reached.
    #[error("{0}")]
    Kube(kube::Error),
    /// A file of the directory adapter.
    #[error("{}: {source}", path.display())]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// The file system's answer.
        source: std::io::Error,
    },
    /// The object did not encode as JSON (a bug).
    #[error("encoding as JSON: {0}")]
    Encode(serde_json::Error),
    /// Another adapter's refusal (test doubles, other embedders), with its class.
    #[error("{message}")]
    Refused {
        /// What was refused and why.
        message: String,
        /// How to handle it.
        class: ErrorClass,
    },
}

impl OutputError {
    /// How the loop should handle it: 409 is a conflict, other 4xx invalid input, 5xx and
    /// transport errors transient.
    pub fn class(&self) -> ErrorClass {
        match self {
            OutputError::NotLeader => ErrorClass::Transient,
            OutputError::Kube(kube::Error::Api(response)) => match response.code {
                409 => ErrorClass::Conflict,
                429 => ErrorClass::Transient,
                400..=499 => ErrorClass::Invalid,
                _ => ErrorClass::Transient,
            },
            OutputError::Kube(_) => ErrorClass::Transient,
            OutputError::File { .. } | OutputError::Encode(_) => ErrorClass::Fatal,
            OutputError::Refused { class, .. } => *class,
        }
    }
}

impl From<kube::Error> for OutputError {
    fn from(error: kube::Error) -> Self {
        OutputError::Kube(error)
    }
}

/// What an adapter does with the pass's results.
#[allow(async_fn_in_trait)]
pub trait Outputs {
    /// Creates or updates the gateway's Deployment.
    async fn apply_deployment(&self, deployment: &Deployment) -> Result<(), OutputError>;
    /// Writes the gateway's status (always with `phase` and `conditions`).
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &VpcEgressGatewayStatus,
    ) -> Result<(), OutputError>;
    /// Whether this replica may write now (before every NB transaction: a replica that lost
    /// its lease mid-pass must not write the NB either). Adapters with one writer keep the
    /// default.
    fn may_write(&self) -> Result<(), OutputError> {
        Ok(())
    }
    /// Records an event on the gateway.
    async fn event(&self, namespace: &str, name: &str, event: &Event);
    /// Writes a VPC's `status.bfdPort` (`None`: the port is off).
    async fn patch_vpc_bfd_port(
        &self,
        vpc: &str,
        status: Option<&veg_api::kubeovn::BfdPortStatus>,
    ) -> Result<(), OutputError>;
    /// Sets an annotation on a gateway Pod (the deletion cost of a leaving instance).
    async fn annotate_pod(
        &self,
        namespace: &str,
        pod: &str,
        key: &str,
        value: &str,
    ) -> Result<(), OutputError>;
    /// Adds [`veg_api::names::FINALIZER`] to a gateway, before anything is written for it (adapters
    /// without finalizers, like the lab's files, keep the default).
    async fn add_finalizer(&self, gateway: &VpcEgressGateway) -> Result<(), OutputError> {
        let _ = gateway;
        Ok(())
    }
    /// Removes [`veg_api::names::FINALIZER`] once the gateway's rows are gone.
    async fn remove_finalizer(&self, gateway: &VpcEgressGateway) -> Result<(), OutputError> {
        let _ = gateway;
        Ok(())
    }
}
