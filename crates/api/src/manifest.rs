//! Reading Kubernetes manifests: a stream of YAML documents, each turned into a typed object
//! with errors that name the field, as `kubectl apply` with strict field validation would.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;
use crate::validate::{FieldError, Rule};

/// One object of a manifest, still untyped.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Position of the document in its stream, from 0 (empty documents count).
    pub index: usize,
    pub object: Value,
}

impl Manifest {
    /// `apiVersion`, empty when absent.
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("")
    }

    /// `kind`, empty when absent.
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }

    /// `metadata.name`, empty when absent.
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }

    /// Whether this is an object of `api_version` and `kind`.
    pub fn is(&self, api_version: &str, kind: &str) -> bool {
        self.api_version() == api_version && self.kind() == kind
    }

    /// The object as `T`; see [`parse_object`].
    pub fn parse<T: DeserializeOwned>(&self) -> Result<Parsed<T>, Vec<FieldError>> {
        parse_object(&self.object)
    }
}

/// An object that deserialized, with the fields it had that `T` does not know.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed<T> {
    /// The typed object.
    pub value: T,
    /// One [`Rule::UnknownField`] error per unknown field; the apiserver rejects these under
    /// strict field validation (kubectl's default).
    pub unknown_fields: Vec<FieldError>,
}

/// Splits a YAML stream into its objects; empty documents are skipped.
pub fn read_manifests(text: &str) -> Result<Vec<Manifest>, Error> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|error| Error::Yaml { error })?;
    let mut manifests = Vec::with_capacity(documents.len());
    for (index, object) in documents.into_iter().enumerate() {
        match object {
            Value::Null => continue,
            Value::Object(_) => manifests.push(Manifest { index, object }),
            _ => return Err(Error::NotAnObject { index }),
        }
    }
    Ok(manifests)
}

/// Deserializes `object` as `T`. A type error fails the parse and is reported with its field
/// path, together with the unknown fields seen before it; unknown fields alone do not fail it.
pub fn parse_object<T: DeserializeOwned>(object: &Value) -> Result<Parsed<T>, Vec<FieldError>> {
    let mut unknown = Vec::new();
    // kube-derive's root types skip `apiVersion` and `kind`; callers dispatch on them already.
    let mut record_unknown = |path: serde_ignored::Path<'_>| {
        let field = field_path(&path);
        if !matches!(field.as_str(), "apiVersion" | "kind") {
            unknown.push(field);
        }
    };
    let tracked = serde_ignored::Deserializer::new(object, &mut record_unknown);
    let parsed = serde_path_to_error::deserialize::<_, T>(tracked);
    let mut errors: Vec<FieldError> = unknown
        .into_iter()
        .map(|field| FieldError {
            field,
            rule: Rule::UnknownField,
            message: "unknown field".to_owned(),
        })
        .collect();
    match parsed {
        Ok(value) => Ok(Parsed {
            value,
            unknown_fields: errors,
        }),
        Err(error) => {
            errors.push(FieldError {
                field: error.path().to_string(),
                rule: Rule::Type,
                message: error.inner().to_string(),
            });
            Err(errors)
        }
    }
}

/// A serde_ignored path in Kubernetes' notation: `spec.policies[0].foo`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}
