//! `--tenancy` and `--admin-namespaces`, shared by `veg controller` and `kubectl veg explain`
//! (which must judge a gateway the way the controller does).

use clap::{Args, ValueEnum};
use veg_controller::Tenancy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TenancyArg {
    /// A gateway steers only what its namespace is entitled to (docs/security.md).
    Strict,
    /// Kube-OVN's behaviour: any gateway may select any Pod and use any network. Only for
    /// clusters where everyone who may create a gateway is trusted with all traffic.
    Open,
}

/// The tenancy flags.
#[derive(Debug, Args)]
pub struct TenancyArgs {
    /// Who may steer what.
    #[arg(long, env = "VEG_TENANCY", value_enum, default_value_t = TenancyArg::Strict)]
    tenancy: TenancyArg,
    /// Namespaces whose gateways are not limited by strict tenancy (comma separated).
    #[arg(
        long,
        env = "VEG_ADMIN_NAMESPACES",
        value_delimiter = ',',
        default_value = "kube-system"
    )]
    admin_namespaces: Vec<String>,
    /// Images gateways of any namespace may name in `spec.image`, besides the controller's
    /// own (comma separated). Gateway Pods run with NET_ADMIN: a tenant's own image is not.
    #[arg(long, env = "VEG_TENANT_IMAGES", value_delimiter = ',')]
    tenant_images: Vec<String>,
}

impl TenancyArgs {
    /// The settings, `own_image` (the controller's gateway image) allowed.
    pub fn tenancy_with(&self, own_image: &str) -> Tenancy {
        let mut tenancy = self.tenancy();
        tenancy.images = self
            .tenant_images
            .iter()
            .map(|image| image.trim().to_owned())
            .filter(|image| !image.is_empty())
            .chain([own_image.to_owned()])
            .collect();
        tenancy
    }

    /// The settings.
    pub fn tenancy(&self) -> Tenancy {
        match self.tenancy {
            TenancyArg::Strict => Tenancy::strict(
                self.admin_namespaces
                    .iter()
                    .map(|ns| ns.trim())
                    .filter(|ns| !ns.is_empty()),
            ),
            TenancyArg::Open => Tenancy::open(),
        }
    }
}
