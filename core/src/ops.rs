//! `/healthz` and `/readyz`.

use diesel_async::RunQueryDsl;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use scoped_futures::ScopedFutureExt;

use crate::error::Error;
use crate::http::ApiResult;
use crate::{ApiTags, Kernel};

#[derive(Debug, Object)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[derive(Debug, Clone, Copy)]
pub struct OpsApi;

#[OpenApi(tag = "ApiTags::Operations")]
impl OpsApi {
    /// Liveness: the process is serving
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health {
            status: "ok".into(),
        })
    }

    /// Readiness: the database answers
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, kernel: Data<&Kernel>) -> ApiResult<Json<Health>> {
        kernel
            .db
            .unscoped(|conn| {
                async move {
                    diesel::sql_query("SELECT 1")
                        .execute(conn)
                        .await
                        .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await
            .map_err(|_| Error::Unavailable)?;
        Ok(Json(Health {
            status: "ok".into(),
        }))
    }
}
