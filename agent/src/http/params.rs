//! Query strings as Kubernetes clients send them: repeated keys
//! (`command=sh&command=-c`) and Go's boolean spellings.

use corral_api::Status;

pub(super) struct Params(Vec<(String, String)>);

impl Params {
    pub(super) fn parse(query: &str) -> Result<Params, Box<Status>> {
        let mut out = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((decode(k)?, decode(v)?));
        }
        Ok(Params(out))
    }

    /// The last value of `key`.
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub(super) fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A boolean as Go's strconv.ParseBool reads it; absent is false.
    pub(super) fn flag(&self, key: &str) -> Result<bool, Box<Status>> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
            Some("" | "0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
            Some(v) => Err(Box::new(Status::bad_request(format!(
                "{key}: invalid boolean value {v:?}"
            )))),
        }
    }
}

/// Percent-decoding with `+` as a space (application/x-www-form-urlencoded).
fn decode(s: &str) -> Result<String, Box<Status>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad(format!("invalid escape in query {s:?}")))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad(format!("query {s:?} is not UTF-8")))
}

fn bad(message: String) -> Box<Status> {
    Box::new(Status::bad_request(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_and_escapes() {
        let p = Params::parse("command=sh&command=-c&command=echo+a%20b%26&stdin=1&tty").unwrap();
        assert_eq!(p.all("command"), ["sh", "-c", "echo a b&"]);
        assert!(p.flag("stdin").unwrap());
        assert!(!p.flag("tty").unwrap());
        assert!(!p.flag("stdout").unwrap());
        assert!(Params::parse("a=%zz").is_err());
        assert!(Params::parse("a=%f").is_err());
        assert!(Params::parse("a=%ff").is_err(), "not UTF-8");
    }
}
