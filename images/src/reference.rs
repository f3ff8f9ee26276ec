//! Image references, parsed and normalized the way Docker does
//! (github.com/distribution/reference): `busybox` is
//! `docker.io/library/busybox:latest`, a first component with a `.` or `:` or
//! equal to `localhost` is a registry, `@sha256:` pins a manifest digest.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::Error;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `quay.io`, `127.0.0.1:5000`, `[::1]:5000`.
    pub registry: String,
    /// `library/busybox`, `org/app`.
    pub repository: String,
    /// `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form users type and `ls` shows: `busybox:latest`,
    /// `org/app:1.0`, `127.0.0.1:5000/app:1.0`.
    pub fn familiar(&self) -> String {
        let mut name = if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .filter(|rest| !rest.contains('/'))
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        push_tag_and_digest(&mut name, self);
        name
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository pinned to `digest` (no tag), as Docker's RepoDigests.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }
}

fn push_tag_and_digest(name: &mut String, r: &Reference) {
    if let Some(tag) = &r.tag {
        name.push(':');
        name.push_str(tag);
    }
    if let Some(d) = &r.digest {
        name.push('@');
        name.push_str(&d.to_string());
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        push_tag_and_digest(&mut s, self);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference, Error> {
        parse(s).map_err(|reason| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        })
    }
}

fn parse(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("empty reference".into());
    }
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("a 64-character hex string is an image id, not a reference".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, d)) => (rest, Some(d.parse::<Digest>().map_err(|e| e.to_string())?)),
        None => (s, None),
    };
    let (name, tag) = split_tag(rest);
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    let (registry, repository) = split_registry(name)?;
    check_registry(&registry)?;
    check_repository(&repository)?;
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(format!("name longer than {MAX_NAME_LEN} characters"));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_TAG.to_string()),
    };
    Ok(Reference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// A `:` after the last `/` starts the tag; one before it is a registry port.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_slash..].rfind(':') {
        Some(i) => (&s[..last_slash + i], Some(&s[last_slash + i + 1..])),
        None => (s, None),
    }
}

fn split_registry(name: &str) -> Result<(String, String), String> {
    if name.is_empty() {
        return Err("missing repository name".into());
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if is_registry(first) => (first.to_string(), rest.to_string()),
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" {
        DEFAULT_REGISTRY.to_string()
    } else {
        registry
    };
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((registry, repository))
}

fn is_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn check_tag(tag: &str) -> Result<(), String> {
    let valid_first = tag
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let valid_rest = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if tag.is_empty() {
        return Err("empty tag after ':'".into());
    }
    if !valid_first || !valid_rest || tag.len() > MAX_TAG_LEN {
        return Err(format!(
            "invalid tag {tag:?}: use up to {MAX_TAG_LEN} of [A-Za-z0-9_.-], not starting with . or -"
        ));
    }
    Ok(())
}

fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = split_host_port(registry)?;
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
            return Err(format!("invalid registry port {port:?} in {registry:?}"));
        }
    }
    if host.starts_with('[') {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(label_ok) {
        return Err(format!("invalid registry host {host:?}"));
    }
    Ok(())
}

fn split_host_port(registry: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = registry.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or_else(|| format!("unterminated '[' in registry {registry:?}"))?;
        let host = &registry[..end + 2];
        return match &registry[end + 2..] {
            "" => Ok((host, None)),
            p => match p.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("junk after ']' in registry {registry:?}")),
            },
        };
    }
    Ok(match registry.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (registry, None),
    })
}

fn check_repository(repo: &str) -> Result<(), String> {
    for component in repo.split('/') {
        check_component(component)?;
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_component(c: &str) -> Result<(), String> {
    if c.is_empty() {
        return Err("empty path component (double or trailing '/')".into());
    }
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!("repository name {c:?} must be lowercase"));
    }
    let bad = || {
        format!(
            "invalid repository component {c:?}: use [a-z0-9] separated by '.', '_', '__' or '-'"
        )
    };
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            (
                "library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            ("org/app", "docker.io/org/app:latest", "org/app:latest"),
            (
                "quay.io/org/app:v1",
                "quay.io/org/app:v1",
                "quay.io/org/app:v1",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/app:t",
                "localhost:5000/app:t",
                "localhost:5000/app:t",
            ),
            (
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000/a/b/c:t",
                "127.0.0.1:5000/a/b/c:t",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
            ("Registry/app", "Registry/app:latest", "Registry/app:latest"),
            (
                "a.b-c/e_f--g__h",
                "a.b-c/e_f--g__h:latest",
                "a.b-c/e_f--g__h:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r: Reference = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(
                r.to_string().parse::<Reference>().unwrap(),
                r,
                "{input} reparse"
            );
        }
    }

    #[test]
    fn fields_of_host_port_and_digest() {
        let r: Reference = "127.0.0.1:5000/repo:tag".parse().unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "repo");
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.digest, None);
        assert_eq!(r.manifest_ref(), "tag");

        let r: Reference = format!("busybox@{D}").parse().unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_ref().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));
        assert_eq!(r.manifest_ref(), D);

        let r: Reference = format!("host:1/x:v1@{D}").parse().unwrap();
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.manifest_ref(), D, "the digest wins over the tag");
        assert_eq!(
            r.with_digest(r.digest.clone().unwrap()).to_string(),
            format!("host:1/x@{D}")
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        let cases = [
            ("", "empty reference"),
            ("BusyBox", "must be lowercase"),
            ("busybox:", "empty tag"),
            ("busybox:-x", "invalid tag"),
            ("busybox:a/b", "invalid registry port"),
            ("busybox@sha256:abc", "64 hex characters"),
            ("busybox@md5:abc", "unsupported algorithm"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("host:5000/", "empty path component"),
            ("bad_host_:5000/x", "invalid registry"),
            ("host:50x0/app", "invalid registry port"),
            ("-a", "invalid repository component"),
            ("a..b", "invalid repository component"),
            ("a___b", "invalid repository component"),
            ("[::1/app", "unterminated"),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "image id",
            ),
        ];
        for (input, why) in cases {
            let err = match input.parse::<Reference>() {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(why), "{input:?}: {err}");
            assert!(
                err.contains(&format!("{input:?}")),
                "names the input: {err}"
            );
        }
        let long = format!("{}:1", "a".repeat(300));
        assert!(long
            .parse::<Reference>()
            .unwrap_err()
            .to_string()
            .contains("longer than"));
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(long_tag.parse::<Reference>().is_err());
    }
}
