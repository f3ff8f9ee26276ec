//! The Status object: how the API reports a failure (and a successful delete).
//!
//! Messages, reasons and codes follow Kubernetes' apimachinery `errors`
//! package, so kubectl prints them the way its users expect.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ListMeta;
use crate::skip::is_zero_i32;
use crate::validation::{join_errors, FieldError};

/// `reason` values (metav1.StatusReason).
pub mod reasons {
    pub const NOT_FOUND: &str = "NotFound";
    pub const ALREADY_EXISTS: &str = "AlreadyExists";
    pub const CONFLICT: &str = "Conflict";
    pub const INVALID: &str = "Invalid";
    pub const BAD_REQUEST: &str = "BadRequest";
    pub const UNAUTHORIZED: &str = "Unauthorized";
    pub const FORBIDDEN: &str = "Forbidden";
    pub const GONE: &str = "Gone";
    pub const EXPIRED: &str = "Expired";
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    pub const REQUEST_ENTITY_TOO_LARGE: &str = "RequestEntityTooLarge";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UnsupportedMediaType";
    pub const INTERNAL_ERROR: &str = "InternalError";
    pub const SERVICE_UNAVAILABLE: &str = "ServiceUnavailable";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ListMeta,
    /// "Success" or "Failure".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub code: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    #[serde(skip_serializing_if = "is_zero_i32")]
    pub retry_after_seconds: i32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StatusCause {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

impl Default for Status {
    fn default() -> Status {
        Status {
            api_version: "v1".into(),
            kind: "Status".into(),
            metadata: ListMeta::default(),
            status: String::new(),
            message: String::new(),
            reason: String::new(),
            details: None,
            code: 0,
        }
    }
}

/// `pods` or `deployments.apps`, as Kubernetes names a resource in messages.
fn qualified(group: &str, name: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

impl Status {
    pub fn success() -> Status {
        Status {
            status: "Success".into(),
            ..Status::default()
        }
    }

    pub fn failure(code: i32, reason: &str, message: impl Into<String>) -> Status {
        Status {
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
            ..Status::default()
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Status {
        self.details = Some(StatusDetails {
            name: name.into(),
            group: group.into(),
            kind: kind.into(),
            ..StatusDetails::default()
        });
        self
    }

    /// `pods "web" not found` (resource is the plural, e.g. `pods`).
    pub fn not_found(group: &str, resource: &str, name: &str) -> Status {
        let msg = format!("{} {name:?} not found", qualified(group, resource));
        Status::failure(404, reasons::NOT_FOUND, msg).with_details(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Status {
        let msg = format!("{} {name:?} already exists", qualified(group, resource));
        Status::failure(409, reasons::ALREADY_EXISTS, msg).with_details(group, resource, name)
    }

    /// A stale resourceVersion on update.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Status {
        let msg = format!(
            "Operation cannot be fulfilled on {} {name:?}: {why}",
            qualified(group, resource)
        );
        Status::failure(409, reasons::CONFLICT, msg).with_details(group, resource, name)
    }

    /// The usual `why` of [`Status::conflict`].
    pub const MODIFIED: &'static str =
        "the object has been modified; please apply your changes to the latest version and try again";

    /// `Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: ...`,
    /// with one cause per field error. `kind` is the Kind, e.g. `Pod`.
    pub fn invalid(group: &str, kind: &str, name: &str, errs: &[FieldError]) -> Status {
        let msg = format!(
            "{} {name:?} is invalid: {}",
            qualified(group, kind),
            join_errors(errs)
        );
        let mut s = Status::failure(422, reasons::INVALID, msg).with_details(group, kind, name);
        if let Some(d) = s.details.as_mut() {
            d.causes = errs
                .iter()
                .map(|e| StatusCause {
                    reason: e.cause_type().into(),
                    message: e.body(),
                    field: e.path.to_string(),
                })
                .collect();
        }
        s
    }

    pub fn bad_request(message: impl Into<String>) -> Status {
        Status::failure(400, reasons::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Status {
        let m: String = message.into();
        let m = if m.is_empty() {
            "Unauthorized".into()
        } else {
            m
        };
        Status::failure(401, reasons::UNAUTHORIZED, m)
    }

    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Status {
        let msg = format!(
            "{} {name:?} is forbidden: {why}",
            qualified(group, resource)
        );
        Status::failure(403, reasons::FORBIDDEN, msg).with_details(group, resource, name)
    }

    pub fn gone(message: impl Into<String>) -> Status {
        Status::failure(410, reasons::GONE, message)
    }

    /// A watch or continue token older than the compacted history:
    /// `too old resource version: 12 (340)`.
    pub fn expired(message: impl Into<String>) -> Status {
        Status::failure(410, reasons::EXPIRED, message)
    }

    pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> Status {
        let msg = format!(
            "{verb} is not supported on resources of kind {:?}",
            qualified(group, resource)
        );
        Status::failure(405, reasons::METHOD_NOT_ALLOWED, msg)
    }

    pub fn request_entity_too_large(message: impl Into<String>) -> Status {
        Status::failure(413, reasons::REQUEST_ENTITY_TOO_LARGE, message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Status {
        let msg = format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})");
        Status::failure(415, reasons::UNSUPPORTED_MEDIA_TYPE, msg)
    }

    pub fn internal_error(message: impl fmt::Display) -> Status {
        Status::failure(
            500,
            reasons::INTERNAL_ERROR,
            format!("Internal error occurred: {message}"),
        )
    }

    pub fn service_unavailable(message: impl Into<String>) -> Status {
        Status::failure(503, reasons::SERVICE_UNAVAILABLE, message)
    }

    pub fn is_not_found(&self) -> bool {
        self.reason == reasons::NOT_FOUND
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason == reasons::ALREADY_EXISTS
    }

    pub fn is_conflict(&self) -> bool {
        self.reason == reasons::CONFLICT
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{} ({})", self.reason, self.code)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::Path;

    #[test]
    fn not_found_as_kubernetes_writes_it() {
        let s = Status::not_found("", "pods", "web");
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": "pods \"web\" not found",
                "reason": "NotFound", "details": {"name": "web", "kind": "pods"}, "code": 404
            })
        );
        assert!(s.is_not_found());
        let s = Status::not_found("apps", "deployments", "web");
        assert_eq!(s.message, "deployments.apps \"web\" not found");
    }

    #[test]
    fn invalid_lists_causes() {
        let errs = vec![
            FieldError::required(&Path::new("spec.containers[0].image")),
            FieldError::invalid(
                &Path::new("spec.replicas"),
                -1,
                "must be greater than or equal to 0",
            ),
        ];
        let s = Status::invalid("apps", "Deployment", "web", &errs);
        assert_eq!(s.code, 422);
        assert_eq!(
            s.message,
            "Deployment.apps \"web\" is invalid: [spec.containers[0].image: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]"
        );
        let causes = &s.details.as_ref().unwrap().causes;
        assert_eq!(causes[0].reason, "FieldValueRequired");
        assert_eq!(causes[0].field, "spec.containers[0].image");
        assert_eq!(
            causes[1].message,
            "Invalid value: -1: must be greater than or equal to 0"
        );
    }

    #[test]
    fn constructors_codes() {
        assert_eq!(Status::already_exists("", "pods", "a").code, 409);
        let c = Status::conflict("", "pods", "a", Status::MODIFIED);
        assert_eq!(c.message, "Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again");
        assert_eq!(Status::bad_request("x").reason, "BadRequest");
        assert_eq!(Status::unauthorized("").message, "Unauthorized");
        assert_eq!(Status::gone("x").code, 410);
        assert_eq!(
            Status::expired("too old resource version: 1 (5)").reason,
            "Expired"
        );
        assert_eq!(Status::success().status, "Success");
        let parsed: Status = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(parsed, c);
    }
}
