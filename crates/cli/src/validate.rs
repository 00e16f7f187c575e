//! `veg validate FILE…`: every VpcEgressGateway in the files is parsed and validated as the
//! controller would, and each problem is printed as `FILE: <kind>/<name>: <field>: <message>`.
//! A Kube-OVN `Vpc` in the same files has its `bfdPort` checked too. Other kinds are skipped.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use veg_api::kubeovn::Vpc;
use veg_api::{FieldError, Manifest, Rule, VpcEgressGateway};

const API_VERSION: &str = "kubeovn.io/v1";

/// Arguments of `veg validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML files, each holding one or more documents (`-` reads standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Validates every file; exit 0 when all are valid, 1 when any object is invalid. A file that
/// cannot be read or parsed is reported the same way and also counts as invalid.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let mut invalid = 0usize;
    let mut checked = 0usize;
    for path in &args.files {
        let label = path.display().to_string();
        let text = read(path).with_context(|| format!("cannot read {label}"))?;
        let manifests = match veg_api::read_manifests(&text) {
            Ok(manifests) => manifests,
            Err(error) => {
                println!("{label}: {error}");
                invalid += 1;
                continue;
            }
        };
        for manifest in &manifests {
            let Some(errors) = check(manifest) else {
                continue;
            };
            checked += 1;
            if !errors.is_empty() {
                invalid += 1;
            }
            let object = format!("{}/{}", manifest.kind(), display_name(manifest));
            for error in errors {
                println!("{label}: {object}: {}: {}", error.field, error.message);
            }
        }
    }
    eprintln!("veg validate: {checked} object(s) checked, {invalid} invalid");
    Ok(if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The errors of one object, or `None` when veg does not check its kind.
fn check(manifest: &Manifest) -> Option<Vec<FieldError>> {
    if manifest.is(API_VERSION, "VpcEgressGateway") {
        Some(match manifest.parse::<VpcEgressGateway>() {
            Ok(parsed) => {
                let mut errors = parsed.unknown_fields;
                errors.extend(veg_api::validate(&parsed.value).err().unwrap_or_default());
                errors
            }
            Err(errors) => errors,
        })
    } else if manifest.is(API_VERSION, "Vpc") {
        // A Vpc carries many fields veg does not model, so unknown fields are not errors here.
        Some(
            match serde_json::from_value::<Vpc>(manifest.object.clone()) {
                Ok(vpc) => check_bfd_port(&vpc),
                Err(error) => vec![FieldError {
                    field: "spec".to_owned(),
                    rule: Rule::Type,
                    message: error.to_string(),
                }],
            },
        )
    } else {
        None
    }
}

/// `Vpc.spec.bfdPort`: an enabled port needs an IP, `v4`, `v6` or `v4,v6`.
fn check_bfd_port(vpc: &Vpc) -> Vec<FieldError> {
    let Some(port) = vpc.spec.bfd_port.as_ref().filter(|port| port.enabled) else {
        return Vec::new();
    };
    let field = "spec.bfdPort.ip".to_owned();
    if port.ip.is_empty() {
        return vec![FieldError {
            field,
            rule: Rule::Required,
            message: "an enabled BFD port needs an IP".to_owned(),
        }];
    }
    match veg_api::check_ip_entry(&port.ip) {
        Ok(_) => Vec::new(),
        Err(error) => vec![FieldError {
            field,
            rule: Rule::Format,
            message: error.to_string(),
        }],
    }
}

fn display_name(manifest: &Manifest) -> &str {
    match manifest.name() {
        "" => "<unnamed>",
        name => name,
    }
}

fn read(path: &PathBuf) -> std::io::Result<String> {
    if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    }
}
