//! Who may steer what (pure): a gateway of namespace N steers only the traffic N is entitled
//! to, and uses only the networks N may use. Kube-OVN checks none of this, so anyone who may
//! create a gateway can route other tenants' Pods, subnets or whole VPCs through it.
//!
//! The rules (strict tenancy, the default; docs/security.md says the same to operators):
//! - A namespace M *admits* the gateway when M is N, or M's annotation
//!   `veg.kubeovn.io/egress-gateways` names N (or `N/<gateway>`).
//! - Selectors pick Pods only in namespaces that admit the gateway; Pods elsewhere are left out
//!   (not refused: another tenant's labels must not be able to stop this gateway).
//! - A subnet's address space belongs to the namespaces of its `spec.namespaces`. A policy
//!   subnet, an ipBlock (inside such a subnet) or the internal subnet is usable when that list
//!   holds N, or is not empty and every namespace in it admits the gateway. A VPC's default
//!   subnet with no namespaces is usable for the gateway's own Pods when the VPC is.
//! - A VPC is usable when its `spec.namespaces` holds N (or all of them admit it); Kube-OVN's
//!   default VPC, which binds no namespace, is usable by every namespace.
//! - The external subnet is usable when the namespace of its NetworkAttachmentDefinition
//!   admits the gateway or is an admin namespace (shared infrastructure). Its own
//!   `spec.namespaces` is not used: Kube-OVN moves a namespace listed there off its subnet.
//! - An IP pool with `spec.namespaces` is usable when that list holds N (or all admit it).
//! - `spec.image` is the controller's own image, or one the operator lists: the gateway Pods
//!   run it with NET_ADMIN and a privileged init container.
//! - Gateways of the admin namespaces, and every gateway with open tenancy, are not limited.
//!
//! A refusal is a [`NotPermitted`] naming the field and what would permit it.

use std::collections::BTreeSet;

use ipnet::IpNet;
use veg_api::kubeovn::{IPPool, Subnet, Vpc};
use veg_api::names;

use crate::plan::snapshot::Snapshot;

/// Open (Kube-OVN's behaviour, for single-tenant clusters) or strict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TenancyMode {
    /// Every gateway is limited to what its namespace is entitled to.
    #[default]
    Strict,
    /// No limits: any gateway may select any Pod and use any network.
    Open,
}

/// The operator's tenancy settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenancy {
    pub mode: TenancyMode,
    /// Namespaces whose gateways are not limited (the cluster admins').
    pub admin_namespaces: BTreeSet<String>,
    /// Images any gateway may name in `spec.image` (the controller's own among them).
    pub images: BTreeSet<String>,
}

impl Default for Tenancy {
    fn default() -> Self {
        Self {
            mode: TenancyMode::Strict,
            admin_namespaces: BTreeSet::from(["kube-system".to_owned()]),
            images: BTreeSet::new(),
        }
    }
}

impl Tenancy {
    /// Kube-OVN's behaviour: nothing limited.
    pub fn open() -> Self {
        Self {
            mode: TenancyMode::Open,
            admin_namespaces: BTreeSet::new(),
            images: BTreeSet::new(),
        }
    }

    /// Strict, with these admin namespaces.
    pub fn strict(admin_namespaces: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            mode: TenancyMode::Strict,
            admin_namespaces: admin_namespaces.into_iter().map(Into::into).collect(),
            images: BTreeSet::new(),
        }
    }

    /// The rules for gateway `name` of `namespace`.
    pub fn rules<'a>(
        &'a self,
        snapshot: &'a dyn Snapshot,
        namespace: &'a str,
        name: &'a str,
    ) -> Rules<'a> {
        Rules {
            tenancy: self,
            snapshot,
            namespace,
            name,
            unlimited: self.mode == TenancyMode::Open || self.admin_namespaces.contains(namespace),
        }
    }
}

/// A use the gateway's namespace is not entitled to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotPermitted {
    /// The spec field, e.g. `spec.policies[0].ipBlocks[1]`.
    pub field: String,
    /// What is refused, and what would permit it.
    pub message: String,
}

/// The tenancy rules for one gateway.
pub struct Rules<'a> {
    tenancy: &'a Tenancy,
    snapshot: &'a dyn Snapshot,
    namespace: &'a str,
    name: &'a str,
    unlimited: bool,
}

impl Rules<'_> {
    /// Whether nothing is limited (open tenancy, or an admin namespace's gateway).
    pub fn unlimited(&self) -> bool {
        self.unlimited
    }

    /// Whether namespace `other` admits this gateway.
    pub fn namespace_admits(&self, other: &str) -> bool {
        self.unlimited
            || other == self.namespace
            || self
                .snapshot
                .namespace(other)
                .and_then(|found| found.metadata.annotations.as_ref())
                .and_then(|annotations| annotations.get(names::ANNOTATION_ADMITS_GATEWAYS))
                .is_some_and(|value| names::admits_gateway(value, self.namespace, self.name))
    }

    /// Whether `bound` (an object's `spec.namespaces`) lets this gateway use the object.
    fn bound_admit(&self, bound: &[String]) -> bool {
        self.unlimited
            || (!bound.is_empty()
                && (bound.iter().any(|ns| ns == self.namespace)
                    || bound.iter().all(|ns| self.namespace_admits(ns))))
    }

    /// What would permit the use of an object bound to `bound`.
    fn remedy(&self, bound: &[String]) -> String {
        if bound.is_empty() {
            format!(
                "it binds no namespace; an admin binds it to {ns} (spec.namespaces), or creates \
                 the gateway in an admin namespace",
                ns = self.namespace
            )
        } else {
            format!(
                "it belongs to namespaces [{list}]; each of them admits this gateway with the \
                 annotation {key}={ns} (or {ns}/{name})",
                list = bound.join(", "),
                key = names::ANNOTATION_ADMITS_GATEWAYS,
                ns = self.namespace,
                name = self.name
            )
        }
    }

    fn refuse(&self, field: &str, message: String) -> NotPermitted {
        NotPermitted {
            field: field.to_owned(),
            message,
        }
    }

    /// `spec.image`: empty (the controller's), or one the operator allows.
    pub fn image(&self, image: &str) -> Result<(), NotPermitted> {
        if self.unlimited || image.is_empty() || self.tenancy.images.contains(image) {
            return Ok(());
        }
        Err(self.refuse(
            "spec.image",
            format!(
                "image {image:?} is not one gateways of namespace {} may run (their Pods hold \
                 NET_ADMIN): leave it empty for the controller's image, or an admin lists it \
                 in --tenant-images",
                self.namespace
            ),
        ))
    }

    /// The gateway's VPC.
    pub fn vpc(&self, vpc: &Vpc) -> Result<(), NotPermitted> {
        let name = vpc.metadata.name.as_deref().unwrap_or_default();
        let bound = &vpc.spec.namespaces;
        if self.bound_admit(bound) || (bound.is_empty() && name == names::DEFAULT_VPC) {
            return Ok(());
        }
        Err(self.refuse(
            "spec.vpc",
            format!(
                "vpc {name} is not usable by namespace {}: {}",
                self.namespace,
                self.remedy(bound)
            ),
        ))
    }

    /// The subnet the gateway Pods attach to (`spec.internalSubnet`, or the VPC's default one).
    pub fn internal_subnet(&self, subnet: &Subnet, vpc: &Vpc) -> Result<(), NotPermitted> {
        let name = subnet.metadata.name.as_deref().unwrap_or_default();
        let bound = &subnet.spec.namespaces;
        let default_switch = vpc
            .status
            .as_ref()
            .is_some_and(|status| status.default_logical_switch == name);
        // The VPC was checked first: its default subnet, bound to nobody, serves its namespaces.
        if self.bound_admit(bound) || (bound.is_empty() && default_switch) {
            return Ok(());
        }
        Err(self.refuse(
            "spec.internalSubnet",
            format!(
                "subnet {name} is not usable by namespace {}: {}",
                self.namespace,
                self.remedy(bound)
            ),
        ))
    }

    /// A subnet named as a source (`spec.policies[i].subnets[j]`).
    pub fn source_subnet(&self, field: &str, subnet: &Subnet) -> Result<(), NotPermitted> {
        let bound = &subnet.spec.namespaces;
        if self.bound_admit(bound) {
            return Ok(());
        }
        Err(self.refuse(
            field,
            format!(
                "subnet {} is not namespace {}'s to steer: {}",
                subnet.metadata.name.as_deref().unwrap_or_default(),
                self.namespace,
                self.remedy(bound)
            ),
        ))
    }

    /// The address space this gateway may name in ipBlocks: the CIDRs of the subnets it may
    /// steer.
    pub fn address_space(&self) -> Vec<IpNet> {
        if self.unlimited {
            return Vec::new();
        }
        self.snapshot
            .subnets()
            .into_iter()
            .filter(|subnet| self.bound_admit(&subnet.spec.namespaces))
            .filter_map(|subnet| subnet.spec.cidrs())
            .flatten()
            .collect()
    }

    /// An ipBlock: inside the address space ([`Rules::address_space`]).
    pub fn ip_block(&self, field: &str, block: IpNet, space: &[IpNet]) -> Result<(), NotPermitted> {
        if self.unlimited || space.iter().any(|net| net.contains(&block)) {
            return Ok(());
        }
        let within = if space.is_empty() {
            "none".to_owned()
        } else {
            space
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(self.refuse(
            field,
            format!(
                "{block} is not inside a subnet namespace {ns} may steer (those it may: {within}); \
                 a subnet's namespaces admit this gateway with the annotation {key}={ns}",
                ns = self.namespace,
                key = names::ANNOTATION_ADMITS_GATEWAYS
            ),
        ))
    }

    /// The external subnet, through the namespace of its NetworkAttachmentDefinition.
    pub fn external_subnet(
        &self,
        subnet: &Subnet,
        nad_namespace: &str,
    ) -> Result<(), NotPermitted> {
        if self.namespace_admits(nad_namespace)
            || self.tenancy.admin_namespaces.contains(nad_namespace)
            || subnet.spec.namespaces.iter().any(|ns| ns == self.namespace)
        {
            return Ok(());
        }
        Err(self.refuse(
            "spec.externalSubnet",
            format!(
                "subnet {} attaches through a NetworkAttachmentDefinition of namespace \
                 {nad_namespace}, which does not admit this gateway; it does with the annotation \
                 {key}={ns} (or {ns}/{name})",
                subnet.metadata.name.as_deref().unwrap_or_default(),
                key = names::ANNOTATION_ADMITS_GATEWAYS,
                ns = self.namespace,
                name = self.name
            ),
        ))
    }

    /// `spec.internalIPPool` / `spec.externalIPPool`: a pool bound to namespaces is theirs.
    pub fn ip_pool(&self, field: &str, pool: &IPPool) -> Result<(), NotPermitted> {
        let bound = &pool.spec.namespaces;
        if bound.is_empty() || self.bound_admit(bound) {
            return Ok(());
        }
        Err(self.refuse(
            field,
            format!(
                "ippool {} is not usable by namespace {}: {}",
                pool.metadata.name.as_deref().unwrap_or_default(),
                self.namespace,
                self.remedy(bound)
            ),
        ))
    }
}

#[cfg(test)]
mod tests;
