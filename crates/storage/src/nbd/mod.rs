//! An NBD server for attached volumes (the protocol: <https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>).
//!
//! What it speaks:
//! - handshake: fixed newstyle only (`NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES`);
//!   options `STARTTLS`, `EXPORT_NAME`, `ABORT`, `LIST`, `INFO`, `GO`; every other
//!   option is answered `NBD_REP_ERR_UNSUP` (so clients fall back to simple replies);
//! - transmission: `READ`, `WRITE`, `DISC`, `FLUSH`, `TRIM`, `WRITE_ZEROES`, the
//!   `FUA` flag, simple replies only.
//!
//! Who may connect ([`Transport`]): on TCP, TLS is required, the spec's "forced TLS"
//! mode: before `NBD_OPT_STARTTLS` every option but `ABORT` is answered
//! `NBD_REP_ERR_TLS_REQD` (and `EXPORT_NAME`, which has no error reply, closes the
//! connection), so a client without TLS learns nothing, not even the export names.
//! The TLS handshake requires a client certificate issued by the cluster's CA
//! ([`tls::ClusterCa`]); one server serves one cluster, so a client that completes it
//! sees exactly that cluster's exports. On a unix socket (mode 0600, see
//! [`bind_unix`]) TLS is offered but not required: the file mode is the lock. Plain
//! TCP exists only as [`Transport::PlainForTests`].
//!
//! Requests are pipelined: the connection's reader keeps reading while earlier
//! requests run on the blocking pool (positioned `pread`/`pwrite` plus XTS), and
//! each reply is written whole, by one writer task, as soon as its request is
//! done — so replies may come out of order, which the protocol allows (they are
//! matched by cookie).
//!
//! Bounds ([`Limits`]): connections per server; a handshake timeout; an idle
//! timeout; a stall timeout for a client that stops reading its replies; and byte
//! budgets per connection and per server, each request holding its share until its
//! reply has been written to the socket (not merely queued). An accept() error
//! (out of file descriptors...) is logged and retried with backoff; [`NbdHandle`]
//! tells the owner if the accept loop ever ends.
//!
//! Fail closed: once a volume is detached, new connections are closed before the
//! handshake, `GO`/`EXPORT_NAME` for it are refused, and every request — including
//! a read whose plaintext was ready before the detach but not yet sent — is
//! answered `EIO` with no data.
//!
//! Wire layouts (all integers big-endian):
//!
//! ```text
//! server greeting : "NBDMAGIC" | "IHAVEOPT" | u16 handshake flags
//! client flags    : u32
//! option          : "IHAVEOPT" | u32 option | u32 length | data
//! option reply    : u64 0x0003e889045565a9 | u32 option | u32 reply type | u32 length | data
//! request         : u32 0x25609513 | u16 flags | u16 type | u64 cookie | u64 offset | u32 length | [data]
//! simple reply    : u32 0x67446698 | u32 error | u64 cookie | [data]
//! ```

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::error::Error;
use crate::volume::Volume;

pub mod tls;

pub use tls::{ClientCredentials, ClusterCa, NbdTls, ServerIdentity, TlsError};

const NBDMAGIC: &[u8; 8] = b"NBDMAGIC";
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const CLIENT_FLAGS_KNOWN: u32 = 1 | 2;

const OPT_EXPORT_NAME: u32 = 1;
const OPT_ABORT: u32 = 2;
const OPT_LIST: u32 = 3;
const OPT_STARTTLS: u32 = 5;
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const REP_ERR_INVALID: u32 = (1 << 31) | 3;
const REP_ERR_TLS_REQD: u32 = (1 << 31) | 5;
const REP_ERR_UNKNOWN: u32 = (1 << 31) | 6;
const REP_ERR_TOO_BIG: u32 = (1 << 31) | 9;

const INFO_EXPORT: u16 = 0;
const INFO_NAME: u16 = 1;
const INFO_DESCRIPTION: u16 = 2;
const INFO_BLOCK_SIZE: u16 = 3;

const TFLAG_HAS_FLAGS: u16 = 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const TFLAG_SEND_FUA: u16 = 1 << 3;
const TFLAG_SEND_TRIM: u16 = 1 << 5;
const TFLAG_SEND_WRITE_ZEROES: u16 = 1 << 6;
/// Every connection writes through the same file and FLUSH is an fdatasync of it,
/// so a flush on one connection covers writes completed on all of them.
const TFLAG_CAN_MULTI_CONN: u16 = 1 << 8;
const TRANSMISSION_FLAGS: u16 = TFLAG_HAS_FLAGS
    | TFLAG_SEND_FLUSH
    | TFLAG_SEND_FUA
    | TFLAG_SEND_TRIM
    | TFLAG_SEND_WRITE_ZEROES
    | TFLAG_CAN_MULTI_CONN;

const CMD_FLAG_FUA: u16 = 1;

const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const CMD_TRIM: u16 = 4;
const CMD_WRITE_ZEROES: u16 = 6;

const EIO: u32 = 5;
const EINVAL: u32 = 22;
const ENOSPC: u32 = 28;

/// Largest option payload read; longer ones are skipped and answered `ERR_TOO_BIG`.
const MAX_OPTION_LEN: u32 = 64 * 1024;
/// Largest READ or WRITE payload (advertised as the maximum block size).
pub const MAX_REQUEST_LEN: u32 = 32 * 1024 * 1024;
/// Budgets count bytes in units of 64 KiB. A request costs at least 16 units (1 MiB),
/// so a connection's default 64 MiB budget admits at most 64 requests at once.
const UNIT: u32 = 64 * 1024;
const MIN_REQUEST_UNITS: u32 = 16;
/// Pauses after a failed accept(), doubling from the first to the last.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How clients reach a server's exports.
#[derive(Clone)]
pub enum Transport {
    /// TCP requires `NBD_OPT_STARTTLS` and a client certificate issued by the
    /// cluster's CA; a unix socket (whose 0600 mode is its lock) also accepts clients
    /// that do not start TLS.
    Tls(NbdTls),
    /// No TLS anywhere: any process that reaches the port reads the disks. For tests
    /// only, and only when a flag asks for it.
    PlainForTests,
}

/// What one server lets its clients hold. Every field bounds something a client can
/// consume; the defaults suit one cluster's disks on one host.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once (TCP and unix together); one more is closed at once.
    pub max_connections: usize,
    /// Time from accept to the end of option haggling (TLS handshake included).
    pub handshake_timeout: Duration,
    /// Time a connection may wait for its next request before it is closed.
    pub idle_timeout: Duration,
    /// Time the socket may refuse a reply's bytes (a client that does not read)
    /// before the connection is closed and its memory released.
    pub stall_timeout: Duration,
    /// Bytes of requests in flight or replies not yet written, per connection.
    pub connection_budget: usize,
    /// The same, for all the server's connections together.
    pub server_budget: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15 * 60),
            stall_timeout: Duration::from_secs(60),
            connection_budget: 64 << 20,
            server_budget: 256 << 20,
        }
    }
}

/// A server's configuration: its transport and its limits.
#[derive(Clone)]
pub struct NbdConfig {
    pub transport: Transport,
    pub limits: Limits,
}

impl NbdConfig {
    /// Mutual TLS with the default limits.
    pub fn tls(tls: NbdTls) -> NbdConfig {
        NbdConfig {
            transport: Transport::Tls(tls),
            limits: Limits::default(),
        }
    }

    /// Plain TCP with the default limits: tests only.
    pub fn plain_for_tests() -> NbdConfig {
        NbdConfig {
            transport: Transport::PlainForTests,
            limits: Limits::default(),
        }
    }

    pub fn with_limits(mut self, limits: Limits) -> NbdConfig {
        self.limits = limits;
        self
    }
}

/// The exports one server offers, by name: the disks of one cluster, reachable only
/// with that cluster's credentials.
#[derive(Clone)]
pub struct NbdServer {
    exports: Arc<BTreeMap<String, Arc<Volume>>>,
    shared: Arc<Shared>,
}

struct Shared {
    transport: Transport,
    limits: Limits,
    connections: Arc<Semaphore>,
    /// Server-wide budget in [`UNIT`]s.
    budget: Arc<Semaphore>,
    connection_units: u32,
}

/// A running accept loop. Dropping the handle (or [`NbdHandle::stop`]) stops
/// accepting; connections already open run on until they end.
pub struct NbdHandle {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl NbdHandle {
    /// What the loop listens on (`127.0.0.1:10809`, or the socket path).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// False once the loop has ended. It retries accept errors and never ends by
    /// itself, so false means a panic or [`NbdHandle::stop`]: restart the server.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Resolves when the loop ends, with why.
    pub async fn stopped(&mut self) -> String {
        match (&mut self.task).await {
            Ok(()) => "the accept loop returned".into(),
            Err(e) if e.is_cancelled() => "stopped".into(),
            Err(e) => format!("the accept loop panicked: {e}"),
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for NbdHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds a unix socket readable and writable by its owner only (0600). Put it in a
/// directory only the owner can enter as well: the mode is set just after the bind.
pub fn bind_unix(path: &std::path::Path) -> io::Result<UnixListener> {
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// One accepted connection, before the handshake.
enum Accepted {
    Tcp(TcpStream, String),
    Unix(UnixStream),
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                // Replies are written whole; Nagle would only delay their tails.
                let _ = stream.set_nodelay(true);
                Ok(Accepted::Tcp(stream, peer.to_string()))
            }
            Listener::Unix(l) => Ok(Accepted::Unix(l.accept().await?.0)),
        }
    }
}

/// A negotiated connection, ready for transmission.
enum Session<S> {
    Plain(S, Arc<Volume>),
    Tls(Box<tokio_rustls::server::TlsStream<S>>, Arc<Volume>),
}

/// Where option haggling ended.
enum Outcome {
    Go(Arc<Volume>),
    StartTls,
    Done,
}

impl NbdServer {
    /// A server offering each `(name, volume)`. An empty name in `NBD_OPT_GO`
    /// selects the export when there is exactly one.
    pub fn new(
        exports: impl IntoIterator<Item = (String, Arc<Volume>)>,
        config: NbdConfig,
    ) -> NbdServer {
        let to_units = |bytes: usize| {
            u32::try_from(bytes.div_ceil(UNIT as usize))
                .unwrap_or(u32::MAX >> 3)
                .max(MIN_REQUEST_UNITS)
        };
        let budget_units = to_units(config.limits.server_budget);
        let connection_units = to_units(config.limits.connection_budget).min(budget_units);
        NbdServer {
            exports: Arc::new(exports.into_iter().collect()),
            shared: Arc::new(Shared {
                connections: Arc::new(Semaphore::new(config.limits.max_connections)),
                budget: Arc::new(Semaphore::new(budget_units as usize)),
                connection_units,
                transport: config.transport,
                limits: config.limits,
            }),
        }
    }

    fn all_detached(&self) -> bool {
        self.exports.values().all(|v| !v.is_attached())
    }

    /// Starts accepting on `listener` (on the current tokio runtime).
    pub fn spawn_tcp(&self, listener: TcpListener) -> NbdHandle {
        let address = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        NbdHandle {
            address,
            task: tokio::spawn(self.clone().accept_loop(Listener::Tcp(listener))),
        }
    }

    /// Starts accepting on a unix socket (see [`bind_unix`]).
    pub fn spawn_unix(&self, listener: UnixListener) -> NbdHandle {
        let address = listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_default();
        NbdHandle {
            address,
            task: tokio::spawn(self.clone().accept_loop(Listener::Unix(listener))),
        }
    }

    /// Accepts on `listener` until the future is dropped.
    pub async fn serve_tcp(self, listener: TcpListener) {
        self.accept_loop(Listener::Tcp(listener)).await
    }

    /// Accepts on a unix socket until the future is dropped.
    pub async fn serve_unix(self, listener: UnixListener) {
        self.accept_loop(Listener::Unix(listener)).await
    }

    /// Never ends by itself: an accept error (out of file descriptors, a connection
    /// reset before it was accepted) is logged and retried after a growing pause.
    async fn accept_loop(self, listener: Listener) {
        let mut backoff = ACCEPT_BACKOFF_MIN;
        loop {
            let accepted = match listener.accept().await {
                Ok(accepted) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    accepted
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backoff, "NBD accept failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                    continue;
                }
            };
            if self.all_detached() {
                tracing::info!("refusing an NBD connection: the volume is detached");
                continue;
            }
            let Ok(permit) = self.shared.connections.clone().try_acquire_owned() else {
                tracing::debug!(
                    max = self.shared.limits.max_connections,
                    "refusing an NBD connection: too many open"
                );
                continue;
            };
            let server = self.clone();
            match accepted {
                Accepted::Tcp(stream, peer) => {
                    tokio::spawn(async move {
                        if let Err(error) = server.connection(stream, true).await {
                            tracing::debug!(%peer, %error, "NBD connection ended");
                        }
                        drop(permit);
                    });
                }
                Accepted::Unix(stream) => {
                    tokio::spawn(async move {
                        if let Err(error) = server.connection(stream, false).await {
                            tracing::debug!(%error, "NBD connection ended");
                        }
                        drop(permit);
                    });
                }
            }
        }
    }

    /// One client: the handshake under its timeout, then transmission.
    async fn connection<S>(&self, stream: S, tls_required: bool) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let session = tokio::time::timeout(
            self.shared.limits.handshake_timeout,
            self.handshake(stream, tls_required),
        )
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
        match session {
            Some(Session::Plain(stream, volume)) => self.transmission(stream, volume).await,
            Some(Session::Tls(stream, volume)) => self.transmission(stream, volume).await,
            None => Ok(()),
        }
    }

    async fn handshake<S>(
        &self,
        mut stream: S,
        tls_required: bool,
    ) -> io::Result<Option<Session<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut greeting = Vec::with_capacity(18);
        greeting.extend_from_slice(NBDMAGIC);
        greeting.extend_from_slice(&IHAVEOPT.to_be_bytes());
        greeting.extend_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
        stream.write_all(&greeting).await?;
        stream.flush().await?;
        let client_flags = stream.read_u32().await?;
        if client_flags & !CLIENT_FLAGS_KNOWN != 0 {
            return Err(protocol(format!("unknown client flags {client_flags:#x}")));
        }
        let no_zeroes = client_flags & u32::from(FLAG_NO_ZEROES) != 0;
        let tls = match &self.shared.transport {
            Transport::Tls(tls) => Some(tls),
            Transport::PlainForTests => None,
        };
        let phase = match tls {
            Some(_) if tls_required => Phase::TlsRequired,
            Some(_) => Phase::TlsOffered,
            None => Phase::Plain,
        };
        match self.options(&mut stream, phase, no_zeroes).await? {
            Outcome::Go(volume) => Ok(Some(Session::Plain(stream, volume))),
            Outcome::Done => Ok(None),
            Outcome::StartTls => {
                let tls = tls.expect("STARTTLS is accepted only with TLS configured");
                let mut stream = tls.acceptor().accept(stream).await?;
                match self.options(&mut stream, Phase::InTls, no_zeroes).await? {
                    Outcome::Go(volume) => Ok(Some(Session::Tls(Box::new(stream), volume))),
                    _ => Ok(None),
                }
            }
        }
    }

    fn lookup(&self, name: &str) -> Option<(&String, &Arc<Volume>)> {
        if name.is_empty() && self.exports.len() == 1 {
            return self.exports.iter().next();
        }
        self.exports.get_key_value(name)
    }

    /// The fixed-newstyle option haggling, in one phase of TLS.
    async fn options<S>(&self, stream: &mut S, phase: Phase, no_zeroes: bool) -> io::Result<Outcome>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        loop {
            if stream.read_u64().await? != IHAVEOPT {
                return Err(protocol("option without IHAVEOPT magic".into()));
            }
            let option = stream.read_u32().await?;
            let len = stream.read_u32().await?;
            if len > MAX_OPTION_LEN {
                tokio::io::copy(
                    &mut (&mut *stream).take(u64::from(len)),
                    &mut tokio::io::sink(),
                )
                .await?;
                option_reply(stream, option, REP_ERR_TOO_BIG, b"option too long").await?;
                continue;
            }
            let mut data = vec![0u8; len as usize];
            stream.read_exact(&mut data).await?;
            match (option, phase) {
                (OPT_ABORT, _) => {
                    option_reply(stream, option, REP_ACK, &[]).await?;
                    return Ok(Outcome::Done);
                }
                (OPT_STARTTLS, Phase::Plain) => {
                    option_reply(stream, option, REP_ERR_UNSUP, b"this server has no TLS").await?;
                }
                (OPT_STARTTLS, Phase::InTls) => {
                    option_reply(stream, option, REP_ERR_INVALID, b"TLS is already on").await?;
                }
                (OPT_STARTTLS, _) if !data.is_empty() => {
                    option_reply(stream, option, REP_ERR_INVALID, b"STARTTLS takes no data")
                        .await?;
                }
                (OPT_STARTTLS, _) => {
                    option_reply(stream, option, REP_ACK, &[]).await?;
                    return Ok(Outcome::StartTls);
                }
                // No error reply exists for EXPORT_NAME: the spec says disconnect.
                (OPT_EXPORT_NAME, Phase::TlsRequired) => return Ok(Outcome::Done),
                (_, Phase::TlsRequired) => {
                    option_reply(
                        stream,
                        option,
                        REP_ERR_TLS_REQD,
                        b"TLS is required: use nbds:// with this cluster's client certificate",
                    )
                    .await?;
                }
                (OPT_EXPORT_NAME, _) => {
                    let name = String::from_utf8_lossy(&data);
                    let Some((_, volume)) = self.lookup(&name).filter(|(_, v)| v.is_attached())
                    else {
                        return Ok(Outcome::Done);
                    };
                    let mut reply = Vec::with_capacity(134);
                    reply.extend_from_slice(&volume.size().to_be_bytes());
                    reply.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                    if !no_zeroes {
                        reply.extend_from_slice(&[0u8; 124]);
                    }
                    stream.write_all(&reply).await?;
                    stream.flush().await?;
                    return Ok(Outcome::Go(volume.clone()));
                }
                (OPT_LIST, _) => {
                    if !data.is_empty() {
                        option_reply(stream, option, REP_ERR_INVALID, b"LIST takes no data")
                            .await?;
                        continue;
                    }
                    for name in self.exports.keys() {
                        let mut entry = Vec::with_capacity(4 + name.len());
                        entry.extend_from_slice(&(name.len() as u32).to_be_bytes());
                        entry.extend_from_slice(name.as_bytes());
                        option_reply(stream, option, REP_SERVER, &entry).await?;
                    }
                    option_reply(stream, option, REP_ACK, &[]).await?;
                }
                (OPT_INFO | OPT_GO, _) => {
                    if let Some(volume) = self.info_or_go(stream, option, &data).await? {
                        return Ok(Outcome::Go(volume));
                    }
                }
                _ => {
                    option_reply(stream, option, REP_ERR_UNSUP, b"option not supported").await?;
                }
            }
        }
    }

    /// Answers `INFO` or `GO`; `Some` when a `GO` succeeded.
    async fn info_or_go<S>(
        &self,
        stream: &mut S,
        option: u32,
        data: &[u8],
    ) -> io::Result<Option<Arc<Volume>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let Some((name, requests)) = parse_info_request(data) else {
            option_reply(
                stream,
                option,
                REP_ERR_INVALID,
                b"malformed INFO/GO request",
            )
            .await?;
            return Ok(None);
        };
        let Some((export_name, volume)) = self.lookup(&name) else {
            let message = format!("no export named {name:?}");
            option_reply(stream, option, REP_ERR_UNKNOWN, message.as_bytes()).await?;
            return Ok(None);
        };
        if !volume.is_attached() {
            let message = format!(
                "volume {} is detached: its key is no longer available",
                volume.id()
            );
            option_reply(stream, option, REP_ERR_UNKNOWN, message.as_bytes()).await?;
            return Ok(None);
        }
        let mut export = Vec::with_capacity(12);
        export.extend_from_slice(&INFO_EXPORT.to_be_bytes());
        export.extend_from_slice(&volume.size().to_be_bytes());
        export.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
        option_reply(stream, option, REP_INFO, &export).await?;
        for request in requests {
            let mut info = request.to_be_bytes().to_vec();
            match request {
                INFO_NAME => info.extend_from_slice(export_name.as_bytes()),
                INFO_DESCRIPTION => {
                    info.extend_from_slice(format!("keyward volume {}", volume.id()).as_bytes())
                }
                INFO_BLOCK_SIZE => {
                    info.extend_from_slice(&1u32.to_be_bytes());
                    info.extend_from_slice(&4096u32.to_be_bytes());
                    info.extend_from_slice(&MAX_REQUEST_LEN.to_be_bytes());
                }
                _ => continue,
            }
            option_reply(stream, option, REP_INFO, &info).await?;
        }
        option_reply(stream, option, REP_ACK, &[]).await?;
        Ok((option == OPT_GO).then(|| volume.clone()))
    }
}

/// Where a connection stands with TLS while options are haggled.
#[derive(Clone, Copy)]
enum Phase {
    /// The server has no TLS (tests).
    Plain,
    /// TCP before `STARTTLS`: every option but `STARTTLS` and `ABORT` is refused.
    TlsRequired,
    /// A unix socket before `STARTTLS`: TLS is offered, not required.
    TlsOffered,
    /// After `STARTTLS`.
    InTls,
}

/// `u32 name length | name | u16 count | count × u16 info type`.
fn parse_info_request(data: &[u8]) -> Option<(String, Vec<u16>)> {
    let name_len = u32::from_be_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(data.get(4..4 + name_len)?)
        .ok()?
        .to_owned();
    let rest = &data[4 + name_len..];
    let count = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let list = rest.get(2..)?;
    if list.len() != count * 2 {
        return None;
    }
    Some((
        name,
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    ))
}

async fn option_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    option: u32,
    kind: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut reply = Vec::with_capacity(20 + data.len());
    reply.extend_from_slice(&OPTION_REPLY_MAGIC.to_be_bytes());
    reply.extend_from_slice(&option.to_be_bytes());
    reply.extend_from_slice(&kind.to_be_bytes());
    reply.extend_from_slice(&(data.len() as u32).to_be_bytes());
    reply.extend_from_slice(data);
    stream.write_all(&reply).await?;
    stream.flush().await
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The budget one request holds from the moment it is read until its reply has been
/// written to the socket: its connection's share and the server's.
struct Budget {
    _connection: OwnedSemaphorePermit,
    _server: OwnedSemaphorePermit,
}

/// One finished request, on its way to the writer.
struct Reply {
    cookie: u64,
    error: u32,
    /// A read's payload: the first `len` bytes of a pooled buffer.
    data: Option<(Vec<u8>, usize)>,
    budget: Budget,
}

/// Payload buffers reused across the requests of one connection, so a busy
/// connection neither allocates nor zero-fills a buffer per request. They held
/// plaintext, so they are wiped when the connection ends. The pool keeps at most
/// [`POOL_MAX_BYTES`]: idle buffers are not counted in any budget.
#[derive(Clone, Default)]
struct BufferPool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

const POOL_MAX_BYTES: usize = 16 << 20;
const POOL_MAX_BUFFER_LEN: usize = 4 << 20;

impl BufferPool {
    /// A buffer of at least `len` bytes (only growth is zero-filled).
    fn take(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default();
        if buf.len() < len {
            buf.resize(len, 0);
        }
        buf
    }

    fn give(&self, mut buf: Vec<u8>) {
        if buf.len() <= POOL_MAX_BUFFER_LEN {
            let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let held: usize = pool.iter().map(Vec::len).sum();
            if held + buf.len() <= POOL_MAX_BYTES {
                pool.push(buf);
                return;
            }
        }
        zeroize::Zeroize::zeroize(&mut buf);
    }

    fn wipe(&self) {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for mut buf in pool.drain(..) {
            zeroize::Zeroize::zeroize(&mut buf);
        }
    }
}

fn errno(error: &Error, write: bool) -> u32 {
    match error {
        Error::InvalidParameter(_) if write => ENOSPC,
        Error::InvalidParameter(_) => EINVAL,
        Error::Io { source, .. } if source.raw_os_error() == Some(28) => ENOSPC,
        _ => EIO,
    }
}

impl NbdServer {
    /// Requests until `DISC`, the client goes away, it stays idle past the idle
    /// timeout, or it stops reading replies past the stall timeout.
    ///
    /// Memory: every request holds its budget ([`Budget`]) from the moment it is read
    /// until its reply's last byte is handed to the socket, so requests in flight
    /// plus replies waiting to be written never exceed the connection's budget; the
    /// reader waits for budget before reading the next request, which stops a client
    /// that sends faster than it reads. The reply queue holds at most one entry per
    /// unit of budget.
    async fn transmission<S>(&self, stream: S, volume: Arc<Volume>) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // The volume's file is open while the client is connected (opened by its first
        // request), and closed after the last client's requests have all ended.
        let _open = volume.keep_open();
        let limits = &self.shared.limits;
        let connection_units = self.shared.connection_units;
        let (mut reader, writer) = tokio::io::split(stream);
        let queue_len = (connection_units / MIN_REQUEST_UNITS).max(1) as usize;
        let (replies, queue) = mpsc::channel::<Reply>(queue_len);
        let pool = BufferPool::default();
        let writer = tokio::spawn(write_replies(
            writer,
            queue,
            volume.clone(),
            pool.clone(),
            limits.stall_timeout,
        ));
        let connection_budget = Arc::new(Semaphore::new(connection_units as usize));
        let mut header = [0u8; 28];
        let result = loop {
            let read = tokio::select! {
                read = tokio::time::timeout(limits.idle_timeout, reader.read_exact(&mut header)) => read,
                // The writer gave up (the client stopped reading): stop reading too.
                () = replies.closed() => break Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading replies")),
            };
            match read {
                Err(_) => {
                    break Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the idle timeout",
                    ))
                }
                Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => break Ok(()),
                Ok(Err(error)) => break Err(error),
                Ok(Ok(_)) => {}
            }
            let magic = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
            if magic != REQUEST_MAGIC {
                break Err(protocol(format!("bad request magic {magic:#x}")));
            }
            let flags = u16::from_be_bytes([header[4], header[5]]);
            let kind = u16::from_be_bytes([header[6], header[7]]);
            let cookie = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
            let offset = u64::from_be_bytes(header[16..24].try_into().expect("8 bytes"));
            let len = u32::from_be_bytes(header[24..28].try_into().expect("4 bytes"));
            let fua = flags & CMD_FLAG_FUA != 0;
            if kind == CMD_DISC {
                break Ok(());
            }
            if kind == CMD_WRITE && len > MAX_REQUEST_LEN {
                // The payload cannot be skipped safely without reading it all: hang up.
                break Err(protocol(format!(
                    "write of {len} bytes exceeds the {MAX_REQUEST_LEN}-byte maximum"
                )));
            }
            let payload = if kind == CMD_READ || kind == CMD_WRITE {
                len.min(MAX_REQUEST_LEN)
            } else {
                0
            };
            let units = payload
                .div_ceil(UNIT)
                .clamp(MIN_REQUEST_UNITS, connection_units);
            let budget = Budget {
                _connection: connection_budget
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("the budget is never closed"),
                _server: self
                    .shared
                    .budget
                    .clone()
                    .acquire_many_owned(units)
                    .await
                    .expect("the budget is never closed"),
            };
            let reply = move |error, budget| Reply {
                cookie,
                error,
                data: None,
                budget,
            };
            let volume = volume.clone();
            let replies = replies.clone();
            match kind {
                CMD_READ => {
                    if len > MAX_REQUEST_LEN {
                        let _ = replies.send(reply(EINVAL, budget)).await;
                        continue;
                    }
                    let pool = pool.clone();
                    // The blocking thread sends the reply itself: no async task per
                    // request. The queue has room for every budget holder, so the
                    // send does not wait.
                    tokio::task::spawn_blocking(move || {
                        let len = len as usize;
                        let mut buf = pool.take(len);
                        let answer = match catch_unwind(AssertUnwindSafe(|| {
                            volume.read_at(offset, &mut buf[..len])
                        })) {
                            Ok(Ok(())) => Reply {
                                cookie,
                                error: 0,
                                data: Some((buf, len)),
                                budget,
                            },
                            Ok(Err(error)) => {
                                pool.give(buf);
                                reply(errno(&error, false), budget)
                            }
                            Err(_) => reply(EIO, budget),
                        };
                        if let Err(unsent) = replies.blocking_send(answer) {
                            // The writer is gone: the plaintext must not linger.
                            if let Some((buf, _)) = unsent.0.data {
                                pool.give(buf);
                            }
                        }
                    });
                }
                CMD_WRITE => {
                    let len = len as usize;
                    let mut data = pool.take(len);
                    let read = tokio::time::timeout(
                        limits.idle_timeout,
                        reader.read_exact(&mut data[..len]),
                    )
                    .await;
                    match read {
                        Ok(Ok(_)) => {}
                        Ok(Err(error)) => break Err(error),
                        Err(_) => {
                            break Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "a write's payload did not arrive within the idle timeout",
                            ))
                        }
                    }
                    let pool = pool.clone();
                    spawn_io(replies, budget, cookie, true, move || {
                        let result = volume.write_at_in_place(offset, &mut data[..len], fua);
                        pool.give(data);
                        result
                    });
                }
                CMD_WRITE_ZEROES => {
                    spawn_io(replies, budget, cookie, true, move || {
                        volume.write_zeroes(offset, u64::from(len), fua)
                    });
                }
                CMD_FLUSH => spawn_io(replies, budget, cookie, false, move || volume.flush()),
                CMD_TRIM => {
                    // Accepted and ignored, like dm-crypt without allow_discards: holes in
                    // the file would reveal which sectors are in use. The spec lets a
                    // server leave trimmed data as it was.
                    spawn_io(replies, budget, cookie, false, move || {
                        if !volume.is_attached() {
                            return Err(Error::Detached {
                                volume_id: volume.id().to_owned(),
                            });
                        }
                        match offset.checked_add(u64::from(len)) {
                            Some(end) if end <= volume.size() => {}
                            _ => {
                                return Err(Error::InvalidParameter(
                                    "trim outside the volume".into(),
                                ))
                            }
                        }
                        if fua {
                            volume.flush()?;
                        }
                        Ok(())
                    });
                }
                _ => {
                    let _ = replies.send(reply(EINVAL, budget)).await;
                }
            }
        };
        // DISC, EOF or an error: let requests in flight finish and their replies go
        // out (the writer gives up after the stall timeout), then close.
        drop(replies);
        let written = writer.await.map_err(|e| io::Error::other(e.to_string()))?;
        let _ = connection_budget.acquire_many(connection_units).await;
        pool.wipe();
        result.and(written)
    }
}

/// The one writer of a connection: each reply whole, in the order they finish, then
/// the budget of the replies written released once they are flushed to the socket.
async fn write_replies<W: AsyncWrite + Unpin>(
    writer: W,
    mut queue: mpsc::Receiver<Reply>,
    volume: Arc<Volume>,
    pool: BufferPool,
    stall_timeout: Duration,
) -> io::Result<()> {
    let stalled = || {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "the client stopped reading replies",
        )
    };
    let mut out = BufWriter::with_capacity(256 * 1024, writer);
    let mut written = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(reply) = next {
            let Reply {
                cookie,
                error,
                data,
                budget,
            } = reply;
            tokio::time::timeout(
                stall_timeout,
                write_reply(&mut out, cookie, error, data, &volume, &pool),
            )
            .await
            .map_err(|_| stalled())??;
            written.push(budget);
            next = queue.try_recv().ok();
        }
        tokio::time::timeout(stall_timeout, out.flush())
            .await
            .map_err(|_| stalled())??;
        written.clear();
    }
    out.shutdown().await
}

fn spawn_io(
    replies: mpsc::Sender<Reply>,
    budget: Budget,
    cookie: u64,
    write: bool,
    work: impl FnOnce() -> crate::Result<()> + Send + 'static,
) {
    tokio::task::spawn_blocking(move || {
        // A panic must still answer the request, or the client waits forever.
        let error = match catch_unwind(AssertUnwindSafe(work)) {
            Ok(Ok(())) => 0,
            Ok(Err(error)) => errno(&error, write),
            Err(_) => EIO,
        };
        let _ = replies.blocking_send(Reply {
            cookie,
            error,
            data: None,
            budget,
        });
    });
}

async fn write_reply<W: AsyncWrite + Unpin>(
    out: &mut W,
    cookie: u64,
    error: u32,
    data: Option<(Vec<u8>, usize)>,
    volume: &Volume,
    pool: &BufferPool,
) -> io::Result<()> {
    let (error, data) = match data {
        // Plaintext decrypted before a detach must not leave after it.
        Some((mut buf, _)) if !volume.is_attached() => {
            zeroize::Zeroize::zeroize(&mut buf);
            (EIO, None)
        }
        data => (error, data),
    };
    let mut head = [0u8; 16];
    head[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    head[4..8].copy_from_slice(&error.to_be_bytes());
    head[8..16].copy_from_slice(&cookie.to_be_bytes());
    out.write_all(&head).await?;
    if let Some((buf, len)) = data {
        let result = out.write_all(&buf[..len]).await;
        pool.give(buf);
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_requests_parse_and_reject_bad_lengths() {
        let mut ok = 3u32.to_be_bytes().to_vec();
        ok.extend_from_slice(b"vol");
        ok.extend_from_slice(&2u16.to_be_bytes());
        ok.extend_from_slice(&INFO_NAME.to_be_bytes());
        ok.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
        assert_eq!(
            parse_info_request(&ok),
            Some(("vol".into(), vec![INFO_NAME, INFO_BLOCK_SIZE]))
        );
        assert_eq!(parse_info_request(&ok[..ok.len() - 1]), None);
        let mut long_name = 1000u32.to_be_bytes().to_vec();
        long_name.extend_from_slice(b"vol\0\0");
        assert_eq!(parse_info_request(&long_name), None);
        assert_eq!(parse_info_request(&[]), None);
    }
}
