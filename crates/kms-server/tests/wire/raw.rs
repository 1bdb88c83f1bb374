//! A minimal HTTP/1.1 keep-alive client over one TCP connection, and AWS JSON 1.1 request signing with
//! the AWS SDK's own SigV4 signer (`aws-sigv4`), so the server's verifier is checked against a signer
//! that is not ours. The raw tests use it to send what the SDK never would (tampered bodies, stale
//! dates, broken JSON); the benchmark uses it as a lean load generator.

#![allow(dead_code)] // shared by the tests and the benchmark, which use different parts

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub const KMS_JSON: &str = "application/x-amz-json-1.1";

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    /// `__type` of an AWS JSON error answer.
    pub fn error_type(&self) -> String {
        self.json()["__type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

pub struct RawClient {
    stream: BufReader<TcpStream>,
    host: String,
    request: Vec<u8>,
    /// The server said `Connection: close` (moto's server does after every answer): reconnect first.
    closed: bool,
}

impl RawClient {
    /// `endpoint` is `http://127.0.0.1:PORT`.
    pub async fn connect(endpoint: &str) -> RawClient {
        let host = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let stream = Self::open(&host).await.expect("connect to the server");
        RawClient {
            stream,
            host,
            request: Vec::with_capacity(2048),
            closed: false,
        }
    }

    async fn open(host: &str) -> std::io::Result<BufReader<TcpStream>> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(BufReader::new(stream))
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one request (the headers as given, plus Host and Content-Length unless present) and reads
    /// the answer. `Err` when the connection fails.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> std::io::Result<RawResponse> {
        use std::io::Write;
        if self.closed {
            self.stream = Self::open(&self.host).await?;
            self.closed = false;
        }
        self.request.clear();
        write!(self.request, "{method} {path} HTTP/1.1\r\n")?;
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            write!(self.request, "host: {}\r\n", self.host)?;
        }
        for (name, value) in headers {
            write!(self.request, "{name}: {value}\r\n")?;
        }
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        {
            write!(self.request, "content-length: {}\r\n", body.len())?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.request).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> std::io::Result<RawResponse> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut content_length = 0usize;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let trimmed = line.trim_end();
            if trimmed.is_empty() {
                break;
            }
            if let Some((name, value)) = trimmed.split_once(':') {
                let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                    self.closed = true;
                }
                headers.push((name, value));
            }
        }
        let mut body = vec![0u8; content_length];
        self.stream.read_exact(&mut body).await?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

/// Credentials and scope for signing.
#[derive(Clone)]
pub struct Creds {
    pub access_key_id: String,
    pub secret: String,
    pub region: String,
}

/// The headers of a signed `POST <path>` with a JSON body and no `X-Amz-Target` (the admin routes).
pub fn signed_post_headers(
    creds: &Creds,
    host: &str,
    path: &str,
    body: &[u8],
    when: time::OffsetDateTime,
) -> Vec<(String, String)> {
    signed_post(
        creds,
        host,
        "kms",
        path,
        "application/json",
        None,
        body,
        when,
    )
}

/// The headers of a signed AWS JSON 1.1 request, as the SDKs send them.
pub fn signed_headers(
    creds: &Creds,
    host: &str,
    service: &str,
    target: &str,
    body: &[u8],
    when: time::OffsetDateTime,
) -> Vec<(String, String)> {
    signed_post(
        creds,
        host,
        service,
        "/",
        KMS_JSON,
        Some(target),
        body,
        when,
    )
}

#[allow(clippy::too_many_arguments)] // one signer behind the two shapes above
fn signed_post(
    creds: &Creds,
    host: &str,
    service: &str,
    path: &str,
    content_type: &str,
    target: Option<&str>,
    body: &[u8],
    when: time::OffsetDateTime,
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("host".to_owned(), host.to_owned()),
        ("content-type".to_owned(), content_type.to_owned()),
    ];
    if let Some(target) = target {
        headers.push(("x-amz-target".to_owned(), target.to_owned()));
    }
    let added = aws_sigv4_headers(creds, service, "POST", path, "", &headers, body, when);
    headers.extend(added);
    headers
}

/// What `aws-sigv4` adds to a request (`x-amz-date` and `authorization`), with its default
/// settings (every given header signed, the payload hashed, no `x-amz-content-sha256` header).
/// `headers` must include `host`.
#[allow(clippy::too_many_arguments)] // the parts of one request
pub fn aws_sigv4_headers(
    creds: &Creds,
    service: &str,
    method: &str,
    path: &str,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
    when: time::OffsetDateTime,
) -> Vec<(String, String)> {
    let host = headers
        .iter()
        .find(|(n, _)| n == "host")
        .map(|(_, v)| v.as_str())
        .expect("a host header to sign");
    let uri = if query.is_empty() {
        format!("http://{host}{path}")
    } else {
        format!("http://{host}{path}?{query}")
    };
    let identity = aws_credential_types::Credentials::new(
        &creds.access_key_id,
        &creds.secret,
        None,
        None,
        "keyward-tests",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&creds.region)
        .name(service)
        .time(std::time::SystemTime::from(when))
        .settings(SigningSettings::default())
        .build()
        .expect("signing parameters")
        .into();
    let signable = SignableRequest::new(
        method,
        uri,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("a signable request");
    let (instructions, _signature) = sign(signable, &params)
        .expect("aws-sigv4 signs the request")
        .into_parts();
    instructions
        .headers()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned()))
        .collect()
}
