//! keyward-api over a real control plane and the real embedded KMS (with IAM and STS) on
//! loopback: requests go through the router with `oneshot`, as axum's testing example does.

mod audit;
mod auth;
mod backups;
mod bad_names;
mod console;
mod documents;
mod errors;
mod isolation;
mod limits;
mod metrics;
mod notifications;
mod openapi;
mod probes;
mod replicas;
mod tokens;
mod usage;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use keyward_api::embedded::Identities;
use keyward_api::{AdminToken, Limits};
use keyward_control::{ControlConfig, ControlPlane};
use serde_json::Value;
use tower::ServiceExt;

pub struct Api {
    pub router: axum::Router,
    pub plane: ControlPlane,
    pub admin_token: String,
    /// The customer's admin user, for aws-sdk-kms.
    pub customer: (String, String),
    kms: keyward_kms_server::DevServer,
    _dir: tempfile::TempDir,
}

pub struct Answer {
    pub status: StatusCode,
    pub json: Value,
    pub bytes: bytes::Bytes,
}

impl Api {
    /// A new external cluster of the token's organization, with a customer key whose policy
    /// has the cluster's statements, associated and ready for data: its id.
    pub async fn ready_cluster(&self, token: &str, name: &str) -> String {
        let cluster = self.cluster(token, name).await;
        let id = cluster["id"].as_str().unwrap().to_owned();
        let statements = self
            .call(
                Method::GET,
                &format!("/v1/clusters/{id}/key-policy"),
                Some(token),
                Body::empty(),
            )
            .await
            .json;
        let mut policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "root", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
            "Action": "kms:*", "Resource": "*"
        }]});
        for s in statements["Statement"].as_array().unwrap() {
            policy["Statement"].as_array_mut().unwrap().push(s.clone());
        }
        let kms = self.customer_kms().await;
        let key = kms
            .create_key()
            .policy(policy.to_string())
            .send()
            .await
            .unwrap();
        let key_arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
        let answer = self
            .call_json(
                Method::PUT,
                &format!("/v1/clusters/{id}/key"),
                Some(token),
                serde_json::json!({"key_arn": key_arn}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        // Ready once the documents list answers.
        let started = std::time::Instant::now();
        loop {
            let list = self
                .call(
                    Method::GET,
                    &format!("/v1/clusters/{id}/documents"),
                    Some(token),
                    Body::empty(),
                )
                .await;
            if list.status == StatusCode::OK {
                return id;
            }
            assert_eq!(list.json["error"]["code"], "not_ready", "{}", list.json);
            assert!(started.elapsed().as_secs() < 60, "not ready within 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The directory under which the control plane (`control/`) and the KMS (`kms/`) keep
    /// their state.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn start() -> Api {
        Api::start_with(Limits::default()).await
    }

    pub async fn start_with(limits: Limits) -> Api {
        Api::start_configured(limits, |_| {}).await
    }

    /// [`Api::start_with`], the control plane's configuration changed by `change` first.
    pub async fn start_configured(limits: Limits, change: impl FnOnce(&mut ControlConfig)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let identities = Identities::generate();
        let config = keyward_kms::IdentityConfig::from_toml_str(&identities.to_toml()).unwrap();
        let kms =
            keyward_kms_server::DevServer::try_start_with(&dir.path().join("kms"), config).unwrap();
        let mut config = ControlConfig::embedded(
            dir.path().join("control"),
            kms.endpoint(),
            identities.operator.access_key_id.clone(),
            identities.operator.secret_access_key.as_str(),
        );
        change(&mut config);
        let plane = ControlPlane::open(config).await.unwrap();
        let admin = AdminToken::generate().unwrap();
        let admin_token = admin.expose().to_owned();
        let customer = (
            identities.customer.access_key_id.clone(),
            identities.customer.secret_access_key.as_str().to_owned(),
        );
        Api {
            router: keyward_api::router(plane.clone(), admin, limits),
            plane,
            admin_token,
            customer,
            kms,
            _dir: dir,
        }
    }

    /// One request; `body` is sent as is.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: impl Into<Body>,
    ) -> Answer {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        self.send(method, path, &headers, body).await.0
    }

    /// One request with these headers: the answer and the answer's headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (Answer, axum::http::HeaderMap) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let answer_headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (
            Answer {
                status,
                json,
                bytes,
            },
            answer_headers,
        )
    }

    pub async fn call_json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> Answer {
        self.call(method, path, token, body.to_string()).await
    }

    /// The names of a cluster's documents under `prefix`, as listed through the API.
    pub async fn document_names(&self, token: &str, cluster_id: &str, prefix: &str) -> Vec<String> {
        let list = self
            .call(
                Method::GET,
                &format!("/v1/clusters/{cluster_id}/documents?prefix={prefix}"),
                Some(token),
                Body::empty(),
            )
            .await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.json);
        list.json["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A cluster's details, as `GET /v1/clusters/{id}` answers them.
    pub async fn cluster_details(&self, token: &str, cluster_id: &str) -> Value {
        let answer = self
            .call(
                Method::GET,
                &format!("/v1/clusters/{cluster_id}"),
                Some(token),
                Body::empty(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
        answer.json
    }

    /// aws-sdk-kms as the customer's admin user.
    pub async fn customer_kms(&self) -> aws_sdk_kms::Client {
        let config = self
            .kms
            .sdk_config_as(&self.customer.0, &self.customer.1)
            .await;
        aws_sdk_kms::Client::new(&config)
    }

    /// A new organization through the admin route: (org id, token).
    pub async fn organization(&self, name: &str) -> (String, String) {
        let answer = self
            .call_json(
                Method::POST,
                "/v1/organizations",
                Some(&self.admin_token.clone()),
                serde_json::json!({ "name": name }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        (
            answer.json["organization"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
            answer.json["token"].as_str().unwrap().to_owned(),
        )
    }

    /// A new external cluster of the token's organization.
    pub async fn cluster(&self, token: &str, name: &str) -> Value {
        let answer = self
            .call_json(
                Method::POST,
                "/v1/clusters",
                Some(token),
                serde_json::json!({"name": name, "encryption": "external"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json);
        answer.json
    }
}

/// Asserts an error answer's status and code, and that it is shaped `{"error": {"code", "message"}}`.
#[track_caller]
pub fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(
        answer.status.as_u16(),
        status,
        "expected {status} {code}, got {}",
        answer.json
    );
    assert_eq!(answer.json["error"]["code"], code, "{}", answer.json);
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.json
    );
}

/// The routes of the API with their parameters filled in.
pub fn concrete(path: &str, cluster_id: &str) -> String {
    path.replace("{id}", cluster_id)
        .replace("{*name}", "reports/q1.pdf")
        .replace("{name}", "reports/q1.pdf")
        .replace("{backup_id}", "b-0000000000000000")
        .replace("{org}", "o-0000000000000000")
        .replace("{token_id}", "t-0000000000000000")
        .replace("{destination_id}", "nd-0000000000000000")
}

pub fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap()
}

pub const PUBLIC: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
    ("GET", "/v1/openapi.json"),
];

/// The starts of the paths that take the admin token only (an organization's token is refused).
pub const ADMIN: &[&str] = &["/v1/organizations", "/metrics", "/v1/replicas"];
