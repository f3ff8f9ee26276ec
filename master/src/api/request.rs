//! One request as the handlers see it: method, path, decoded query, the
//! headers that matter, and the whole body (already size-checked).

use std::collections::HashMap;

use bytes::Bytes;
use corral_api::Status;
use hyper::Method;
use serde_json::Value;

use super::response::{ApiError, ApiResult};

pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub body: Bytes,
}

impl Request {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// `?watch=1`, `?watch=true`.
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.param(name), Some("1" | "true" | "True"))
    }

    /// The media type without parameters, lower-case.
    pub fn media_type(&self) -> String {
        self.content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// kubectl's `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`.
    pub fn wants_table(&self) -> bool {
        self.accept.split(',').next().is_some_and(|first| {
            let first = first.replace(' ', "");
            first.contains("as=Table") && first.contains("g=meta.k8s.io")
        })
    }

    /// `?dryRun=All`: validate and answer as if done, store nothing.
    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.param("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(Status::bad_request(format!(
                "invalid dryRun value {other:?}: the only supported value is \"All\""
            ))
            .into()),
        }
    }

    /// The body as any JSON value (a JSON patch is an array).
    pub fn body_json(&self) -> ApiResult<Value> {
        if self.body.is_empty() {
            return Err(Status::bad_request("the request body is empty").into());
        }
        serde_json::from_slice::<Value>(&self.body).map_err(|e| {
            ApiError::from(Status::bad_request(format!(
                "the body is not valid JSON: {e}"
            )))
        })
    }

    /// The body as a JSON value, reading YAML for YAML media types.
    pub fn body_value(&self) -> ApiResult<Value> {
        let media = self.media_type();
        if self.body.is_empty() {
            return Err(Status::bad_request("the request body is empty").into());
        }
        let yaml = media.ends_with("yaml");
        let parsed = if yaml {
            let text = std::str::from_utf8(&self.body)
                .map_err(|_| ApiError::from(Status::bad_request("the body is not UTF-8")))?;
            yaml_serde::from_str::<Value>(text).map_err(|e| e.to_string())
        } else {
            serde_json::from_slice::<Value>(&self.body).map_err(|e| e.to_string())
        };
        let value = parsed.map_err(|e| {
            let format = if yaml { "YAML" } else { "JSON" };
            ApiError::from(Status::bad_request(format!(
                "the body is not valid {format}: {e}"
            )))
        })?;
        if !value.is_object() {
            return Err(Status::bad_request("the body must be a JSON object").into());
        }
        Ok(value)
    }
}

pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}
