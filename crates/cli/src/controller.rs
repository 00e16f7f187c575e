//! `veg controller`: the reconciler. `--source kube` (the default) runs it in a cluster: watches,
//! server-side apply, one writer among replicas by Lease, `/metrics`, `/livez`, `/readyz` and
//! `PUT /log-level` on `--metrics-address`. `--source dir:PATH` runs it on a directory of
//! manifests (the embedded mode; decisions are written as JSON under `--output`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{info, warn};
use veg_controller::adapters::files::{FileOutputs, FileSource};
use veg_controller::apply::nb;
use veg_controller::run::driver;
use veg_controller::{BfdModeSetting, Reconciler};
use veg_ovsdb::nb::LogicalRouterPolicy;
use veg_ovsdb::{Client, NbRow};

use crate::logging::{self, LogFormat};
use crate::northbound::NorthboundArgs;
use crate::tenancy::TenancyArgs;

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
    /// Where the API objects come from: `kube` (the cluster of the in-cluster config or
    /// KUBECONFIG) or `dir:PATH` (a directory of manifests, the embedded mode).
    #[arg(long, env = "VEG_SOURCE", default_value = "kube")]
    source: String,
    /// Where decisions are written in the file mode (status, Deployments, events).
    #[arg(long, env = "VEG_OUTPUT")]
    output: Option<PathBuf>,
    #[command(flatten)]
    northbound: NorthboundArgs,
    #[command(flatten)]
    tenancy: TenancyArgs,
    /// The VPC of gateways whose spec names none (Kube-OVN's --cluster-router).
    #[arg(long, env = "VEG_DEFAULT_VPC", default_value = "ovn-cluster")]
    default_vpc: String,
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
    /// Monitor mode: the Secret (in each gateway's namespace, key `key`, 1 to 20 bytes) whose
    /// key the gateway Pods' bfdd and the monitors (`--auth-key-file`) authenticate BFD with,
    /// keyed SHA1. OVN's own BFD (native mode) has no authentication.
    #[arg(long, env = "VEG_BFD_AUTH_SECRET")]
    bfd_auth_secret: Option<String>,
    /// The gateway image when a gateway names none.
    #[arg(long, env = "VEG_GATEWAY_IMAGE", default_value = "veg:latest")]
    image: String,
    /// How often the manifest directory is checked, ms.
    #[arg(long, default_value_t = 500)]
    poll_ms: u64,
    /// Log format.
    #[arg(long, env = "VEG_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (a tracing filter; `PUT /log-level` changes it at run time).
    #[arg(long, env = "VEG_LOG_LEVEL", default_value = "info")]
    log_level: String,
    /// `/metrics`, `/livez`, `/readyz`, `PUT /log-level` (kube source).
    #[arg(long, env = "VEG_METRICS_ADDRESS", default_value = "[::]:10660")]
    metrics_address: std::net::SocketAddr,
    /// One writer among replicas, by a Lease (kube source); `false` for a single replica.
    #[arg(long, env = "VEG_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// The Lease's namespace (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "kube-system")]
    lease_namespace: String,
    /// The Lease's name.
    #[arg(long, env = "VEG_LEASE_NAME", default_value = "veg-controller")]
    lease_name: String,
    /// This replica's identity in the Lease and in events (the Pod's name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

/// Runs the controller until SIGTERM/SIGINT.
pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let set_level = logging::init_reloadable(args.log_format, &args.log_level);
    let dir = match args.source.as_str() {
        "kube" => None,
        other => Some(
            other
                .strip_prefix("dir:")
                .map(PathBuf::from)
                .with_context(|| format!("--source {other:?}: say kube or dir:PATH"))?,
        ),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let config = args.northbound.config(nb::monitor_spec())?;
        match dir {
            Some(dir) => run_files(&args, config, &dir).await,
            None => run_kube(&args, config, set_level).await,
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The NB client, however long the database takes to be reachable (a controller started
/// before OVN, or during an NB outage, waits and says why, instead of exiting); `None` when
/// SIGTERM/SIGINT comes first.
async fn connect_nb(config: veg_ovsdb::ClientConfig) -> anyhow::Result<Option<Client>> {
    let signal = veg_daemon::shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
    let connect = Client::connect_patiently(config, Duration::from_secs(5), |waited, error| {
        warn!(
            waited_s = waited.as_secs(),
            error = error.as_deref().unwrap_or("no answer yet"),
            "the OVN Northbound database is not reachable; still trying"
        );
    });
    tokio::select! {
        client = connect => Ok(Some(client.context("the OVN Northbound remote")?)),
        () = signal => {
            info!("stopped before the OVN Northbound database was reachable");
            Ok(None)
        }
    }
}

/// The BFD mode for `--bfd-mode` and what the NB's schema has.
fn mode_of(args: &ControllerArgs, client: &Client) -> veg_controller::BfdMode {
    let has_bfd_sessions = client
        .schema()
        .has_column(LogicalRouterPolicy::TABLE, "bfd_sessions");
    let setting = match args.bfd_mode {
        BfdModeArg::Native => BfdModeSetting::Native,
        BfdModeArg::Monitor => BfdModeSetting::Monitor,
        BfdModeArg::Auto => BfdModeSetting::Auto,
    };
    setting.choose(has_bfd_sessions, args.ovn_honours_bfd_port)
}

async fn run_files(
    args: &ControllerArgs,
    config: veg_ovsdb::ClientConfig,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let Some(client) = connect_nb(config).await? else {
        return Ok(());
    };
    let mode = mode_of(args, &client);
    let output = args.output.clone().unwrap_or_else(|| dir.join(".veg"));
    info!(?mode, source = %dir.display(), output = %output.display(), "controller started");
    let mut source = FileSource::new(dir, &output, Duration::from_millis(args.poll_ms.max(50)))
        .context("reading the manifests")?;
    let mut reconciler =
        Reconciler::new(client, FileOutputs::new(&output), mode, args.image.clone());
    reconciler.monitor_addresses = args.monitor_addresses.clone();
    reconciler.bfd_auth_secret = args.bfd_auth_secret.clone();
    reconciler.tenancy = args.tenancy.tenancy_with(&args.image);
    info!(tenancy = ?reconciler.tenancy, "tenancy");
    let shutdown = veg_daemon::shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
    driver::run(
        &reconciler,
        &mut source,
        || Time(k8s_openapi::jiff::Timestamp::now()),
        || {},
        shutdown,
    )
    .await;
    Ok(())
}

async fn run_kube(
    args: &ControllerArgs,
    config: veg_ovsdb::ClientConfig,
    set_level: veg_daemon::SetLevel,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use tokio::sync::watch;
    use veg_controller::adapters::kube::lease::{self, LeaseConfig};
    use veg_controller::adapters::kube::{KubeOutputs, KubeSource};
    use veg_controller::run::driver::Source as _;

    let kube = kube::Client::try_default()
        .await
        .context("no Kubernetes configuration (in-cluster service account or KUBECONFIG)")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| format!("veg-controller-{}", std::process::id()))
    });
    let metrics = Arc::new(veg_controller::run::metrics::Metrics::default());
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let health = Arc::new(veg_daemon::Health::default());
    let mut endpoint = veg_daemon::Endpoint::new(
        registry,
        health.clone(),
        "not ready: waiting for the OVN Northbound database or the cluster's caches",
    );
    endpoint.set_level = Some(set_level);
    let listener = veg_daemon::http::bind(args.metrics_address)
        .await
        .context("--metrics-address")?;
    let _endpoint = veg_daemon::Task::spawn(veg_daemon::http::serve(listener, Arc::new(endpoint)));
    // Live (it serves) and not ready while the NB is out of reach.
    let Some(nb) = connect_nb(config).await? else {
        return Ok(());
    };
    let mode = mode_of(args, &nb);

    let (leader_tx, mut leader) = watch::channel(!args.leader_elect);
    let lease_config = LeaseConfig::new(&args.lease_namespace, &args.lease_name, &identity);
    let election = args
        .leader_elect
        .then(|| tokio::spawn(lease::run(kube.clone(), lease_config.clone(), leader_tx)));
    info!(?mode, %identity, leader_elect = args.leader_elect, default_vpc = %args.default_vpc, "controller started; listing the cluster");
    let mut source = KubeSource::start(kube.clone(), &args.default_vpc).await;
    health.set_ready(true);

    let mut reconciler = Reconciler::new(
        nb,
        KubeOutputs::new(kube.clone(), &identity, leader.clone()),
        mode,
        args.image.clone(),
    );
    reconciler.monitor_addresses = args.monitor_addresses.clone();
    reconciler.bfd_auth_secret = args.bfd_auth_secret.clone();
    reconciler.tenancy = args.tenancy.tenancy_with(&args.image);
    info!(tenancy = ?reconciler.tenancy, "tenancy");
    reconciler.metrics = metrics.clone();

    let (stop_tx, stop) = watch::channel(false);
    let signal = veg_daemon::shutdown_signal().context("cannot watch SIGTERM/SIGINT")?;
    tokio::spawn(async move {
        signal.await;
        stop_tx.send_replace(true);
    });
    loop {
        // A standby keeps its caches warm and writes nothing.
        while !*leader.borrow() && !*stop.borrow() {
            metrics.leader.set(0);
            health.beat();
            let mut stopping = stop.clone();
            tokio::select! {
                update = source.next() => if update.is_none() { anyhow::bail!("the watches ended") },
                _ = leader.changed() => {}
                _ = stopping.changed() => {}
                () = tokio::time::sleep(driver::IDLE_TURN) => {}
            }
        }
        if *stop.borrow() {
            break;
        }
        metrics.leader.set(1);
        // This term's token in the NB: a former leader's late writes fail on it from now on.
        let token = format!(
            "{identity}/{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|since| since.as_millis())
                .unwrap_or_default()
        );
        if let Err(error) = nb::take_writer_token(&reconciler.nb, &token).await {
            warn!(%error, "cannot take the NB writer token; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        info!(%token, "leading: reconciling (NB writes fenced on the token)");
        let mut lost = leader.clone();
        let mut stopping = stop.clone();
        let until = async move {
            tokio::select! {
                _ = async { while lost.changed().await.is_ok() { if !*lost.borrow() { break } } } => {}
                _ = stopping.changed() => {}
            }
        };
        driver::run(
            &reconciler,
            &mut source,
            || Time(k8s_openapi::jiff::Timestamp::now()),
            || health.beat(),
            until,
        )
        .await;
        if *stop.borrow() {
            break;
        }
        warn!("lost the lease: writes stopped, standing by");
    }
    if let Some(election) = election {
        election.abort();
        lease::release(kube, &lease_config).await;
    }
    info!("stopped");
    Ok(())
}
