use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Buf, BytesMut};
use corral_api::{Resource, Status};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

/// One change from a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    /// Nothing changed up to this resourceVersion (resume from it).
    Bookmark {
        resource_version: String,
    },
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

/// The events of one watch request, one JSON document per line.
pub struct WatchStream<T> {
    body: ByteStream,
    buf: BytesMut,
    what: String,
    done: bool,
    _kind: PhantomData<fn() -> T>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    type_: String,
    object: Value,
}

impl<T: Resource> WatchStream<T> {
    pub(crate) fn new(resp: reqwest::Response, what: String) -> WatchStream<T> {
        WatchStream {
            body: Box::pin(resp.bytes_stream()),
            buf: BytesMut::new(),
            what,
            done: false,
            _kind: PhantomData,
        }
    }

    /// The next event; None when the server ended the watch. After an error
    /// (a 410 among them) the stream is over.
    pub async fn next(&mut self) -> Option<Result<WatchEvent<T>, Error>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(line) = self.take_line() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev = parse_event(&line, &self.what);
                self.done = ev.is_err();
                return Some(ev);
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(Error::http(&self.what, &e)));
                }
                None => {
                    self.done = true;
                    return None;
                }
            }
        }
    }

    fn take_line(&mut self) -> Option<Vec<u8>> {
        let end = self.buf.iter().position(|&b| b == b'\n')?;
        let line = self.buf[..end].to_vec();
        self.buf.advance(end + 1);
        Some(line)
    }
}

fn parse_event<T: Resource>(line: &[u8], what: &str) -> Result<WatchEvent<T>, Error> {
    let decode_err = |m: String| Error::Decode {
        what: format!("{what}: an event"),
        message: m,
    };
    let raw: RawEvent = serde_json::from_slice(line).map_err(|e| decode_err(e.to_string()))?;
    if raw.type_ == "ERROR" {
        let status: Status =
            serde_json::from_value(raw.object).map_err(|e| decode_err(e.to_string()))?;
        return Err(Error::Api(Box::new(status)));
    }
    if raw.type_ == "BOOKMARK" {
        let rv = raw.object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Ok(WatchEvent::Bookmark {
            resource_version: rv,
        });
    }
    let mut obj: T = serde_json::from_value(raw.object).map_err(|e| decode_err(e.to_string()))?;
    obj.set_type_meta();
    match raw.type_.as_str() {
        "ADDED" => Ok(WatchEvent::Added(obj)),
        "MODIFIED" => Ok(WatchEvent::Modified(obj)),
        "DELETED" => Ok(WatchEvent::Deleted(obj)),
        other => Err(decode_err(format!("unknown event type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::core::Pod;

    #[test]
    fn parses_each_event_type() {
        let ev: WatchEvent<Pod> = parse_event(
            br#"{"type":"ADDED","object":{"metadata":{"name":"a","namespace":"d"}}}"#,
            "w",
        )
        .unwrap();
        match ev {
            WatchEvent::Added(p) => {
                assert_eq!(p.metadata.name, "a");
                assert_eq!(p.kind, "Pod");
            }
            other => panic!("{other:?}"),
        }
        let bm: WatchEvent<Pod> = parse_event(
            br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"42"}}}"#,
            "w",
        )
        .unwrap();
        assert_eq!(
            bm,
            WatchEvent::Bookmark {
                resource_version: "42".into()
            }
        );
    }

    #[test]
    fn error_event_is_the_servers_status() {
        let e = parse_event::<Pod>(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old"}}"#,
            "w",
        )
        .unwrap_err();
        assert!(e.is_gone(), "{e:?}");
    }

    #[test]
    fn garbage_is_a_decode_error_naming_the_watch() {
        let e = parse_event::<Pod>(b"{nope", "watching /api/v1/pods").unwrap_err();
        assert!(e.to_string().contains("watching /api/v1/pods"), "{e}");
    }
}
