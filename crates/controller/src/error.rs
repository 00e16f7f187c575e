//! How an error should be handled, whatever layer it comes from.

/// The class of an error: what the loop does about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// May pass on retry (a server restarting, a lost connection, not leading yet): retried
    /// with backoff.
    Transient,
    /// Someone else changed the object first: retried at once on the new version.
    Conflict,
    /// The input is wrong: retrying the same input fails the same way.
    Invalid,
    /// A bug or a broken environment: retried with backoff, but an operator must look.
    Fatal,
}

impl ErrorClass {
    /// A bounded label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Invalid => "invalid",
            ErrorClass::Fatal => "fatal",
        }
    }
}
