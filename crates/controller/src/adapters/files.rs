//! The file adapter (embedded mode): the API objects are YAML manifests in a directory; what
//! the controller writes (gateway status, Deployments, events, VPC BFD-port status, Pod
//! annotations) goes to an output directory as JSON, where the lab's kubelet reads it. The
//! directory is polled; any change is a resync (the embedded mode is small).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value as Json;
use tracing::warn;
use veg_api::kubeovn::BfdPortStatus;
use veg_api::{VpcEgressGateway, VpcEgressGatewayStatus};

use crate::plan::snapshot::{MemorySnapshot, Snapshot};
use crate::plan::status::Event;
use crate::run::driver::{Source, Update};
use crate::run::outputs::{OutputError, Outputs};

/// Why a manifest directory cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A directory of manifests as a [`Source`].
pub struct FileSource {
    dir: PathBuf,
    output: PathBuf,
    poll: Duration,
    snapshot: MemorySnapshot,
    fingerprint: Vec<(PathBuf, SystemTime, u64)>,
    first: bool,
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, FilesError> {
    let io = |source| FilesError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    Ok(files)
}

fn fingerprint(dir: &Path) -> Vec<(PathBuf, SystemTime, u64)> {
    yaml_files(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            Some((path, meta.modified().ok()?, meta.len()))
        })
        .collect()
}

impl FileSource {
    /// Reads `dir` now; `output` is where [`FileOutputs`] writes (statuses are read back).
    pub fn new(dir: &Path, output: &Path, poll: Duration) -> Result<Self, FilesError> {
        let mut source = Self {
            dir: dir.to_owned(),
            output: output.to_owned(),
            poll,
            snapshot: MemorySnapshot::default(),
            fingerprint: Vec::new(),
            first: true,
        };
        source.reload()?;
        Ok(source)
    }

    fn reload(&mut self) -> Result<(), FilesError> {
        self.reload_with(|| {})
    }

    /// Reads the directory; `during` runs between the fingerprint and the reading (tests: a
    /// write racing the reload). The fingerprint is taken first: a file written while the
    /// files are read then differs from it at the next poll and is read then. Taken after,
    /// it would already include that file while the snapshot did not, and the change would
    /// never be seen.
    fn reload_with(&mut self, during: impl FnOnce()) -> Result<(), FilesError> {
        let before = fingerprint(&self.dir);
        during();
        let mut snapshot = MemorySnapshot::default();
        for path in yaml_files(&self.dir)? {
            let text = std::fs::read_to_string(&path).map_err(|source| FilesError::Io {
                path: path.clone(),
                source,
            })?;
            match veg_api::read_manifests(&text) {
                Ok(manifests) => {
                    for manifest in manifests {
                        if let Err(error) = snapshot.put_object(manifest.object) {
                            warn!(path = %path.display(), document = manifest.index, %error, "object skipped");
                        }
                    }
                }
                Err(error) => warn!(path = %path.display(), %error, "file skipped"),
            }
        }
        // The statuses this controller wrote, as an API server would keep them.
        let gateways: Vec<VpcEgressGateway> = snapshot.gateways().into_iter().cloned().collect();
        for mut gateway in gateways {
            // A name that is no object name has no status file (nor is one read for it).
            if let Ok(path) = status_path(
                &self.output,
                gateway.namespace_or_empty(),
                gateway.name_or_empty(),
            ) && let Ok(text) = std::fs::read_to_string(path)
                && let Ok(status) = serde_json::from_str::<VpcEgressGatewayStatus>(&text)
            {
                gateway.status = Some(status);
                snapshot.put_gateway(gateway);
            }
        }
        self.snapshot = snapshot;
        self.fingerprint = before;
        Ok(())
    }
}

impl Source for FileSource {
    fn snapshot(&self) -> &dyn Snapshot {
        &self.snapshot
    }

    async fn next(&mut self) -> Option<Update> {
        if self.first {
            self.first = false;
            return Some(Update::Resync);
        }
        loop {
            tokio::time::sleep(self.poll).await;
            if fingerprint(&self.dir) != self.fingerprint {
                if let Err(error) = self.reload() {
                    warn!(%error, "cannot read the manifests");
                    continue;
                }
                return Some(Update::Resync);
            }
        }
    }
}

fn status_path(output: &Path, namespace: &str, name: &str) -> Result<PathBuf, OutputError> {
    Ok(output.join("status").join(file_name(&[namespace, name])?))
}

/// `parts` joined by dots as a file name, when each is a Kubernetes object name. The
/// manifests are not checked by an API server, and a name such as `../../x` would otherwise
/// write outside the output directory.
fn file_name(parts: &[&str]) -> Result<String, OutputError> {
    match parts.iter().find(|part| !veg_api::is_dns_subdomain(part)) {
        Some(bad) => Err(OutputError::Refused {
            message: format!("{bad:?} is not a Kubernetes object name; nothing written"),
            class: crate::error::ErrorClass::Invalid,
        }),
        None => Ok(format!("{}.json", parts.join("."))),
    }
}

/// Writes what the controller decides as JSON files under a directory.
pub struct FileOutputs {
    dir: PathBuf,
}

impl FileOutputs {
    /// Writes under `dir` (created as needed).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn write(&self, path: &Path, value: &impl serde::Serialize) -> Result<(), OutputError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| OutputError::File {
                path: parent.to_owned(),
                source,
            })?;
        }
        let text = serde_json::to_string_pretty(value).map_err(OutputError::Encode)?;
        // Write then rename: a reader never sees half a file.
        let temporary = path.with_extension("tmp");
        std::fs::write(&temporary, text).map_err(|source| OutputError::File {
            path: temporary.clone(),
            source,
        })?;
        std::fs::rename(&temporary, path).map_err(|source| OutputError::File {
            path: path.to_owned(),
            source,
        })
    }

    fn append(&self, name: &str, line: &Json) {
        use std::io::Write as _;
        let path = self.dir.join(name);
        let _ = std::fs::create_dir_all(&self.dir);
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(file, "{line}");
        }
    }
}

impl Outputs for FileOutputs {
    async fn apply_deployment(&self, deployment: &Deployment) -> Result<(), OutputError> {
        let path = self.dir.join("deployments").join(file_name(&[
            deployment.metadata.namespace.as_deref().unwrap_or_default(),
            deployment.metadata.name.as_deref().unwrap_or_default(),
        ])?);
        self.write(&path, deployment)
    }

    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &VpcEgressGatewayStatus,
    ) -> Result<(), OutputError> {
        self.write(&status_path(&self.dir, namespace, name)?, status)
    }

    async fn event(&self, namespace: &str, name: &str, event: &Event) {
        self.append(
            "events.jsonl",
            &serde_json::json!({"object": format!("{namespace}/{name}"), "type": event.type_,
                "reason": event.reason, "message": event.message}),
        );
    }

    async fn patch_vpc_bfd_port(
        &self,
        vpc: &str,
        status: Option<&BfdPortStatus>,
    ) -> Result<(), OutputError> {
        self.write(&self.dir.join("vpcs").join(file_name(&[vpc])?), &status)
    }

    async fn annotate_pod(
        &self,
        namespace: &str,
        pod: &str,
        key: &str,
        value: &str,
    ) -> Result<(), OutputError> {
        let mut annotations = BTreeMap::new();
        annotations.insert(key, value);
        self.append(
            "pod-annotations.jsonl",
            &serde_json::json!({"pod": format!("{namespace}/{pod}"), "annotations": annotations}),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Object names from unchecked manifests never leave the output directory.
    #[tokio::test]
    async fn names_that_are_not_object_names_write_nothing()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("veg-files-out-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = dir.join("a").join("out");
        let outputs = FileOutputs::new(&out);
        let status = VpcEgressGatewayStatus::default();
        for (namespace, name) in [
            ("default", "../../escaped"),
            ("..", "escaped"),
            ("default", "a/b"),
            ("default", ".."),
            ("Default", "gateway1"),
        ] {
            let written = outputs.patch_status(namespace, name, &status).await;
            assert!(
                matches!(written, Err(OutputError::Refused { .. })),
                "{namespace}/{name}: {written:?}"
            );
        }
        assert!(outputs.patch_vpc_bfd_port("../vpc", None).await.is_err());
        assert!(!dir.join("escaped.json").exists() && !dir.join("a").join("escaped.json").exists());
        assert!(!out.join("status").exists(), "something was written");
        outputs.patch_status("default", "gateway1", &status).await?;
        assert!(out.join("status").join("default.gateway1.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    /// A file written while the directory is being read is seen at the next poll.
    #[tokio::test]
    async fn a_file_written_during_a_reload_is_not_missed() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = std::env::temp_dir().join(format!("veg-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let namespace =
            |name: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n");
        std::fs::write(dir.join("a.yaml"), namespace("first"))?;
        let mut source = FileSource::new(&dir, &dir.join("out"), Duration::from_millis(20))?;
        assert!(matches!(source.next().await, Some(Update::Resync)));
        let late = dir.join("b.yaml");
        source.reload_with(|| {
            let _ = std::fs::write(&late, namespace("second"));
        })?;
        let next = tokio::time::timeout(Duration::from_secs(2), source.next()).await;
        let seen = source
            .snapshot()
            .namespaces()
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some("second"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(next, Ok(Some(Update::Resync))),
            "no update for the file written during the reload"
        );
        assert!(
            seen,
            "the namespace written during the reload is in the snapshot"
        );
        Ok(())
    }
}
