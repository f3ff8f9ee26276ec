//! The API server's side of Service addresses: the allocation hook run by
//! create and update (see [`crate::ipalloc`]) and the `kubernetes` Service.

use std::net::SocketAddr;

use corral_api::resource;
use corral_api::Status;
use serde_json::{json, Value};

use super::objects::meta_str;
use super::response::{ApiError, ApiResult};
use super::Api;
use crate::ipalloc::AllocError;

impl Api {
    /// Fills in `new`'s clusterIP and node ports (`old`: the stored Service
    /// on update). Hold the guard until `new` is stored.
    pub async fn allocate_service(
        &self,
        new: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<tokio::sync::MutexGuard<'_, ()>> {
        let name = meta_str(new, "name").to_string();
        self.services
            .allocate(self.store.as_ref(), new, old)
            .await
            .map_err(|e| match e {
                AllocError::Invalid(errs) => Status::invalid("", "Service", &name, &errs).into(),
                other => ApiError::from(Status::internal_error(other)),
            })
    }

    /// The `kubernetes` Service in `default` on the service network's first
    /// address, and its Endpoints pointing at this master (rewritten when
    /// the master's address changed).
    pub async fn ensure_kubernetes_service(&self, addr: SocketAddr) -> ApiResult<()> {
        let info = |plural| {
            resource::by_plural("", plural)
                .ok_or_else(|| ApiError::from(Status::internal_error(format!("no {plural} kind"))))
        };
        let ip = self.services.network().kubernetes_ip().to_string();
        let svc = json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": [
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": addr.port()}]},
        });
        match self
            .create_value(info("services")?, Some("default"), svc, false)
            .await
        {
            Ok(_) => {}
            Err(e) if e.0.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        let subsets = json!([{
            "addresses": [{"ip": addr.ip().to_string()}],
            "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}],
        }]);
        let endpoints = info("endpoints")?;
        match self.get_stored(endpoints, "default", "kubernetes").await {
            Ok(old) if old.value.get("subsets") == Some(&subsets) => Ok(()),
            Ok(old) => {
                let mut v = old.value.clone();
                v["subsets"] = subsets;
                super::objects::meta_mut(&mut v).remove("resourceVersion");
                self.write_update(endpoints, &old, v, false)
                    .await
                    .map(|_| ())
            }
            Err(e) if e.0.is_not_found() => {
                let ep = json!({"metadata": {"name": "kubernetes", "namespace": "default"},
                                "subsets": subsets});
                self.create_value(endpoints, Some("default"), ep, false)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        }
    }
}
