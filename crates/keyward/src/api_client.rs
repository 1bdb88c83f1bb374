//! The platform CLI's HTTP client of the keyward API, and where it finds the API and its token.
//!
//! Plain HTTP/1.1 through hyper-util's client (already in the build through the AWS SDK), so the
//! CLI adds no HTTP stack of its own. The API URL and token come from `--api-url` / `--token`, else
//! `KEYWARD_API_URL` / `KEYWARD_TOKEN`, else the `up.json` that `keyward up` wrote in its data
//! directory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use futures::TryStreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// How to reach the API; flattened into every API verb.
#[derive(Args, Clone)]
pub struct ApiArgs {
    /// The API's base URL, e.g. http://127.0.0.1:4600 [default: from <data-dir>/up.json]
    #[arg(long, env = "KEYWARD_API_URL", global = true)]
    api_url: Option<String>,
    /// An organization's API token [default: from <data-dir>/up.json]
    #[arg(long, env = "KEYWARD_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The data directory of `keyward up`, whose up.json holds the defaults.
    #[arg(long, default_value = "keyward-data", global = true)]
    data_dir: PathBuf,
    /// Print the API's JSON answer instead of text (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub body: serde_json::Value,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code,
            self.status.as_u16(),
            self.message
        )?;
        if let Some(checks) = self.body["error"]["report"]["checks"].as_array() {
            for check in checks {
                write!(f, "\n  {}", crate::cluster_cmd::check_line(check))?;
            }
        }
        if self.code == "unauthenticated" {
            write!(
                f,
                "\nPass --token (or KEYWARD_TOKEN) with an organization's token; `keyward up` prints one and keeps it in <data-dir>/up.json."
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

/// A request body: whole (JSON) or streamed from a reader (a document).
type RequestBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// Bytes read from a document's source per body chunk.
const UPLOAD_CHUNK: usize = 256 * 1024;

pub struct ApiClient {
    base: String,
    token: Option<String>,
    client: Client<HttpConnector, RequestBody>,
}

impl ApiClient {
    pub fn from_args(args: &ApiArgs) -> anyhow::Result<ApiClient> {
        let up = || -> anyhow::Result<serde_json::Value> {
            let path = args.data_dir.join("up.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no API given and {} cannot be read: start `keyward up`, or pass --api-url and --token (or set KEYWARD_API_URL and KEYWARD_TOKEN)",
                    path.display()
                )
            })?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", path.display()))
        };
        let mut up_json = None;
        let base = match &args.api_url {
            Some(url) => url.clone(),
            None => {
                let v = up_json.insert(up()?);
                v["api_url"]
                    .as_str()
                    .context("up.json has no api_url")?
                    .to_owned()
            }
        };
        let token = match &args.token {
            Some(token) => Some(token.clone()),
            None => {
                if up_json.is_none() {
                    up_json = up().ok();
                }
                up_json
                    .as_ref()
                    .and_then(|v| v["token"].as_str())
                    .map(str::to_owned)
            }
        };
        if !base.starts_with("http://") {
            bail!(
                "--api-url {base:?} must be an http:// URL (the API serves plain HTTP on loopback)"
            );
        }
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Like [`ApiClient::from_args`], acting with the admin token: `admin_token`, else the one in
    /// `<data-dir>/up.json`.
    pub fn admin_from_args(
        args: &ApiArgs,
        admin_token: Option<String>,
    ) -> anyhow::Result<ApiClient> {
        let mut client = Self::from_args(args)?;
        let token = match admin_token {
            Some(token) => token,
            None => {
                let path = args.data_dir.join("up.json");
                let up: serde_json::Value = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or_default();
                up["admin_token"]
                    .as_str()
                    .map(str::to_owned)
                    .with_context(|| {
                        format!(
                            "no admin token: pass --admin-token (or set KEYWARD_ADMIN_TOKEN); \
                             `keyward up` keeps it in {}",
                            path.display()
                        )
                    })?
            }
        };
        client.token = Some(token);
        Ok(client)
    }

    /// Sends one request; answers the status and body of a success, or an [`ApiFailure`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Bytes)>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let body = body.map(|(content_type, bytes)| {
            let whole = Full::new(bytes).map_err(|never| match never {});
            (content_type, None, UnsyncBoxBody::new(whole))
        });
        let response = self.request(method.clone(), path, body).await?;
        let status = response.status();
        Ok((status, body_of(response, &method, path).await?))
    }

    /// PUTs `reader`'s bytes as they are read (never whole in memory) and answers the body of
    /// the success. With `length` (sent as `Content-Length`) the server refuses a document over
    /// its limit before reading it.
    pub async fn put_stream<R>(
        &self,
        path: &str,
        reader: R,
        length: Option<u64>,
    ) -> anyhow::Result<Bytes>
    where
        R: tokio::io::AsyncRead + Send + 'static,
    {
        let chunks = tokio_util::io::ReaderStream::with_capacity(reader, UPLOAD_CHUNK);
        let body = UnsyncBoxBody::new(StreamBody::new(chunks.map_ok(Frame::data)));
        let response = self
            .request(
                Method::PUT,
                path,
                Some(("application/octet-stream", length, body)),
            )
            .await?;
        body_of(response, &Method::PUT, path).await
    }

    /// GETs `path` and writes its body into `writer` as it arrives; answers the bytes written.
    /// An answer that breaks off is an error: what was written is then incomplete.
    pub async fn get_to<W>(&self, path: &str, writer: &mut W) -> anyhow::Result<u64>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        use tokio::io::AsyncWriteExt as _;
        let mut body = self.request(Method::GET, path, None).await?.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.with_context(|| {
                format!(
                    "the answer of GET {path} broke off after {written} bytes: what was written \
                     is incomplete (the server log says why; a key made inaccessible stops a \
                     download)"
                )
            })?;
            if let Ok(data) = frame.into_data() {
                writer.write_all(&data).await?;
                written += data.len() as u64;
            }
        }
        writer.flush().await?;
        Ok(written)
    }

    /// Sends one request (a body with its content type and length, if known); answers the
    /// response of a success with its body unread, or an [`ApiFailure`].
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Option<u64>, RequestBody)>,
    ) -> anyhow::Result<Response<Incoming>> {
        let url = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method.clone()).uri(&url);
        if let Some(token) = &self.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let payload = match body {
            Some((content_type, length, body)) => {
                request = request.header("content-type", content_type);
                if let Some(length) = length {
                    request = request.header("content-length", length);
                }
                body
            }
            None => UnsyncBoxBody::new(
                http_body_util::Empty::new()
                    .map_err(|never: std::convert::Infallible| match never {}),
            ),
        };
        let request = request
            .body(payload)
            .with_context(|| format!("{url} is not a valid URL"))?;
        let response = self.client.request(request).await.with_context(|| {
            format!(
                "cannot reach the keyward API at {} (is `keyward up` running?)",
                self.base
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = body_of(response, &method, path).await?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(ApiFailure {
            status,
            code: body["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_owned(),
            message: body["error"]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            body,
        }
        .into())
    }

    /// A JSON request (or none) and its JSON answer (`null` for 204).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let body = body.map(|v| ("application/json", Bytes::from(v.to_string())));
        let (status, bytes) = self.send(method, path, body).await?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).context("the API answered something that is not JSON")
    }
}

/// The whole body of an answer (JSON, an error: small).
async fn body_of(
    response: Response<Incoming>,
    method: &Method,
    path: &str,
) -> anyhow::Result<Bytes> {
    Ok(response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("the answer of {method} {path} broke off"))?
        .to_bytes())
}

/// A path segment (or a document name, whose `/` are kept) made safe for a URL.
pub fn encode_path(text: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}
