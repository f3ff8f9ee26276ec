use corral_api::Status;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a failure `Status` (its code, reason, message).
    #[error("{} ({})", .0.message, .0.code)]
    Api(Box<Status>),
    #[error("{what}: {message}")]
    Http { what: String, message: String },
    #[error("{what}: {message}")]
    Decode { what: String, message: String },
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// The HTTP status code of a server failure.
    pub fn code(&self) -> Option<i32> {
        match self {
            Error::Api(s) => Some(s.code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Api(s) if s.is_conflict())
    }

    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::Api(s) if s.is_already_exists())
    }

    /// The resourceVersion asked for was compacted away: list again.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    pub(crate) fn http(what: &str, e: &reqwest::Error) -> Error {
        Error::Http {
            what: what.to_string(),
            message: chain(e),
        }
    }
}

impl From<crate::kubeconfig::Error> for Error {
    fn from(e: crate::kubeconfig::Error) -> Error {
        Error::Config(e.0)
    }
}

/// An error with its causes on one line (reqwest hides the TLS or connect
/// reason in the source chain).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}
