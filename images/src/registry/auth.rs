//! Registry authentication inputs: `WWW-Authenticate` challenges and the
//! credentials file (Docker's `config.json` format, as podman's auth.json).

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::error::Error;
use crate::reference::DEFAULT_REGISTRY;

/// One challenge of a `WWW-Authenticate` header: `Bearer realm="...",service="..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `bearer`, `basic`.
    pub scheme: String,
    /// Parameter names lowercased, values unquoted.
    pub params: HashMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge in a `WWW-Authenticate` value (RFC 7235: a scheme
/// token, then comma-separated `name=value` or `name="quoted, \"value\""`).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut p = Parser { s: header, i: 0 };
    loop {
        p.skip(|c| c == ',' || c.is_whitespace());
        let token = p.token();
        if token.is_empty() {
            if p.at_end() {
                return out;
            }
            p.i += 1;
            continue;
        }
        p.skip(char::is_whitespace);
        if p.peek() == Some('=') && !out.is_empty() {
            p.i += 1;
            p.skip(char::is_whitespace);
            let value = p.value();
            if let Some(last) = out.last_mut() {
                last.params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            out.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: HashMap::new(),
            });
        }
    }
}

struct Parser<'a> {
    s: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.i..].chars().next()
    }

    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn skip(&mut self, f: impl Fn(char) -> bool) {
        while let Some(c) = self.peek().filter(|c| f(*c)) {
            self.i += c.len_utf8();
        }
    }

    fn token(&mut self) -> String {
        let start = self.i;
        self.skip(|c| !(c == '=' || c == ',' || c == '"' || c.is_whitespace()));
        self.s[start..self.i].to_string()
    }

    fn value(&mut self) -> String {
        if self.peek() != Some('"') {
            let start = self.i;
            self.skip(|c| c != ',' && !c.is_whitespace());
            return self.s[start..self.i].to_string();
        }
        self.i += 1;
        let mut value = String::new();
        while let Some(c) = self.peek() {
            self.i += c.len_utf8();
            match c {
                '"' => break,
                '\\' => {
                    if let Some(next) = self.peek() {
                        self.i += next.len_utf8();
                        value.push(next);
                    }
                }
                _ => value.push(c),
            }
        }
        value
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The credentials file to use: `explicit` if given, else `$REGISTRY_AUTH_FILE`,
/// else `~/.config/corral/auth.json`. The bool says whether a missing file is
/// an error (only when the user named it).
pub fn auth_file_path(explicit: Option<&Path>) -> Option<(PathBuf, bool)> {
    if let Some(p) = explicit {
        return Some((p.to_path_buf(), true));
    }
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Some((PathBuf::from(p), false));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    Some((Path::new(&home).join(".config/corral/auth.json"), false))
}

/// Credentials for `registry` (`host[:port]`) from the file at `path`, if any.
pub fn load_credentials(
    path: &Path,
    must_exist: bool,
    registry: &str,
) -> Result<Option<Credentials>, Error> {
    let bad = |reason: String| Error::Credentials {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !must_exist => return Ok(None),
        Err(e) => return Err(bad(format!("cannot read it: {e}"))),
    };
    let file: AuthFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    let Some((key, entry)) = file
        .auths
        .iter()
        .find(|(key, _)| key_matches(key, registry))
    else {
        return Ok(None);
    };
    entry_credentials(entry)
        .map(Some)
        .map_err(|reason| bad(format!("entry {key:?}: {reason}")))
}

/// Keys may be `host:port`, or URLs as `docker login` writes them
/// (`https://index.docker.io/v1/`).
fn key_matches(key: &str, registry: &str) -> bool {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    if host == registry {
        return true;
    }
    registry == DEFAULT_REGISTRY && matches!(host, "index.docker.io" | "registry-1.docker.io")
}

fn entry_credentials(entry: &AuthEntry) -> Result<Credentials, String> {
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("\"auth\" is not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| "\"auth\" is not UTF-8".to_string())?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| "\"auth\" must encode user:password".to_string())?;
        return Ok(Credentials {
            username: user.to_string(),
            password: pass.to_string(),
        });
    }
    match (&entry.username, &entry.password) {
        (Some(u), Some(p)) => Ok(Credentials {
            username: u.clone(),
            password: p.clone(),
        }),
        _ => Err("has neither \"auth\" nor \"username\" and \"password\"".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_scope() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:library/busybox:pull,push")
        );
    }

    #[test]
    fn several_challenges_unquoted_values_escapes_and_case() {
        let c = parse_challenges(
            r#"Basic realm="Registry \"x\"", BEARER Realm=http://127.0.0.1:1/token, service=svc ,error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"Registry "x""#));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("http://127.0.0.1:1/token"));
        assert_eq!(c[1].param("service"), Some("svc"));
        assert_eq!(c[1].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn degenerate_headers_do_not_panic() {
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic")[0].scheme, "basic");
        assert!(parse_challenges(",, ,").is_empty());
        assert_eq!(parse_challenges("=x")[0].scheme, "x");
        let c = parse_challenges(r#"Bearer realm="unterminated"#);
        assert_eq!(c[0].param("realm"), Some("unterminated"));
        let c = parse_challenges("Bearer realm=\"é\",,, service=\"ü\"");
        assert_eq!(c[0].param("service"), Some("ü"));
    }

    fn write(dir: &Path, json: &str) -> PathBuf {
        let p = dir.join("auth.json");
        fs::write(&p, json).unwrap();
        p
    }

    #[test]
    fn credentials_by_host_port_and_docker_hub_aliases() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pa:ss");
        let p = write(
            dir.path(),
            &format!(
                r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}},
                "https://index.docker.io/v1/":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        );
        let c = load_credentials(&p, true, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "pa:ss")
        );
        let c = load_credentials(&p, true, "docker.io").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("bob", "pw"));
        assert_eq!(load_credentials(&p, true, "127.0.0.1:5001").unwrap(), None);
        assert!(!format!("{c:?}").contains("pw"), "Debug hides the password");
    }

    #[test]
    fn bad_credentials_files_name_file_and_entry() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        assert_eq!(load_credentials(&missing, false, "h").unwrap(), None);
        let err = load_credentials(&missing, true, "h")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.json") && err.contains("cannot read"),
            "{err}"
        );

        let p = write(dir.path(), "{not json");
        let err = load_credentials(&p, true, "h").unwrap_err().to_string();
        assert!(
            err.contains("auth.json") && err.contains("invalid JSON"),
            "{err}"
        );

        for (entry, why) in [
            (r#"{"auth":"%%%"}"#, "not base64"),
            (r#"{"auth":"bm9jb2xvbg=="}"#, "user:password"),
            (r#"{"username":"u"}"#, "neither"),
        ] {
            let p = write(dir.path(), &format!(r#"{{"auths":{{"h:1":{entry}}}}}"#));
            let err = load_credentials(&p, true, "h:1").unwrap_err().to_string();
            assert!(err.contains("entry \"h:1\"") && err.contains(why), "{err}");
        }
    }

    #[test]
    fn explicit_auth_file_wins_and_must_exist() {
        let (p, must) = auth_file_path(Some(Path::new("/x/auth.json"))).unwrap();
        assert_eq!(p, Path::new("/x/auth.json"));
        assert!(must);
    }
}
