//! Applying a plan: observe the kernel, compute the changes, make them in a safe order, and
//! undo them all if one fails, so a bad input leaves the previous state in place. Then read
//! back: what the kernel holds must equal the plan.

use std::collections::BTreeMap;
use std::fmt;

use rtnetlink::Handle;
use tracing::{info, warn};

use crate::config::ConfigError;
use crate::netlink::{self, Link, NetlinkError};
use crate::nft::{self, NftError, SnatCounters};
use crate::plan::{Family, Plan, PlanError};
use crate::state::{Change, Observed, diff};
use crate::sysctl;

/// Why applying failed; every variant names the step, the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The input is wrong.
    #[error("invalid configuration: {0}")]
    Plan(PlanError),
    /// The input does not fit the interfaces.
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// No netlink connection.
    #[error("cannot open a netlink socket: {0}")]
    Netlink(std::io::Error),
    /// The HTTP endpoint could not listen.
    #[error(transparent)]
    Http(#[from] veg_daemon::http::BindError),
    /// The process cannot change the network (a Pod configured the way Kubernetes cannot
    /// honour).
    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::MissingCapabilities),
    /// An interface the plan uses does not exist.
    #[error(
        "interface {name:?} ({role} leg) does not exist in this network namespace (found: {found})"
    )]
    MissingInterface {
        /// `internal` or `external`.
        role: &'static str,
        name: String,
        /// The interfaces that exist.
        found: String,
    },
    /// Reading the current state failed.
    #[error("reading {what}: {error}")]
    Observe {
        /// What was read.
        what: &'static str,
        /// Why it failed.
        error: KernelError,
    },
    /// A change failed; the earlier ones were undone.
    #[error("{step}: {error}; {}", rollback_summary(*.undone, .undo_failures))]
    Step {
        /// The change that failed.
        step: String,
        /// The kernel's (or nft's) answer (boxed: it is large and errors are rare).
        error: Box<KernelError>,
        /// How many earlier changes were undone.
        undone: usize,
        /// Undo steps that failed too.
        undo_failures: Vec<String>,
    },
    /// After applying, the kernel still differs from the plan; the changes were undone.
    #[error(
        "the kernel does not hold the plan after applying; still different: {}; {}",
        .remaining.join("; "),
        rollback_summary(*.undone, .undo_failures)
    )]
    NotConverged {
        /// The remaining differences.
        remaining: Vec<String>,
        /// How many of the applied changes were undone.
        undone: usize,
        /// Undo steps that failed, and what cannot be undone.
        undo_failures: Vec<String>,
    },
}

// Causes are printed in the message, not chained as `source`: `{:#}` would print them twice.
impl From<PlanError> for ApplyError {
    fn from(error: PlanError) -> Self {
        ApplyError::Plan(error)
    }
}

impl From<ConfigError> for ApplyError {
    fn from(error: ConfigError) -> Self {
        ApplyError::Config(error)
    }
}

/// One kernel read or change that failed: the kernel's, nft's or /proc/sys's answer.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A netlink request.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// An nft run.
    #[error(transparent)]
    Nft(#[from] NftError),
    /// Reading a sysctl.
    #[error("{key}: {error}")]
    SysctlRead {
        key: String,
        /// The file system's answer.
        error: std::io::Error,
    },
    /// Writing a sysctl.
    #[error(
        "{error} (/proc/sys is read-only in a container that is not privileged: the gateway \
         Pod's privileged init container sets {key}={value})"
    )]
    SysctlWrite {
        key: String,
        value: String,
        /// The file system's answer.
        error: std::io::Error,
    },
}

fn rollback_summary(undone: usize, failures: &[String]) -> String {
    if failures.is_empty() {
        format!("nothing was left half-applied ({undone} earlier change(s) undone)")
    } else {
        format!(
            "undoing {undone} earlier change(s) failed in part: {}",
            failures.join("; ")
        )
    }
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// The changes made (empty when the kernel already held the plan).
    pub changes: Vec<Change>,
    /// The SNAT counters per family, read before the changes.
    pub snat: BTreeMap<Family, SnatCounters>,
    /// The interfaces, read before the changes.
    pub links: BTreeMap<String, Link>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return write!(f, "no change: the kernel already holds the plan");
        }
        for change in &self.changes {
            writeln!(f, "{change}")?;
        }
        Ok(())
    }
}

/// The kernel access an apply needs.
#[derive(Clone)]
pub struct Kernel {
    /// rtnetlink handle in the gateway's namespace.
    pub handle: Handle,
    /// The `nft` program.
    pub nft: String,
}

/// Interfaces by name and index.
#[derive(Clone, Debug, Default)]
pub struct Links {
    pub by_name: BTreeMap<String, Link>,
}

impl Links {
    fn indexes(&self) -> BTreeMap<String, u32> {
        self.by_name
            .iter()
            .map(|(name, link)| (name.clone(), link.index))
            .collect()
    }

    fn names(&self) -> BTreeMap<u32, String> {
        self.by_name
            .iter()
            .map(|(name, link)| (link.index, name.clone()))
            .collect()
    }
}

impl Kernel {
    /// Reads the interfaces.
    pub async fn links(&self) -> Result<Links, ApplyError> {
        let by_name = netlink::links(&self.handle)
            .await
            .map_err(|error| ApplyError::Observe {
                what: "interfaces",
                error: error.into(),
            })?;
        Ok(Links { by_name })
    }

    /// Reads everything the plan covers.
    pub async fn observe(&self, plan: &Plan, links: &Links) -> Result<Observed, ApplyError> {
        let observe =
            |what: &'static str| move |error: KernelError| ApplyError::Observe { what, error };
        let mut observed = Observed::default();
        for item in &plan.sysctls {
            let value = sysctl::read(&item.key).map_err(|error| {
                observe("sysctls")(KernelError::SysctlRead {
                    key: item.key.clone(),
                    error,
                })
            })?;
            observed.sysctls.insert(item.key.clone(), value);
        }
        observed.rules = netlink::owned_rules(&self.handle)
            .await
            .map_err(|error| observe("ip rules")(error.into()))?;
        observed.routes = netlink::routes(&self.handle, &links.names())
            .await
            .map_err(|error| observe("routes")(error.into()))?;
        for family in nft::FAMILIES {
            let listing = nft::list(&self.nft, family)
                .await
                .map_err(|error| observe("nftables")(error.into()))?;
            if let Some(shape) = nft::observed_shape(&listing, family) {
                observed.nft.insert(family, shape);
            }
        }
        Ok(observed)
    }

    /// Checks the interfaces, applies the changes the plan needs, undoes them all on failure,
    /// and verifies the result.
    pub async fn apply(
        &self,
        plan: &Plan,
        internal: &str,
        external: &str,
    ) -> Result<Report, ApplyError> {
        self.apply_through(self, plan, internal, external).await
    }

    /// [`Kernel::apply`], with every change and undo made through `maker` (observing and
    /// verifying still read this kernel).
    pub async fn apply_through(
        &self,
        maker: &impl MakeChange,
        plan: &Plan,
        internal: &str,
        external: &str,
    ) -> Result<Report, ApplyError> {
        let links = self.links().await?;
        for (role, name) in [("internal", internal), ("external", external)] {
            if !links.by_name.contains_key(name) {
                return Err(ApplyError::MissingInterface {
                    role,
                    name: name.to_owned(),
                    found: links.by_name.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        let observed = self.observe(plan, &links).await?;
        let changes = diff(plan, &observed);
        let indexes = links.indexes();
        let mut done: Vec<Change> = Vec::new();
        for change in &changes {
            if let Err(error) = maker.make(change, plan, &indexes).await {
                let (undone, undo_failures) = undo(maker, &done, &indexes).await;
                return Err(ApplyError::Step {
                    step: change.to_string(),
                    error: Box::new(error),
                    undone,
                    undo_failures,
                });
            }
            info!(change = %change, "applied");
            done.push(change.clone());
        }
        if !changes.is_empty() {
            let after = self.observe(plan, &links).await?;
            let remaining = diff(plan, &after);
            if !remaining.is_empty() {
                // Not what was planned, so not left half-way either: back to where it was.
                let (undone, mut undo_failures) = undo(maker, &done, &indexes).await;
                let is_nft = |change: &Change| matches!(change, Change::Nft { .. });
                if done.iter().any(is_nft) && !remaining.iter().any(is_nft) {
                    undo_failures.push(
                        "nftables table veg stays as applied (a batch has no inverse)".to_owned(),
                    );
                }
                warn!(
                    remaining = remaining.len(),
                    undone, "the kernel did not converge; undone"
                );
                return Err(ApplyError::NotConverged {
                    remaining: remaining.iter().map(ToString::to_string).collect(),
                    undone,
                    undo_failures,
                });
            }
        }
        Ok(Report {
            changes,
            snat: observed
                .nft
                .iter()
                .map(|(family, shape)| (*family, shape.snat()))
                .collect(),
            links: links.by_name,
        })
    }
}

/// Makes one change in the kernel. [`Kernel`] makes it for real; a wrapper around it can
/// refuse a chosen change, which is how the tests show that a failure at any step leaves the
/// kernel as it was.
pub trait MakeChange: Sync {
    /// Makes `change`; `plan` holds the nftables content, `indexes` the interfaces by name.
    fn make(
        &self,
        change: &Change,
        plan: &Plan,
        indexes: &BTreeMap<String, u32>,
    ) -> impl Future<Output = Result<(), KernelError>> + Send;
}

impl MakeChange for Kernel {
    async fn make(
        &self,
        change: &Change,
        plan: &Plan,
        indexes: &BTreeMap<String, u32>,
    ) -> Result<(), KernelError> {
        let handle = &self.handle;
        match change {
            Change::Sysctl { key, to, .. } => {
                return sysctl::write(key, to).map_err(|error| KernelError::SysctlWrite {
                    key: key.clone(),
                    value: to.clone(),
                    error,
                });
            }
            Change::AddRule(rule) => netlink::add_rule(handle, rule).await,
            Change::DeleteRule(rule) => netlink::delete_rule(handle, rule).await,
            Change::AddRoute(route) | Change::ReplaceRoute { to: route, .. } => {
                netlink::put_route(handle, route, indexes).await
            }
            Change::DeleteRoute(route) => netlink::delete_route(handle, route, indexes).await,
            Change::Nft { .. } => return Ok(nft::replace(&self.nft, &plan.nft).await?),
        }
        .map_err(KernelError::from)
    }
}

/// Undoes `done`, last first; how many were undone and which undos failed.
async fn undo(
    maker: &impl MakeChange,
    done: &[Change],
    indexes: &BTreeMap<String, u32>,
) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let empty = Plan {
        sysctls: vec![],
        rules: vec![],
        routes: vec![],
        nft: vec![],
    };
    let mut undone = 0;
    for change in done.iter().rev() {
        let Some(inverse) = change.inverse() else {
            continue;
        };
        undone += 1;
        if let Err(error) = maker.make(&inverse, &empty, indexes).await {
            warn!(change = %inverse, %error, "undo failed");
            failures.push(format!("{inverse}: {error}"));
        }
    }
    (undone, failures)
}
