//! Kubeconfig files as kubectl reads them: clusters, users and contexts by
//! name, the current-context, and the namespace of a context. Kept as a JSON
//! value so `config view` and `use-context` write back every field, also the
//! ones corral does not use.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// What is wrong with a kubeconfig (or that none was found), in one line
/// naming the file and the entry.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    fn msg(m: impl Into<String>) -> Error {
        Error(m.into())
    }
}

/// What master `admin.kubeconfig` says when no other file exists.
const MASTER_KUBECONFIG: &str = "/var/lib/corral/master/admin.kubeconfig";

/// User fields that hold secrets: redacted by `config view`.
const SECRET_FIELDS: &[&str] = &["token", "client-key-data", "password"];

pub struct Kubeconfig {
    pub path: PathBuf,
    pub doc: Value,
}

/// The chosen context, resolved.
pub struct Target {
    pub context: String,
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub token: Option<String>,
    pub user: String,
    pub namespace: Option<String>,
}

/// `--kubeconfig`/$KUBECONFIG (first existing entry of a `:` list), else
/// ~/.kube/config, else the master's admin.kubeconfig.
pub fn locate(flag: Option<&str>) -> Result<PathBuf, Error> {
    if let Some(list) = flag.filter(|s| !s.is_empty()) {
        let paths: Vec<&str> = list.split(':').filter(|s| !s.is_empty()).collect();
        return paths
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .or_else(|| paths.first().map(PathBuf::from))
            .ok_or_else(|| Error::msg("empty kubeconfig path"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".kube/config");
        if p.exists() {
            return Ok(p);
        }
    }
    let p = PathBuf::from(MASTER_KUBECONFIG);
    if p.exists() {
        return Ok(p);
    }
    Err(Error::msg(
        "no kubeconfig: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config \
         (corral-master writes DATA_DIR/admin.kubeconfig)",
    ))
}

impl Kubeconfig {
    pub fn load(path: &Path) -> Result<Kubeconfig, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::msg(format!("reading kubeconfig {}: {e}", path.display())))?;
        let doc: Value = yaml_serde::from_str(&text)
            .map_err(|e| Error::msg(format!("parsing kubeconfig {}: {e}", path.display())))?;
        if !doc.is_object() {
            return Err(Error::msg(format!(
                "kubeconfig {}: not a mapping",
                path.display()
            )));
        }
        Ok(Kubeconfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    pub fn current_context(&self) -> &str {
        self.doc["current-context"].as_str().unwrap_or("")
    }

    /// `section` (`clusters`, `users`, `contexts`) entry `name`'s inner map.
    fn entry(&self, section: &str, inner: &str, name: &str) -> Option<&Value> {
        self.doc[section]
            .as_array()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .map(|e| &e[inner])
    }

    pub fn has_context(&self, name: &str) -> bool {
        self.entry("contexts", "context", name).is_some()
    }

    pub fn resolve(&self, context: Option<&str>) -> Result<Target, Error> {
        let where_ = self.path.display();
        let name = context.unwrap_or_else(|| self.current_context());
        if name.is_empty() {
            return Err(Error::msg(format!(
                "kubeconfig {where_}: no current-context and no --context"
            )));
        }
        let ctx = self.entry("contexts", "context", name).ok_or_else(|| {
            Error::msg(format!("kubeconfig {where_}: context {name:?} not found"))
        })?;
        let cluster_name = ctx["cluster"].as_str().unwrap_or("");
        let user_name = ctx["user"].as_str().unwrap_or("").to_string();
        let cluster = self
            .entry("clusters", "cluster", cluster_name)
            .ok_or_else(|| {
                Error::msg(format!(
                    "kubeconfig {where_}: cluster {cluster_name:?} of context {name:?} not found"
                ))
            })?;
        let server = cluster["server"].as_str().unwrap_or("").to_string();
        if server.is_empty() {
            return Err(Error::msg(format!(
                "kubeconfig {where_}: cluster {cluster_name:?} has no server"
            )));
        }
        let user = self
            .entry("users", "user", &user_name)
            .cloned()
            .unwrap_or(Value::Null);
        Ok(Target {
            context: name.to_string(),
            server: server.trim_end_matches('/').to_string(),
            ca_pem: self.ca_pem(cluster)?,
            insecure: cluster["insecure-skip-tls-verify"].as_bool() == Some(true),
            token: self.token(&user)?,
            user: user_name,
            namespace: ctx["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    fn ca_pem(&self, cluster: &Value) -> Result<Option<Vec<u8>>, Error> {
        use base64::Engine;
        if let Some(data) = cluster["certificate-authority-data"].as_str() {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    Error::msg(format!(
                        "kubeconfig {}: certificate-authority-data: {e}",
                        self.path.display()
                    ))
                })?;
            return Ok(Some(pem));
        }
        match cluster["certificate-authority"].as_str() {
            Some(file) => {
                let p = self.relative(file);
                std::fs::read(&p)
                    .map(Some)
                    .map_err(|e| Error::msg(format!("certificate-authority {}: {e}", p.display())))
            }
            None => Ok(None),
        }
    }

    fn token(&self, user: &Value) -> Result<Option<String>, Error> {
        if let Some(t) = user["token"].as_str() {
            return Ok(Some(t.trim().to_string()));
        }
        match user["tokenFile"].as_str() {
            Some(file) => {
                let p = self.relative(file);
                std::fs::read_to_string(&p)
                    .map(|t| Some(t.trim().to_string()))
                    .map_err(|e| Error::msg(format!("tokenFile {}: {e}", p.display())))
            }
            None => Ok(None),
        }
    }

    /// Paths in a kubeconfig are relative to the file (kubectl's rule).
    fn relative(&self, file: &str) -> PathBuf {
        match self.path.parent() {
            Some(dir) if Path::new(file).is_relative() => dir.join(file),
            _ => PathBuf::from(file),
        }
    }

    /// The document with user secrets replaced (what `config view` prints).
    pub fn redacted(&self) -> Value {
        let mut doc = self.doc.clone();
        if let Some(users) = doc["users"].as_array_mut() {
            for u in users {
                if let Some(user) = u["user"].as_object_mut() {
                    for f in SECRET_FIELDS {
                        if let Some(v) = user.get_mut(*f) {
                            *v = Value::from("REDACTED");
                        }
                    }
                }
            }
        }
        if let Some(clusters) = doc["clusters"].as_array_mut() {
            for c in clusters {
                if let Some(v) = c["cluster"].get_mut("certificate-authority-data") {
                    *v = Value::from("DATA+OMITTED");
                }
            }
        }
        doc
    }

    /// Sets current-context and rewrites the file (temp file + rename, mode kept).
    pub fn use_context(&mut self, name: &str) -> Result<(), Error> {
        if !self.has_context(name) {
            return Err(Error::msg(format!(
                "no context exists with the name: {name:?}"
            )));
        }
        self.doc["current-context"] = Value::from(name);
        let text = yaml_serde::to_string(&self.doc)
            .map_err(|e| Error::msg(format!("serializing kubeconfig: {e}")))?;
        let tmp = self.path.with_extension("corral-tmp");
        let mode = std::fs::metadata(&self.path).map(|m| m.permissions());
        let write = || -> std::io::Result<()> {
            std::fs::write(&tmp, &text)?;
            if let Ok(perm) = &mode {
                std::fs::set_permissions(&tmp, perm.clone())?;
            }
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| Error::msg(format!("writing {}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: corral
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: aGVsbG8=
users:
- name: admin
  user:
    token: s3cret
contexts:
- name: corral
  context:
    cluster: corral
    user: admin
    namespace: shop
- name: other
  context:
    cluster: missing
    user: admin
current-context: corral
";

    fn load(text: &str) -> Kubeconfig {
        Kubeconfig {
            path: PathBuf::from("/nonexistent/config"),
            doc: yaml_serde::from_str(text).unwrap(),
        }
    }

    #[test]
    fn resolves_the_current_context() {
        let t = load(CONFIG).resolve(None).unwrap();
        assert_eq!(t.server, "https://127.0.0.1:6443");
        assert_eq!(t.ca_pem.as_deref(), Some(&b"hello"[..]));
        assert_eq!(t.token.as_deref(), Some("s3cret"));
        assert_eq!(t.namespace.as_deref(), Some("shop"));
        assert_eq!(t.user, "admin");
    }

    #[test]
    fn a_context_naming_a_missing_cluster_is_an_error() {
        let e = load(CONFIG).resolve(Some("other")).err().unwrap();
        assert!(e.to_string().contains("cluster \"missing\""), "{e}");
        let e = load(CONFIG).resolve(Some("nope")).err().unwrap();
        assert!(e.to_string().contains("context \"nope\" not found"), "{e}");
    }

    #[test]
    fn redaction_hides_tokens_and_ca_data() {
        let text = yaml_serde::to_string(&load(CONFIG).redacted()).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("aGVsbG8="), "{text}");
        assert!(text.contains("REDACTED"), "{text}");
    }
}
