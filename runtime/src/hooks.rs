//! PLACEHOLDER: being written by a helper this session; replaced before commit.

#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Other(String),
}
