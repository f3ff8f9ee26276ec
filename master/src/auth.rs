//! Bearer tokens: the admin token (written into admin.kubeconfig) and the
//! join token agents present. Both are 32 random bytes in hex, kept in files
//! readable by root only; the server keeps only their SHA-256 digests and
//! compares digests in constant time.
//!
//! For now both tokens may do everything: agents need to create their Node,
//! update pod status and hold leases, and per-node authorization (like
//! Kubernetes' Node authorizer) is not written yet.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::files;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("reading random bytes for a token: {0}")]
    Random(getrandom::Error),
    #[error("{path}: not a token (expected 64 hex digits)")]
    BadToken { path: PathBuf },
}

/// Who made a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Admin,
    /// A node agent, authenticated by the join token.
    Node,
}

pub struct Tokens {
    admin: [u8; 32],
    join: [u8; 32],
    /// The admin token itself, for admin.kubeconfig.
    admin_token: String,
    join_token: String,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equal-length comparison whose time does not depend on where the bytes differ.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn random_hex(bytes: usize) -> Result<String, AuthError> {
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).map_err(AuthError::Random)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the token at `path`, or creates it.
fn load_or_create_token(path: &Path) -> Result<String, AuthError> {
    let io_err = |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AuthError::BadToken {
                    path: path.to_path_buf(),
                });
            }
            Ok(token)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let token = random_hex(32)?;
            files::write_private(path, format!("{token}\n").as_bytes()).map_err(io_err)?;
            Ok(token)
        }
        Err(e) => Err(io_err(e)),
    }
}

impl Tokens {
    /// `DIR/admin-token` and `DIR/join-token`, made on first start.
    pub fn load_or_create(dir: &Path) -> Result<Tokens, AuthError> {
        let admin_token = load_or_create_token(&dir.join("admin-token"))?;
        let join_token = load_or_create_token(&dir.join("join-token"))?;
        Ok(Tokens {
            admin: digest(&admin_token),
            join: digest(&join_token),
            admin_token,
            join_token,
        })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// What agents present to join, and what the master presents to agents
    /// when it proxies logs and exec to them.
    pub fn join_token(&self) -> &str {
        &self.join_token
    }

    /// The identity behind an `Authorization` header value, if any. Every
    /// candidate is compared so the time taken does not tell which matched.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<Identity> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        let d = digest(token);
        let admin = ct_eq(&d, &self.admin);
        let join = ct_eq(&d, &self.join);
        match (admin, join) {
            (true, _) => Some(Identity::Admin),
            (false, true) => Some(Identity::Node),
            _ => None,
        }
    }
}

/// Writes `DIR/admin.kubeconfig`: the server, its CA inline and the admin
/// token, usable as is by `kubectl --kubeconfig` and `corral --kubeconfig`.
/// Rewritten on every start since the server address may have changed.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    token: &str,
) -> Result<(), AuthError> {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: corral
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {token}
contexts:
- name: corral
  context:
    cluster: corral
    user: admin
    namespace: default
current-context: corral
"
    );
    files::write_private(path, text.as_bytes()).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_persist_and_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::load_or_create(dir.path()).unwrap();
        let join = fs::read_to_string(dir.path().join("join-token")).unwrap();
        let admin = t.admin_token().to_string();
        assert_eq!(admin.len(), 64);
        assert_eq!(
            t.authenticate(Some(&format!("Bearer {admin}"))),
            Some(Identity::Admin)
        );
        assert_eq!(
            t.authenticate(Some(&format!("Bearer {}", join.trim()))),
            Some(Identity::Node)
        );
        assert_eq!(t.authenticate(None), None);
        assert_eq!(t.authenticate(Some("Bearer ")), None);
        assert_eq!(t.authenticate(Some(&format!("Basic {admin}"))), None);
        assert_eq!(t.authenticate(Some(&format!("Bearer {admin}x"))), None);
        let again = Tokens::load_or_create(dir.path()).unwrap();
        assert_eq!(again.admin_token(), admin);
        fs::write(dir.path().join("join-token"), "short").unwrap();
        assert!(matches!(
            Tokens::load_or_create(dir.path()),
            Err(AuthError::BadToken { .. })
        ));
    }
}
