//! Response bodies and the error type every handler returns.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use corral_api::Status;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as HttpBody, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

pub type Body = BoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

/// A failed request: the Status object sent to the client.
#[derive(Debug)]
pub struct ApiError(pub Box<Status>);

impl From<Status> for ApiError {
    fn from(s: Status) -> ApiError {
        ApiError(Box::new(s))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn bytes_response(code: u16, content_type: &str, bytes: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(bytes));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

pub fn json<T: Serialize + ?Sized>(code: u16, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => bytes_response(code, "application/json", body),
        Err(e) => status(&Status::internal_error(format!(
            "encoding the response: {e}"
        ))),
    }
}

pub fn status(s: &Status) -> Resp {
    let code = u16::try_from(s.code).unwrap_or(500);
    json(code, s)
}

impl ApiError {
    pub fn into_response(self) -> Resp {
        status(&self.0)
    }
}

/// A streamed body fed by a channel: watch events as they happen. The
/// sender sees `closed()` once the client is gone.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    pub fn new(buffer: usize) -> (mpsc::Sender<Bytes>, ChannelBody) {
        let (tx, rx) = mpsc::channel(buffer);
        (tx, ChannelBody { rx })
    }
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
