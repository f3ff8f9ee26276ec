//! The crate-wide error: every variant says which step failed and on what.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `config.json` (or a process.json) is malformed or inconsistent.
    #[error("{file}: {msg}")]
    Config { file: PathBuf, msg: String },

    /// A system call failed during a named step.
    #[error("{step}: {errno}")]
    Sys {
        step: String,
        errno: nix::errno::Errno,
    },

    /// A file operation failed during a named step.
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },

    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    Exists(String),

    #[error("invalid container id {0:?}: use 1-1024 characters from [A-Za-z0-9_+.-], not starting with '.'")]
    BadId(String),

    /// A verb was asked of a container in a state that forbids it.
    #[error("container {id:?} is {status}: {verb} needs it {needed}")]
    State {
        id: String,
        status: String,
        verb: &'static str,
        needed: &'static str,
    },

    /// The container init reported a failure (the message names its step).
    #[error("container init: {0}")]
    Init(String),

    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),

    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),

    #[error(transparent)]
    Capabilities(#[from] crate::capabilities::CapsError),

    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),

    /// A request that makes no sense (bad flag combination, bad signal name).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn sys(step: impl Into<String>, errno: nix::errno::Errno) -> Self {
        Error::Sys {
            step: step.into(),
            errno,
        }
    }

    pub fn io(step: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            step: step.into(),
            source,
        }
    }
}

/// Attach a step description to nix and io results.
pub trait Context<T> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for nix::Result<T> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::sys(step(), e))
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(step(), e))
    }
}
