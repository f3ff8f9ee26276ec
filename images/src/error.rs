//! The crate-wide error. Every message names what failed: the reference, registry,
//! digest, path or archive entry, so a user can act on it without a backtrace.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },

    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },

    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    #[error("{what}: invalid JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// Anything malformed that is not JSON syntax: a manifest without layers, an
    /// index entry without a digest, a credentials entry that is not `user:pass`.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    #[error("blob {digest} is not in the image store {}", path.display())]
    BlobMissing { digest: Digest, path: PathBuf },

    #[error("pulling {reference} from {registry}: unauthorized (HTTP 401){}: {detail}", if *.had_credentials { " with the configured credentials" } else { ", no credentials configured for this registry" })]
    Unauthorized {
        registry: String,
        reference: String,
        had_credentials: bool,
        detail: String,
    },

    #[error("pulling {reference} from {registry}: access denied (HTTP 403): {detail}")]
    Forbidden {
        registry: String,
        reference: String,
        detail: String,
    },

    #[error("pulling {reference} from {registry}: {what} not found (HTTP 404: {detail})")]
    NotFound {
        registry: String,
        reference: String,
        what: String,
        detail: String,
    },

    #[error("pulling {reference}: cannot connect to registry {registry} at {url}: {reason}")]
    Connect {
        registry: String,
        reference: String,
        url: String,
        reason: String,
    },

    #[error("pulling {reference} from {registry}: {what}: {reason}")]
    Registry {
        registry: String,
        reference: String,
        what: String,
        reason: String,
    },

    #[error("{reference}: no manifest for platform {platform} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: Vec<String>,
    },

    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: String, media_type: String },

    #[error("credentials file {}: {reason}", path.display())]
    Credentials { path: PathBuf, reason: String },

    #[error("importing {}: {reason}", path.display())]
    Import { path: PathBuf, reason: String },

    #[error("image {name:?} not found in the store")]
    ImageNotFound { name: String },

    #[error("{name:?} matches several images: {}", candidates.join(", "))]
    Ambiguous {
        name: String,
        candidates: Vec<String>,
    },

    /// For layer unpacking (H2): the archive entry and why it was rejected.
    #[error("layer entry {entry:?}: {reason}")]
    Layer { entry: String, reason: String },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Error {
        Error::Json {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
