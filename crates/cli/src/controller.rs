//! `veg controller`: the reconciler. `--source dir:PATH` runs it on a directory of manifests
//! (the embedded mode; decisions are written as JSON under `--output`); the Kubernetes source
//! comes with the kube adapter.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::info;
use veg_controller::files::{FileOutputs, FileSource};
use veg_controller::{BfdModeSetting, Reconciler, driver, nb};
use veg_ovsdb::{Client, ClientConfig};

use crate::logging::{self, LogFormat};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BfdModeArg {
    /// OVN BFD rows linked from the policies (an OVN that honours the dedicated port).
    Native,
    /// `veg monitor` keeps the nexthops.
    Monitor,
    /// Native when the NB has Logical_Router_Policy.bfd_sessions and
    /// --ovn-honours-bfd-port is given; monitor otherwise.
    Auto,
}

/// `veg controller` flags.
#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Where the API objects come from: `dir:PATH` (a directory of manifests).
    #[arg(long, env = "VEG_SOURCE")]
    source: String,
    /// Where decisions are written in the file mode (status, Deployments, events).
    #[arg(long, env = "VEG_OUTPUT")]
    output: Option<PathBuf>,
    /// OVN Northbound remotes, comma separated.
    #[arg(long, env = "VEG_NB")]
    nb: String,
    /// How BFD failover works.
    #[arg(long, env = "VEG_BFD_MODE", value_enum, default_value_t = BfdModeArg::Auto)]
    bfd_mode: BfdModeArg,
    /// The OVN build honours BFD on the dedicated `bfd@<vpc>` port (Kube-OVN's OVN).
    #[arg(long, env = "VEG_OVN_HONOURS_BFD_PORT")]
    ovn_honours_bfd_port: bool,
    /// Monitor mode: the address of every `veg monitor` (comma separated) besides the VPC's
    /// BFD address; gateway Pods accept BFD from all of them.
    #[arg(long, env = "VEG_MONITOR_ADDRESSES", value_delimiter = ',')]
    monitor_addresses: Vec<std::net::IpAddr>,
    /// The gateway image when a gateway names none.
    #[arg(long, env = "VEG_GATEWAY_IMAGE", default_value = "veg:latest")]
    image: String,
    /// How often the manifest directory is checked, ms.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Log format.
    #[arg(long, env = "VEG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Runs the controller until SIGTERM/SIGINT.
pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    logging::init(args.log_format);
    let Some(dir) = args.source.strip_prefix("dir:").map(PathBuf::from) else {
        bail!(
            "--source {:?}: only dir:PATH is supported by this build (the Kubernetes source comes with the kube adapter)",
            args.source
        );
    };
    let output = args.output.clone().unwrap_or_else(|| dir.join(".veg"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = Client::connect(
            ClientConfig::northbound(&args.nb, nb::monitor_spec()).context("--nb")?,
            Duration::from_secs(10),
        )
        .await
        .context("cannot reach the OVN Northbound database")?;
        let has_bfd_sessions = client.schema().has_column("Logical_Router_Policy", "bfd_sessions");
        let setting = match args.bfd_mode {
            BfdModeArg::Native => BfdModeSetting::Native,
            BfdModeArg::Monitor => BfdModeSetting::Monitor,
            BfdModeArg::Auto => BfdModeSetting::Auto,
        };
        let mode = setting.choose(has_bfd_sessions, args.ovn_honours_bfd_port);
        info!(?mode, has_bfd_sessions, source = %dir.display(), output = %output.display(), "controller started");
        let mut source = FileSource::new(&dir, &output, Duration::from_millis(args.poll_ms.max(50)))
            .context("reading the manifests")?;
        let mut reconciler =
            Reconciler::new(client, FileOutputs::new(&output), mode, args.image.clone());
        reconciler.monitor_addresses = args.monitor_addresses.clone();
        let shutdown = crate::bfd::shutdown_signal()?;
        driver::run(
            &reconciler,
            &mut source,
            || Time(k8s_openapi::jiff::Timestamp::now()),
            shutdown,
        )
        .await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
