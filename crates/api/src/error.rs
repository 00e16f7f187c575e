//! Errors of veg-api that are not about one field of an object (those are
//! [`FieldError`](crate::FieldError)s).

/// Reading manifests failed before any object could be looked at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The text is not YAML (or JSON).
    #[error("not valid YAML: {error}")]
    Yaml {
        /// The parser's error, with its line and column (printed in the message, so not a
        /// `source`: a cause chain would print it twice).
        error: serde_saphyr::Error,
    },
    /// A document is not a mapping, so it cannot be a Kubernetes object.
    #[error("document {index} is not a Kubernetes object (a mapping with apiVersion and kind)")]
    NotAnObject {
        /// Position of the document in the stream, from 0.
        index: usize,
    },
    /// The CRD could not be rendered as YAML.
    #[error("cannot render the CRD as YAML: {error}")]
    Render {
        /// The serializer's error.
        error: serde_saphyr::SerializeError,
    },
}

impl Error {
    /// A bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Yaml { .. } => "yaml",
            Error::NotAnObject { .. } => "not_an_object",
            Error::Render { .. } => "render",
        }
    }
}
