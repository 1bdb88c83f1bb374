//! The routes: each handler authenticates, reads its input, makes one facade call and answers JSON.
//!
//! The router is built from [`ROUTES`]-shaped calls of [`Routes::add`], which records every
//! (method, path) it serves; a test holds that list equal to the OpenAPI document's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::{Json, Router};
use http_body_util::BodyExt;
use keyward_control::{ControlPlane, NewCluster, Organization};
use serde::Deserialize;

use crate::error::{ApiError, Code};
use crate::{AdminToken, AppState, Limits, Shared, OPENAPI_JSON};

type ApiResult<T = Response> = std::result::Result<T, ApiError>;

/// Every (method, path) the router serves, in axum's path syntax. The OpenAPI document lists
/// exactly these (tested).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/organizations"),
    ("GET", "/v1/organizations/{org}/tokens"),
    ("POST", "/v1/organizations/{org}/tokens"),
    ("DELETE", "/v1/organizations/{org}/tokens/{token_id}"),
    ("POST", "/v1/clusters"),
    ("GET", "/v1/clusters"),
    ("GET", "/v1/clusters/{id}"),
    ("DELETE", "/v1/clusters/{id}"),
    ("GET", "/v1/clusters/{id}/key-policy"),
    ("PUT", "/v1/clusters/{id}/key"),
    ("GET", "/v1/clusters/{id}/verification"),
    ("POST", "/v1/clusters/{id}/health-check"),
    ("GET", "/v1/clusters/{id}/documents"),
    ("PUT", "/v1/clusters/{id}/documents/{*name}"),
    ("GET", "/v1/clusters/{id}/documents/{*name}"),
    ("DELETE", "/v1/clusters/{id}/documents/{*name}"),
    ("POST", "/v1/clusters/{id}/backups"),
    ("GET", "/v1/clusters/{id}/backups"),
    ("POST", "/v1/clusters/{id}/backups/{backup_id}/restore"),
    ("GET", "/v1/clusters/{id}/disks"),
    ("POST", "/v1/clusters/{id}/disk-credentials"),
];

/// The whole API over `plane`. `admin` is the bootstrap token of `POST /v1/organizations`.
pub fn router(plane: ControlPlane, admin: AdminToken, limits: Limits) -> Router {
    let state = AppState(Arc::new(Shared {
        plane,
        admin,
        limits,
        data_permits: Default::default(),
    }));
    let routes = Routes::default()
        .add(Method::GET, "/healthz", healthz)
        .add(Method::GET, "/v1/openapi.json", openapi)
        .add(Method::POST, "/v1/organizations", create_organization)
        .add(Method::GET, "/v1/organizations/{org}/tokens", list_tokens)
        .add(Method::POST, "/v1/organizations/{org}/tokens", create_token)
        .add(
            Method::DELETE,
            "/v1/organizations/{org}/tokens/{token_id}",
            revoke_token,
        )
        .add(Method::POST, "/v1/clusters", create_cluster)
        .add(Method::GET, "/v1/clusters", list_clusters)
        .add(Method::GET, "/v1/clusters/{id}", show_cluster)
        .add(Method::DELETE, "/v1/clusters/{id}", delete_cluster)
        .add(Method::GET, "/v1/clusters/{id}/key-policy", key_policy)
        .add(Method::PUT, "/v1/clusters/{id}/key", associate_key)
        .add(Method::GET, "/v1/clusters/{id}/verification", verify)
        .add(Method::POST, "/v1/clusters/{id}/health-check", health_check)
        .add(Method::GET, "/v1/clusters/{id}/documents", list_documents)
        .add(
            Method::PUT,
            "/v1/clusters/{id}/documents/{*name}",
            put_document,
        )
        .add(
            Method::GET,
            "/v1/clusters/{id}/documents/{*name}",
            get_document,
        )
        .add(
            Method::DELETE,
            "/v1/clusters/{id}/documents/{*name}",
            delete_document,
        )
        .add(Method::POST, "/v1/clusters/{id}/backups", create_backup)
        .add(Method::GET, "/v1/clusters/{id}/backups", list_backups)
        .add(
            Method::POST,
            "/v1/clusters/{id}/backups/{backup_id}/restore",
            restore_backup,
        )
        .add(Method::GET, "/v1/clusters/{id}/disks", list_disks)
        .add(
            Method::POST,
            "/v1/clusters/{id}/disk-credentials",
            disk_credentials,
        );
    debug_assert_eq!(
        routes.served,
        ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
    routes
        .router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

#[derive(Default)]
struct Routes {
    router: Router<AppState>,
    served: Vec<(String, String)>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, on(filter, handler));
        self.served.push((method.to_string(), path.to_owned()));
        self
    }
}

async fn no_route() -> ApiError {
    ApiError::new(
        Code::NotFound,
        "no such route; the routes are listed in GET /v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this route does not take that method; see GET /v1/openapi.json",
    )
}

/// The organization of the request's bearer token.
struct Org(Organization);

fn bearer(parts: &Parts) -> ApiResult<&str> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "no API token: pass `Authorization: Bearer <token>` (`keyward up` prints one)",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not text"))?;
    value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("the Authorization header must be `Bearer <token>`")
        })
}

impl FromRequestParts<AppState> for Org {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Org> {
        let token = bearer(parts)?;
        if state.0.admin.matches(token) {
            return Err(ApiError::unauthenticated(
                "the admin token only manages organizations and their tokens (/v1/organizations); use an organization's token here",
            ));
        }
        Ok(Org(state.0.plane.authenticate(token).await?))
    }
}

/// The organization of a data request, holding one of its [`Limits::max_data_requests_per_org`]
/// permits until the handler (body read included) is done.
struct DataOrg(Organization, tokio::sync::OwnedSemaphorePermit);

/// At most this many organizations have a permit map entry; idle ones are dropped past it.
const MAX_PERMIT_ENTRIES: usize = 4096;

impl FromRequestParts<AppState> for DataOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<DataOrg> {
        // Authenticated first: an unknown token never makes an entry.
        let Org(org) = Org::from_request_parts(parts, state).await?;
        let limit = state.0.limits.max_data_requests_per_org;
        let semaphore = {
            let mut map = state
                .0
                .data_permits
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if map.len() >= MAX_PERMIT_ENTRIES && !map.contains_key(&org.id) {
                // Idle entries (no permit out) are held only by the map.
                map.retain(|_, s| Arc::strong_count(s) > 1);
            }
            Arc::clone(
                map.entry(org.id.clone())
                    .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(limit))),
            )
        };
        match semaphore.try_acquire_owned() {
            Ok(permit) => Ok(DataOrg(org, permit)),
            Err(_) => Err(ApiError {
                code: Code::TooManyRequests,
                message: format!(
                    "organization {} has {limit} data requests in flight, the limit \
                     (max_data_requests_per_org); retry after the ones in flight end",
                    org.id
                ),
                details: Some((
                    "limit",
                    serde_json::json!({"max_data_requests_per_org": limit}),
                )),
            }),
        }
    }
}

/// A request made with the bootstrap admin token.
struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Admin> {
        let token = bearer(parts)?;
        if state.0.admin.matches(token) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthenticated(
                "this route needs the admin token printed by `keyward up`",
            ))
        }
    }
}

/// Reads a whole body of at most `limit` bytes; more is `413 payload_too_large`, refused before
/// reading when `Content-Length` already says so.
async fn read_body(body: Body, limit: usize) -> ApiResult<bytes::Bytes> {
    let too_large = || {
        ApiError::new(
            Code::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(too_large());
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(error) => Err(ApiError::invalid(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(state: &AppState, body: Body) -> ApiResult<T> {
    let bytes = read_body(body, state.0.limits.max_json_bytes).await?;
    serde_json::from_slice(&bytes)
        .map_err(|error| ApiError::invalid(format!("the JSON body is not valid: {error}")))
}

fn json(status: StatusCode, value: impl serde::Serialize) -> Response {
    (status, Json(value)).into_response()
}

fn plane(state: &AppState) -> &ControlPlane {
    &state.0.plane
}

async fn healthz() -> Response {
    json(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrganization {
    name: String,
}

async fn create_organization(_: Admin, State(state): State<AppState>, body: Body) -> ApiResult {
    let request: NewOrganization = read_json(&state, body).await?;
    let (organization, token) = plane(&state).create_organization(&request.name).await?;
    Ok(json(
        StatusCode::CREATED,
        serde_json::json!({"organization": organization, "token": token.expose()}),
    ))
}

async fn list_tokens(
    _: Admin,
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> ApiResult {
    let tokens = plane(&state).list_tokens(&org).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "tokens": tokens }),
    ))
}

async fn create_token(
    _: Admin,
    State(state): State<AppState>,
    Path(org): Path<String>,
) -> ApiResult {
    let (info, token) = plane(&state).create_token(&org).await?;
    let mut body =
        serde_json::to_value(info).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    body["token"] = token.expose().into();
    Ok(json(StatusCode::CREATED, body))
}

async fn revoke_token(
    _: Admin,
    State(state): State<AppState>,
    Path((org, token_id)): Path<(String, String)>,
) -> ApiResult {
    plane(&state).revoke_token(&org, &token_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_cluster(Org(org): Org, State(state): State<AppState>, body: Body) -> ApiResult {
    let request: NewCluster = read_json(&state, body).await?;
    let cluster = plane(&state).create_cluster(&org.id, request).await?;
    Ok(json(StatusCode::CREATED, cluster))
}

async fn list_clusters(Org(org): Org, State(state): State<AppState>) -> ApiResult {
    let clusters = plane(&state).list_clusters(&org.id).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "clusters": clusters }),
    ))
}

async fn show_cluster(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        plane(&state).cluster(&org.id, &id).await?,
    ))
}

async fn delete_cluster(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    plane(&state).delete_cluster(&org.id, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn key_policy(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        plane(&state).key_policy(&org.id, &id).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRequest {
    key_arn: String,
}

async fn associate_key(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let request: KeyRequest = read_json(&state, body).await?;
    let association = plane(&state)
        .associate_key(&org.id, &id, &request.key_arn)
        .await?
        .into_result()?;
    Ok(json(StatusCode::OK, association))
}

async fn verify(Org(org): Org, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        plane(&state).verify(&org.id, &id).await?,
    ))
}

async fn health_check(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json(
        StatusCode::OK,
        plane(&state).check_health_now(&org.id, &id).await?,
    ))
}

async fn list_documents(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let prefix = query.get("prefix").map(String::as_str).unwrap_or("");
    let documents = plane(&state).list_documents(&org.id, &id, prefix).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "documents": documents }),
    ))
}

async fn put_document(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    body: Body,
) -> ApiResult {
    let bytes = read_body(body, state.0.limits.max_document_bytes).await?;
    let info = plane(&state)
        .put_document(&org.id, &id, &name, bytes)
        .await?;
    Ok(json(StatusCode::OK, info))
}

async fn get_document(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    let bytes = plane(&state).get_document(&org.id, &id, &name).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        bytes,
    )
        .into_response())
}

async fn delete_document(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    plane(&state).delete_document(&org.id, &id, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create_backup(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    Ok(json(
        StatusCode::CREATED,
        plane(&state).create_backup(&org.id, &id).await?,
    ))
}

async fn list_backups(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let backups = plane(&state).list_backups(&org.id, &id).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "backups": backups }),
    ))
}

async fn restore_backup(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path((id, backup_id)): Path<(String, String)>,
) -> ApiResult {
    Ok(json(
        StatusCode::CREATED,
        plane(&state)
            .restore_backup(&org.id, &id, &backup_id)
            .await?,
    ))
}

async fn list_disks(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let disks = plane(&state).list_disks(&org.id, &id).await?;
    Ok(json(StatusCode::OK, serde_json::json!({ "disks": disks })))
}

/// A fresh client certificate for the cluster's disks, with the CA to trust (PEM).
async fn disk_credentials(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let credentials = plane(&state).disk_credentials(&org.id, &id).await?;
    Ok(json(
        StatusCode::CREATED,
        serde_json::json!({
            "ca_cert_pem": credentials.ca_cert_pem(),
            "client_cert_pem": credentials.cert_pem(),
            "client_key_pem": credentials.key_pem(),
        }),
    ))
}
