//! The shim's error: every variant names the step that failed.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad command line.
    #[error("{0}")]
    Usage(String),

    /// The runtime library refused or failed (its message names the step).
    #[error(transparent)]
    Runtime(#[from] corral_runtime::Error),

    #[error("{step}: {errno}")]
    Sys {
        step: String,
        errno: nix::errno::Errno,
    },

    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },

    /// Create or start failed and the caller was told on the sync fd.
    #[error("{0}")]
    Reported(Box<Error>),

    /// Not available on this target.
    #[error("{0}")]
    Unsupported(&'static str),

    /// A file the shim reads (exit record, sync message) is malformed.
    #[error("{what}: {msg}")]
    Format { what: String, msg: String },
}

/// Attach a step description to nix and io results.
pub trait Context<T> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            step: step().into(),
            errno,
        })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Io {
            step: step().into(),
            source,
        })
    }
}
