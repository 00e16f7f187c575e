//! Multus' `NetworkAttachmentDefinition` (`k8s.cni.cncf.io/v1`): the external leg of a gateway.

use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A network attachment: a CNI configuration Pods can request as an extra interface.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "k8s.cni.cncf.io",
    version = "v1",
    kind = "NetworkAttachmentDefinition",
    plural = "network-attachment-definitions",
    namespaced,
    schema = "disabled",
    derive = "PartialEq",
    derive = "Default"
)]
pub struct NetworkAttachmentDefinitionSpec {
    /// The CNI configuration, a JSON document in a string.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub config: String,
}

impl NetworkAttachmentDefinition {
    /// The CNI configuration parsed as JSON, when it is valid JSON.
    pub fn cni_config(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.spec.config).ok()
    }
}
