//! `veg`: the one binary of the veg VPC egress gateway.
//!
//! Each subcommand lives in its own module; `main` only parses the command line and maps the
//! outcome to an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bfd;
mod controller;
mod gateway;
mod kubectl;
mod lab;
mod logging;
mod monitor;
mod northbound;
mod tenancy;
mod validate;

/// veg — a VPC egress gateway for Kube-OVN clusters.
#[derive(Debug, Parser)]
#[command(name = "veg", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the VpcEgressGateway CustomResourceDefinition as YAML.
    Crd,
    /// Check VpcEgressGateway manifests without a cluster; exit 1 when any is invalid.
    Validate(validate::Args),
    /// Run the BFD daemon (RFC 5880/5881) of a gateway instance or monitor.
    Bfdd(bfd::DaemonArgs),
    /// Query and steer a running `veg bfdd` through its control socket.
    Bfdctl(bfd::ControlArgs),
    /// The agent of a gateway Pod: routes, rules, nftables SNAT, uplink fate sharing.
    Gateway(gateway::GatewayArgs),
    /// Monitor mode: BFD to every gateway instance of a VPC, nexthops = the Up ones.
    Monitor(monitor::MonitorArgs),
    /// The reconciler: gateways and their surroundings -> OVN rows, Deployments, status.
    Controller(controller::ControllerArgs),
    /// The embedded lab: the whole system on one machine with a real OVN.
    Lab(lab::LabArgs),
    /// `kubectl veg status|explain` (also as this binary installed as `kubectl-veg`).
    KubectlPlugin(kubectl::PluginArgs),
}

fn main() -> ExitCode {
    // Installed as `kubectl-veg`, kubectl runs it as `kubectl veg ARGS`.
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|arg0| std::path::Path::new(arg0).file_name().map(|n| n.to_owned()));
    if invoked_as.is_some_and(|name| name == "kubectl-veg") {
        args.splice(0..1, ["veg".into(), "kubectl-plugin".into()]);
    }
    let cli = Cli::parse_from(args);
    let outcome = match cli.command {
        Command::Crd => print_crd(),
        Command::Validate(args) => validate::run(&args),
        Command::Bfdd(args) => bfd::run_daemon(args),
        Command::Bfdctl(args) => bfd::run_control(args),
        Command::Gateway(args) => gateway::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Lab(args) => lab::run(args),
        Command::KubectlPlugin(args) => kubectl::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("veg: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn print_crd() -> anyhow::Result<ExitCode> {
    print!("{}", veg_api::crd_yaml()?);
    Ok(ExitCode::SUCCESS)
}
