//! The master's own PKI: a CA and a serving certificate made on first start
//! under `DATA_DIR/pki/`, and the rustls server configuration built from them.
//!
//! The CA key never leaves the data dir; clients trust `ca.crt` (it is also
//! inlined into admin.kubeconfig). When the set of names the master must
//! answer to changes (another `--listen` host or `--advertise-address`), the
//! serving certificate is issued again by the same CA, so existing clients
//! keep working.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::files;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("generating {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("{path}: not a valid PEM {what}: {message}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
    #[error("building the TLS server configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// What the server needs: the CA to hand to clients and the serving config.
pub struct Pki {
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

const CA_NAME: &str = "corral-ca";
/// Ten years, as kubeadm's CA; the serving cert is reissued by the CA on demand.
const VALID_YEARS: i32 = 10;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn gen(what: &'static str) -> impl FnOnce(rcgen::Error) -> TlsError {
    move |source| TlsError::Generate { what, source }
}

/// From 00:00 UTC today (always in the past) for ten years.
fn set_validity(params: &mut CertificateParams) {
    let now = corral_api::Time::now().to_string();
    let year: i32 = now.get(0..4).and_then(|s| s.parse().ok()).unwrap_or(2025);
    let month: u8 = now.get(5..7).and_then(|s| s.parse().ok()).unwrap_or(1);
    let day: u8 = now.get(8..10).and_then(|s| s.parse().ok()).unwrap_or(1);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, month, day.min(28));
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    set_validity(&mut params);
    params
}

/// Loads the PKI under `dir/pki`, creating what is missing. `names` are the
/// serving certificate's subject alternative names (IP addresses or DNS names).
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Pki, TlsError> {
    let pki = dir.join("pki");
    fs::create_dir_all(&pki).map_err(io_err(&pki))?;
    let (ca_crt, ca_key) = (pki.join("ca.crt"), pki.join("ca.key"));
    let (srv_crt, srv_key, srv_names) = (
        pki.join("server.crt"),
        pki.join("server.key"),
        pki.join("server.names"),
    );
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(gen("the CA key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(gen("the CA certificate"))?;
        files::write_private(&ca_key, key.serialize_pem().as_bytes()).map_err(io_err(&ca_key))?;
        files::write_atomic(&ca_crt, cert.pem().as_bytes(), 0o644).map_err(io_err(&ca_crt))?;
        // A new CA invalidates any serving certificate left from before.
        let _ = fs::remove_file(&srv_names);
    }
    let wanted = names.join("\n");
    let current = fs::read_to_string(&srv_names).unwrap_or_default();
    if current != wanted || !srv_crt.exists() || !srv_key.exists() {
        issue_server_cert(&ca_key, &srv_crt, &srv_key, names)?;
        files::write_atomic(&srv_names, wanted.as_bytes(), 0o644).map_err(io_err(&srv_names))?;
    }
    let ca_pem = fs::read_to_string(&ca_crt).map_err(io_err(&ca_crt))?;
    let server_config = server_config(&srv_crt, &srv_key)?;
    Ok(Pki {
        ca_pem,
        server_config,
    })
}

fn issue_server_cert(
    ca_key_path: &Path,
    crt: &Path,
    key: &Path,
    names: &[String],
) -> Result<(), TlsError> {
    let ca_key_pem = fs::read_to_string(ca_key_path).map_err(io_err(ca_key_path))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(|e| TlsError::Pem {
        path: ca_key_path.to_path_buf(),
        what: "private key",
        message: e.to_string(),
    })?;
    // The same subject and key as the stored CA certificate, so what it signs
    // verifies against the stored one.
    let ca = ca_params()
        .self_signed(&ca_key)
        .map_err(gen("the CA certificate"))?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(gen("the serving names"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "corral-master");
    params.distinguished_name = dn;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    set_validity(&mut params);
    let server_key = KeyPair::generate().map_err(gen("the serving key"))?;
    let cert = params
        .signed_by(&server_key, &ca, &ca_key)
        .map_err(gen("the serving certificate"))?;
    files::write_private(key, server_key.serialize_pem().as_bytes()).map_err(io_err(key))?;
    files::write_atomic(crt, cert.pem().as_bytes(), 0o644).map_err(io_err(crt))?;
    Ok(())
}

fn server_config(crt: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pem_err = |path: &Path, what| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            path,
            what,
            message: e.to_string(),
        }
    };
    let certs = CertificateDer::pem_file_iter(crt)
        .map_err(pem_err(crt, "certificate"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err(crt, "certificate"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_err(key, "private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The serving certificate's names: loopback, `localhost`, the listen host
/// (unless it is the any-address) and the advertised address.
pub fn serving_names(listen: std::net::SocketAddr, advertise: Option<&str>) -> Vec<String> {
    let mut names = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend(advertise.map(str::to_string));
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_and_reissues_on_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let names = serving_names("127.0.0.1:6443".parse().unwrap(), None);
        assert_eq!(names, ["127.0.0.1", "localhost"]);
        let a = load_or_create(dir.path(), &names).unwrap();
        let key = fs::read(dir.path().join("pki/server.key")).unwrap();
        let b = load_or_create(dir.path(), &names).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(fs::read(dir.path().join("pki/server.key")).unwrap(), key);
        let more = serving_names("10.1.2.3:6443".parse().unwrap(), Some("master.example"));
        let c = load_or_create(dir.path(), &more).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem);
        assert_ne!(fs::read(dir.path().join("pki/server.key")).unwrap(), key);
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("pki/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
