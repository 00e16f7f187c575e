//! The OVN Northbound connection flags shared by `veg controller` and `veg monitor`: both
//! read the same ConfigMap, so both must honour its TLS settings.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use veg_ovsdb::{ClientConfig, MonitorSpec, TlsFiles};

/// Where the NB is and how to prove who we are.
#[derive(Debug, Args)]
pub struct NorthboundArgs {
    /// OVN Northbound remotes, comma separated (unix:PATH, tcp:HOST:PORT, ssl:HOST:PORT).
    #[arg(long, env = "VEG_NB")]
    nb: String,
    /// ssl: remotes: the CA certificate that signed the NB's certificate.
    #[arg(long, env = "VEG_NB_CA_CERT", requires_all = ["nb_cert", "nb_key"])]
    nb_ca_cert: Option<PathBuf>,
    /// ssl: remotes: our certificate.
    #[arg(long, env = "VEG_NB_CERT", requires_all = ["nb_ca_cert", "nb_key"])]
    nb_cert: Option<PathBuf>,
    /// ssl: remotes: our private key.
    #[arg(long, env = "VEG_NB_KEY", requires_all = ["nb_ca_cert", "nb_cert"])]
    nb_key: Option<PathBuf>,
    /// ssl: remotes: accept any server certificate the CA signed, whatever host it names (OVS
    /// PKI certificates, `ovs-pki`, name no host). By default the certificate must name the
    /// remote's host.
    #[arg(long, env = "VEG_NB_TLS_CA_ONLY")]
    nb_tls_ca_only: bool,
    /// The longest message taken from the NB, MiB; a longer one closes the connection (the
    /// initial dump at 100 000 Pods and 1 000 gateways is 13 MB, and decoding costs several
    /// times a message's size).
    #[arg(long, env = "VEG_NB_MAX_MESSAGE_MIB", default_value_t = 64)]
    nb_max_message_mib: usize,
}

impl NorthboundArgs {
    /// The client configuration for these remotes, monitoring `spec`.
    pub fn config(&self, spec: MonitorSpec) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::northbound(&self.nb, spec).context("--nb")?;
        config.max_message = self.nb_max_message_mib.max(1).saturating_mul(1024 * 1024);
        if let (Some(ca), Some(cert), Some(key)) = (&self.nb_ca_cert, &self.nb_cert, &self.nb_key) {
            config.tls = Some(TlsFiles {
                ca_certificate: ca.clone(),
                certificate: cert.clone(),
                private_key: key.clone(),
                check_name: !self.nb_tls_ca_only,
            });
        }
        Ok(config)
    }
}
