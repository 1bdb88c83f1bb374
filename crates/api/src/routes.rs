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
use futures::StreamExt;
use http_body_util::BodyExt;
use keyward_control::notify::MAX_DELIVERY_PAGE;
use keyward_control::{
    AuditQuery, AuditResult, ControlPlane, DeliveryQuery, Exposition, NewCluster, NewDestination,
    Organization, EXPOSITION_CONTENT_TYPE,
};
use serde::Deserialize;

use crate::error::{ApiError, Code};
use crate::{AdminToken, AppState, Limits, Shared, OPENAPI_JSON};

type ApiResult<T = Response> = std::result::Result<T, ApiError>;

/// Every (method, path) the router serves, in axum's path syntax. The OpenAPI document lists
/// exactly these (tested).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/metrics"),
    ("GET", "/v1/replicas"),
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
    ("DELETE", "/v1/clusters/{id}/backups/{backup_id}"),
    ("GET", "/v1/clusters/{id}/disks"),
    ("POST", "/v1/clusters/{id}/disk-credentials"),
    ("GET", "/v1/clusters/{id}/audit"),
    ("GET", "/v1/clusters/{id}/alarms"),
    ("GET", "/v1/clusters/{id}/alarms/history"),
    ("GET", "/v1/clusters/{id}/alarm-rules"),
    ("PUT", "/v1/clusters/{id}/alarm-rules"),
    ("GET", "/v1/alarm-rules"),
    ("PUT", "/v1/alarm-rules"),
    ("GET", "/v1/clusters/{id}/alarms/deliveries"),
    ("POST", "/v1/clusters/{id}/alarms/test"),
    ("GET", "/v1/clusters/{id}/usage"),
    ("GET", "/v1/backups"),
    ("POST", "/v1/backups/{backup_id}/restore"),
    ("DELETE", "/v1/backups/{backup_id}"),
    ("POST", "/v1/notification-destinations"),
    ("GET", "/v1/notification-destinations"),
    ("DELETE", "/v1/notification-destinations/{destination_id}"),
    (
        "GET",
        "/v1/notification-destinations/{destination_id}/deliveries",
    ),
];

/// The whole API over `plane`. `admin` is the bootstrap token of `POST /v1/organizations`.
pub fn router(plane: ControlPlane, admin: AdminToken, limits: Limits) -> Router {
    let state = AppState(Arc::new(Shared {
        plane,
        admin,
        limits,
        data_permits: Default::default(),
        http: Default::default(),
        sessions: Default::default(),
    }));
    let routes = Routes::default()
        .add(Method::GET, "/healthz", healthz)
        .add(Method::GET, "/livez", livez)
        .add(Method::GET, "/readyz", readyz)
        .add(Method::GET, "/v1/openapi.json", openapi)
        .add(Method::GET, "/metrics", metrics)
        .add(Method::GET, "/v1/replicas", replicas)
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
        .add(
            Method::DELETE,
            "/v1/clusters/{id}/backups/{backup_id}",
            delete_backup,
        )
        .add(Method::GET, "/v1/clusters/{id}/disks", list_disks)
        .add(
            Method::POST,
            "/v1/clusters/{id}/disk-credentials",
            disk_credentials,
        )
        .add(Method::GET, "/v1/clusters/{id}/audit", audit)
        .add(Method::GET, "/v1/clusters/{id}/alarms", alarms)
        .add(
            Method::GET,
            "/v1/clusters/{id}/alarms/history",
            alarm_history,
        )
        .add(
            Method::GET,
            "/v1/clusters/{id}/alarm-rules",
            cluster_alarm_rules,
        )
        .add(
            Method::PUT,
            "/v1/clusters/{id}/alarm-rules",
            set_cluster_alarm_rules,
        )
        .add(Method::GET, "/v1/alarm-rules", org_alarm_rules)
        .add(Method::PUT, "/v1/alarm-rules", set_org_alarm_rules)
        .add(
            Method::GET,
            "/v1/clusters/{id}/alarms/deliveries",
            cluster_deliveries,
        )
        .add(
            Method::POST,
            "/v1/clusters/{id}/alarms/test",
            test_notification,
        )
        .add(Method::GET, "/v1/clusters/{id}/usage", usage)
        .add(Method::GET, "/v1/backups", list_retained_backups)
        .add(
            Method::POST,
            "/v1/backups/{backup_id}/restore",
            restore_retained_backup,
        )
        .add(
            Method::DELETE,
            "/v1/backups/{backup_id}",
            delete_retained_backup,
        )
        .add(
            Method::POST,
            "/v1/notification-destinations",
            create_destination,
        )
        .add(
            Method::GET,
            "/v1/notification-destinations",
            list_destinations,
        )
        .add(
            Method::DELETE,
            "/v1/notification-destinations/{destination_id}",
            delete_destination,
        )
        .add(
            Method::GET,
            "/v1/notification-destinations/{destination_id}/deliveries",
            destination_deliveries,
        );
    debug_assert_eq!(
        routes.served,
        ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
    let mut router = routes.router;
    for (path, methods) in crate::console::routes() {
        router = router.route(path, methods);
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::observe::observe,
        ))
        .layer(axum::middleware::from_fn(crate::console::security_headers))
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
        // The console's session cookie stands in for a bearer token, only when there is none.
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            if let Some(token) = crate::console::session_token(parts, state)? {
                return Ok(Org(state.0.plane.authenticate(&token).await?));
            }
        }
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
                "this route needs the admin token printed by `keyward up` (an organization's token is refused)",
            ))
        }
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        Code::PayloadTooLarge,
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// Reads a whole body of at most `limit` bytes (JSON bodies only; documents are streamed); more
/// is `413 payload_too_large`, refused before reading when `Content-Length` already says so.
pub(crate) async fn read_body(body: Body, limit: u64) -> ApiResult<bytes::Bytes> {
    if axum::body::HttpBody::size_hint(&body).lower() > limit {
        return Err(too_large(limit));
    }
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit))
        }
        Err(error) => Err(ApiError::invalid(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

/// Why a document body stopped being read, kept for the answer.
#[derive(Clone, Default)]
struct BodyFailure(Arc<std::sync::Mutex<Option<ApiError>>>);

impl BodyFailure {
    fn set(&self, error: ApiError) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
    }

    fn take(&self) -> Option<ApiError> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A document body as a reader that fails once more than `limit` bytes came (or the client's
/// body broke), recording why in the [`BodyFailure`]: the store then aborts the upload, so
/// nothing of it is kept.
fn document_body(
    body: Body,
    limit: u64,
) -> (
    tokio_util::io::StreamReader<LimitedBody, bytes::Bytes>,
    BodyFailure,
) {
    let failure = BodyFailure::default();
    let chunks = LimitedBody {
        chunks: body.into_data_stream(),
        limit,
        read: 0,
        failure: failure.clone(),
    };
    (tokio_util::io::StreamReader::new(chunks), failure)
}

/// The chunks of a document body, cut at its size limit (see [`document_body`]).
struct LimitedBody {
    chunks: axum::body::BodyDataStream,
    limit: u64,
    read: u64,
    failure: BodyFailure,
}

impl LimitedBody {
    /// What is left of the body.
    fn into_rest(self) -> axum::body::BodyDataStream {
        self.chunks
    }
}

impl futures::Stream for LimitedBody {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let chunk = match std::task::ready!(this.chunks.poll_next_unpin(cx)) {
            None => None,
            Some(Ok(bytes)) => {
                this.read += bytes.len() as u64;
                if this.read > this.limit {
                    this.failure.set(too_large(this.limit));
                    Some(Err(std::io::Error::other(
                        "the document is over the size limit",
                    )))
                } else {
                    Some(Ok(bytes))
                }
            }
            Some(Err(error)) => {
                this.failure.set(ApiError::invalid(format!(
                    "cannot read the request body: {error}"
                )));
                Some(Err(std::io::Error::other(error)))
            }
        };
        std::task::Poll::Ready(chunk)
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

// `/livez` and `/readyz` take no token, as `/healthz` does: a load balancer or an orchestrator
// probes them without credentials, and their answers carry no tenant data (a status and the name
// of the check that failed, never an error's text).

/// Liveness: answered while the process runs its event loop.
async fn livez() -> Response {
    json(StatusCode::OK, serde_json::json!({"status": "ok"}))
}

/// Readiness: 200 while this replica can serve (its database answers, it is not shutting down);
/// 503 naming the check that failed otherwise, so a load balancer sends its requests elsewhere.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.0.plane.ready().await {
        Ok(()) => json(StatusCode::OK, serde_json::json!({"status": "ready"})),
        Err(not_ready) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"status": "not_ready", "failed": not_ready.check()}),
        ),
    }
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

/// Prometheus's text format. The admin token only: the page counts every organization's clusters
/// and names their ids.
async fn metrics(_: Admin, State(state): State<AppState>) -> Response {
    let mut out = Exposition::new();
    plane(&state).write_metrics(&mut out);
    state.0.http.write(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(EXPOSITION_CONTENT_TYPE),
        )],
        out.into_text(),
    )
        .into_response()
}

/// The control-plane replicas sharing the database, and the cluster leases of the one that
/// answers. The admin token only: it names every organization's clusters.
async fn replicas(_: Admin, State(state): State<AppState>) -> Response {
    let plane = plane(&state);
    json(
        StatusCode::OK,
        serde_json::json!({
            "replica": plane.replica_id(),
            "leases": plane.held_leases(),
            // Cut off from the database, a replica still shows its own leases (none, once they
            // ran out): the list of the others needs the database.
            "replicas": tokio::time::timeout(std::time::Duration::from_secs(2), plane.replicas())
                .await
                .ok()
                .and_then(Result::ok),
        }),
    )
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
    DataOrg(org, permit): DataOrg,
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    body: Body,
) -> ApiResult {
    let limit = state.0.limits.max_document_bytes;
    if axum::body::HttpBody::size_hint(&body).lower() > limit {
        linger(body.into_data_stream(), permit);
        return Err(too_large(limit));
    }
    // The body is read as it is encrypted, never whole; the permit is held until it is stored.
    let (mut reader, failure) = document_body(body, limit);
    match plane(&state)
        .put_document(&org.id, &id, &name, &mut reader)
        .await
    {
        Ok(info) => Ok(json(StatusCode::OK, info)),
        Err(error) => {
            linger(reader.into_inner().into_rest(), permit);
            // The store failed because the body did: that is the answer, not the store's error.
            Err(failure.take().unwrap_or_else(|| error.into()))
        }
    }
}

/// How much of a refused upload's body is still read, and for how long, before the connection
/// is closed (see [`linger`]).
const LINGER_BYTES: u64 = 16 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and drops what is left of a refused upload's body, for a bounded while, holding the
/// request's permit. A connection closed with unread bytes is reset by the kernel, which can
/// destroy the refusal before the client has read it; a client still sending then sees a broken
/// pipe instead of its 413. Past the bound the connection is closed anyway.
fn linger(mut rest: axum::body::BodyDataStream, permit: tokio::sync::OwnedSemaphorePermit) {
    tokio::spawn(async move {
        let _held = permit;
        let mut read = 0u64;
        let drained = async {
            while let Some(Ok(chunk)) = rest.next().await {
                read += chunk.len() as u64;
                if read > LINGER_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(LINGER_TIME, drained).await;
    });
}

async fn get_document(
    DataOrg(org, permit): DataOrg,
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    let document = plane(&state).get_document(&org.id, &id, &name).await?;
    let cluster = id;
    // The permit goes with the body: the request counts against the organization's cap until
    // its last byte is sent (or the client goes).
    let body = document.map(move |chunk| {
        let _held = &permit;
        chunk.map_err(|error| {
            // The response is aborted: the client sees a cut-short body, never a complete one.
            tracing::warn!(cluster = %cluster, %error, "document download cut short");
            error
        })
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        Body::from_stream(body),
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

/// The cluster's KMS audit: `from`/`to` (unix ms, `to` exclusive), `operation`, `result`
/// (`success`, `error`, `unreachable`), `limit` (1 to 1000), `format` (`json`, or `cloudtrail`
/// for a CloudTrail log file's `{"Records": [...]}`). Any other parameter is refused.
async fn audit(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let (query, cloudtrail) = audit_query(&params)?;
    let plane = plane(&state);
    let records = plane.audit(&org.id, &id, &query).await?;
    // Successful probes past the compaction age are hourly counts, not records: said beside them.
    let compacted = plane.audit_compacted(&org.id, &id, &query).await?;
    let body = if cloudtrail {
        let region = plane.cluster(&org.id, &id).await?.region;
        let events: Vec<serde_json::Value> =
            records.iter().map(|r| r.to_cloudtrail(&region)).collect();
        serde_json::json!({ "Records": events, "keywardCompacted": compacted })
    } else {
        serde_json::json!({
            "records": records,
            "compacted": compacted,
            "dropped": plane.audit_dropped(),
        })
    };
    Ok(json(StatusCode::OK, body))
}

/// The cluster's KMS usage and its cost: `from`/`to` (`YYYY-MM-DD`, UTC, both included; the
/// current month so far by default; at most 92 days). Any other parameter is refused.
async fn usage(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    if let Some(unknown) = params
        .keys()
        .find(|k| !["from", "to"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid(format!(
            "unknown parameter {unknown:?}; the usage takes from, to"
        )));
    }
    let (from, to) = (params.get("from"), params.get("to"));
    let report = plane(&state)
        .usage(
            &org.id,
            &id,
            from.map(String::as_str),
            to.map(String::as_str),
        )
        .await?;
    Ok(json(StatusCode::OK, report))
}

/// The cluster's alarms as last evaluated.
async fn alarms(Org(org): Org, State(state): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let alarms = plane(&state).alarms(&org.id, &id).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "alarms": alarms }),
    ))
}

/// The cluster's alarm transitions, newest first: `limit` (1 to 1000, default 100).
async fn alarm_history(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    if let Some(unknown) = params.keys().find(|k| k.as_str() != "limit") {
        return Err(ApiError::invalid(format!(
            "unknown parameter {unknown:?}; the alarm history takes limit"
        )));
    }
    let limit = match params.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit must be from 1 to 1000, not {v:?}")))?,
    };
    let transitions = plane(&state).alarm_history(&org.id, &id, limit).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "transitions": transitions }),
    ))
}

/// The cluster's alarm rule, its organization's, and the rules its alarms are evaluated with.
async fn cluster_alarm_rules(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let view = plane(&state).cluster_alarm_rules(&org.id, &id).await?;
    Ok(json(StatusCode::OK, view))
}

/// Replaces the cluster's alarm rule (a JSON object of the fields it sets; a bad field is a 400
/// naming it, and nothing is stored).
async fn set_cluster_alarm_rules(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult {
    let rule: serde_json::Value = read_json(&state, body).await?;
    let view = plane(&state)
        .set_cluster_alarm_rules(&org.id, &id, &rule)
        .await?;
    Ok(json(StatusCode::OK, view))
}

/// The organization's alarm rule, and what a cluster without a rule of its own gets.
async fn org_alarm_rules(Org(org): Org, State(state): State<AppState>) -> ApiResult {
    let view = plane(&state).org_alarm_rules(&org.id).await?;
    Ok(json(StatusCode::OK, view))
}

/// Replaces the organization's alarm rule.
async fn set_org_alarm_rules(
    Org(org): Org,
    State(state): State<AppState>,
    body: Body,
) -> ApiResult {
    let rule: serde_json::Value = read_json(&state, body).await?;
    let view = plane(&state).set_org_alarm_rules(&org.id, &rule).await?;
    Ok(json(StatusCode::OK, view))
}

/// Creates a webhook destination; the answer holds its signing secret, shown only here.
async fn create_destination(Org(org): Org, State(state): State<AppState>, body: Body) -> ApiResult {
    let request: NewDestination = read_json(&state, body).await?;
    let created = plane(&state)
        .create_notification_destination(&org.id, request)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        serde_json::json!({
            "destination": created.destination,
            "secret": created.secret.expose(),
        }),
    ))
}

async fn list_destinations(Org(org): Org, State(state): State<AppState>) -> ApiResult {
    let destinations = plane(&state)
        .list_notification_destinations(&org.id)
        .await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "destinations": destinations }),
    ))
}

async fn delete_destination(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    plane(&state)
        .delete_notification_destination(&org.id, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The delivery log's filter of a request's parameters: `alarm`, `destination` (the cluster's
/// log only), `limit`.
fn delivery_query(
    params: &HashMap<String, String>,
    with_destination: bool,
) -> ApiResult<DeliveryQuery> {
    let known: &[&str] = if with_destination {
        &["alarm", "destination", "limit"]
    } else {
        &["alarm", "limit"]
    };
    if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown parameter {unknown:?}; the delivery log takes {}",
            known.join(", ")
        )));
    }
    let limit = params
        .get("limit")
        .map(|v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_DELIVERY_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "limit must be from 1 to {MAX_DELIVERY_PAGE}, not {v:?}"
                    ))
                })
        })
        .transpose()?;
    Ok(DeliveryQuery {
        alarm: params.get("alarm").cloned(),
        destination_id: params.get("destination").cloned(),
        limit,
    })
}

/// The cluster's notification deliveries, newest first, each with its attempts.
async fn cluster_deliveries(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let query = delivery_query(&params, true)?;
    let deliveries = plane(&state)
        .cluster_deliveries(&org.id, &id, &query)
        .await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "deliveries": deliveries }),
    ))
}

/// A destination's deliveries (its suppressed-notification summaries included).
async fn destination_deliveries(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let query = delivery_query(&params, false)?;
    let deliveries = plane(&state)
        .destination_deliveries(&org.id, &id, &query)
        .await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "deliveries": deliveries }),
    ))
}

/// Queues a test notification to each of the cluster's destinations.
async fn test_notification(
    Org(org): Org,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let deliveries = plane(&state).send_test_notification(&org.id, &id).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        serde_json::json!({ "deliveries": deliveries }),
    ))
}

/// The audit query of a request's parameters, and whether CloudTrail's format is asked for.
fn audit_query(params: &HashMap<String, String>) -> ApiResult<(AuditQuery, bool)> {
    const KNOWN: [&str; 6] = ["from", "to", "operation", "result", "limit", "format"];
    if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "unknown parameter {unknown:?}; the audit takes {}",
            KNOWN.join(", ")
        )));
    }
    let time = |name: &str| -> ApiResult<Option<i64>> {
        params
            .get(name)
            .map(|v| {
                v.parse::<i64>().ok().filter(|t| *t >= 0).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "{name} must be a time in unix milliseconds, not {v:?}"
                    ))
                })
            })
            .transpose()
    };
    let (from_ms, to_ms) = (time("from")?, time("to")?);
    if let (Some(from), Some(to)) = (from_ms, to_ms) {
        if from >= to {
            return Err(ApiError::invalid("from must be before to"));
        }
    }
    let operation = params.get("operation").cloned();
    if let Some(op) = &operation {
        if op.is_empty() || op.len() > 64 || !op.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiError::invalid(format!(
                "operation must be a KMS operation name such as Decrypt, not {op:?}"
            )));
        }
    }
    let result = params
        .get("result")
        .map(|v| {
            AuditResult::parse(v).ok_or_else(|| {
                ApiError::invalid(format!(
                    "result must be success, error or unreachable, not {v:?}"
                ))
            })
        })
        .transpose()?;
    let max = keyward_control::MAX_AUDIT_PAGE;
    let limit = params
        .get("limit")
        .map(|v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::invalid(format!("limit must be from 1 to {max}, not {v:?}"))
                })
        })
        .transpose()?;
    let cloudtrail = match params.get("format").map(String::as_str) {
        None | Some("json") => false,
        Some("cloudtrail") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "format must be json or cloudtrail, not {other:?}"
            )))
        }
    };
    Ok((
        AuditQuery {
            from_ms,
            to_ms,
            operation,
            result,
            limit,
        },
        cloudtrail,
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

async fn delete_backup(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path((id, backup_id)): Path<(String, String)>,
) -> ApiResult {
    plane(&state)
        .delete_backup(&org.id, &id, &backup_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The organization's backups of deleted clusters, kept until their retention ends.
async fn list_retained_backups(Org(org): Org, State(state): State<AppState>) -> ApiResult {
    let backups = plane(&state).list_retained_backups(&org.id).await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "backups": backups }),
    ))
}

async fn restore_retained_backup(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path(backup_id): Path<String>,
) -> ApiResult {
    Ok(json(
        StatusCode::CREATED,
        plane(&state)
            .restore_retained_backup(&org.id, &backup_id)
            .await?,
    ))
}

async fn delete_retained_backup(
    DataOrg(org, _permit): DataOrg,
    State(state): State<AppState>,
    Path(backup_id): Path<String>,
) -> ApiResult {
    plane(&state)
        .delete_retained_backup(&org.id, &backup_id)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
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
