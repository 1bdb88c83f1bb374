//! An NBD server for attached volumes (the protocol: <https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md>).
//!
//! What it speaks:
//! - handshake: fixed newstyle only (`NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES`);
//!   options `EXPORT_NAME`, `ABORT`, `LIST`, `INFO`, `GO`; every other option is
//!   answered `NBD_REP_ERR_UNSUP` (so clients fall back to simple replies);
//! - transmission: `READ`, `WRITE`, `DISC`, `FLUSH`, `TRIM`, `WRITE_ZEROES`, the
//!   `FUA` flag, simple replies only.
//!
//! Requests are pipelined: the connection's reader keeps reading while earlier
//! requests run on the blocking pool (positioned `pread`/`pwrite` plus XTS), and
//! each reply is written whole, by one writer task, as soon as its request is
//! done — so replies may come out of order, which the protocol allows (they are
//! matched by cookie). A byte budget bounds the memory held by requests in flight.
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
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, Semaphore};

use crate::error::Error;
use crate::volume::Volume;

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
const OPT_INFO: u32 = 6;
const OPT_GO: u32 = 7;

const REP_ACK: u32 = 1;
const REP_SERVER: u32 = 2;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const REP_ERR_INVALID: u32 = (1 << 31) | 3;
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
/// In-flight budget per connection, in units of 64 KiB: 64 MiB of payload. A
/// request costs at least 16 units, so at most 64 requests are in flight.
const BUDGET_UNITS: u32 = 1024;
const MIN_REQUEST_UNITS: u32 = 16;

/// The exports one server offers, by name.
#[derive(Clone, Default)]
pub struct NbdServer {
    exports: Arc<BTreeMap<String, Arc<Volume>>>,
}

impl NbdServer {
    /// A server offering each `(name, volume)`. An empty name in `NBD_OPT_GO`
    /// selects the export when there is exactly one.
    pub fn new(exports: impl IntoIterator<Item = (String, Arc<Volume>)>) -> NbdServer {
        NbdServer {
            exports: Arc::new(exports.into_iter().collect()),
        }
    }

    fn all_detached(&self) -> bool {
        self.exports.values().all(|v| !v.is_attached())
    }

    /// Accepts connections on `listener` until the task is dropped.
    pub async fn serve_tcp(self, listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            if self.all_detached() {
                tracing::info!(%peer, "refusing an NBD connection: the volume is detached");
                continue;
            }
            stream.set_nodelay(true)?;
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(error) = server.handle(stream).await {
                    tracing::debug!(%peer, %error, "NBD connection ended");
                }
            });
        }
    }

    /// Accepts connections on a unix socket until the task is dropped.
    pub async fn serve_unix(self, listener: UnixListener) -> io::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            if self.all_detached() {
                tracing::info!("refusing an NBD connection: the volume is detached");
                continue;
            }
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(error) = server.handle(stream).await {
                    tracing::debug!(%error, "NBD connection ended");
                }
            });
        }
    }

    /// Serves one client connection: handshake, then transmission until `DISC`
    /// or the client goes away.
    pub async fn handle<S>(&self, mut stream: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self.negotiate(&mut stream).await? {
            Some(volume) => transmission(stream, volume).await,
            None => Ok(()),
        }
    }

    fn lookup(&self, name: &str) -> Option<(&String, &Arc<Volume>)> {
        if name.is_empty() && self.exports.len() == 1 {
            return self.exports.iter().next();
        }
        self.exports.get_key_value(name)
    }

    /// The fixed-newstyle handshake. `Ok(None)` when the client aborted or was refused.
    async fn negotiate<S>(&self, stream: &mut S) -> io::Result<Option<Arc<Volume>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
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
            match option {
                OPT_EXPORT_NAME => {
                    let name = String::from_utf8_lossy(&data);
                    let Some((_, volume)) = self.lookup(&name).filter(|(_, v)| v.is_attached())
                    else {
                        // No error reply exists for EXPORT_NAME: the spec says close.
                        return Ok(None);
                    };
                    let mut reply = Vec::with_capacity(134);
                    reply.extend_from_slice(&volume.size().to_be_bytes());
                    reply.extend_from_slice(&TRANSMISSION_FLAGS.to_be_bytes());
                    if !no_zeroes {
                        reply.extend_from_slice(&[0u8; 124]);
                    }
                    stream.write_all(&reply).await?;
                    stream.flush().await?;
                    return Ok(Some(volume.clone()));
                }
                OPT_ABORT => {
                    option_reply(stream, option, REP_ACK, &[]).await?;
                    return Ok(None);
                }
                OPT_LIST => {
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
                OPT_INFO | OPT_GO => {
                    let Some((name, requests)) = parse_info_request(&data) else {
                        option_reply(
                            stream,
                            option,
                            REP_ERR_INVALID,
                            b"malformed INFO/GO request",
                        )
                        .await?;
                        continue;
                    };
                    let Some((export_name, volume)) = self.lookup(&name) else {
                        let message = format!("no export named {name:?}");
                        option_reply(stream, option, REP_ERR_UNKNOWN, message.as_bytes()).await?;
                        continue;
                    };
                    if !volume.is_attached() {
                        let message = format!(
                            "volume {} is detached: its key is no longer available",
                            volume.id()
                        );
                        option_reply(stream, option, REP_ERR_UNKNOWN, message.as_bytes()).await?;
                        continue;
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
                            INFO_DESCRIPTION => info.extend_from_slice(
                                format!("keyward volume {}", volume.id()).as_bytes(),
                            ),
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
                    if option == OPT_GO {
                        return Ok(Some(volume.clone()));
                    }
                }
                _ => {
                    option_reply(stream, option, REP_ERR_UNSUP, b"option not supported").await?;
                }
            }
        }
    }
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

/// One finished request, on its way to the writer.
struct Reply {
    cookie: u64,
    error: u32,
    /// A read's payload: the first `len` bytes of a pooled buffer.
    data: Option<(Vec<u8>, usize)>,
}

/// Payload buffers reused across the requests of one connection, so a busy
/// connection neither allocates nor zero-fills a buffer per request. They held
/// plaintext, so they are wiped when the connection ends.
#[derive(Clone, Default)]
struct BufferPool(Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

const POOL_MAX_BUFFERS: usize = 64;
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

    fn give(&self, buf: Vec<u8>) {
        if buf.len() <= POOL_MAX_BUFFER_LEN {
            let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < POOL_MAX_BUFFERS {
                pool.push(buf);
            }
        }
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

async fn transmission<S>(stream: S, volume: Arc<Volume>) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (replies, mut queue) = mpsc::unbounded_channel::<Reply>();
    let pool = BufferPool::default();
    let writer_volume = volume.clone();
    let writer_pool = pool.clone();
    let writer = tokio::spawn(async move {
        let mut out = BufWriter::with_capacity(256 * 1024, writer);
        while let Some(first) = queue.recv().await {
            let mut next = Some(first);
            while let Some(reply) = next {
                write_reply(&mut out, reply, &writer_volume, &writer_pool).await?;
                next = queue.try_recv().ok();
            }
            out.flush().await?;
        }
        out.shutdown().await
    });
    let budget = Arc::new(Semaphore::new(BUDGET_UNITS as usize));
    let mut header = [0u8; 28];
    let result = loop {
        if let Err(error) = reader.read_exact(&mut header).await {
            break if error.kind() == io::ErrorKind::UnexpectedEof {
                Ok(())
            } else {
                Err(error)
            };
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
        let reply = move |error| Reply {
            cookie,
            error,
            data: None,
        };
        if kind == CMD_DISC {
            break Ok(());
        }
        if kind == CMD_WRITE && len > MAX_REQUEST_LEN {
            // The payload cannot be skipped safely without reading it all: hang up.
            break Err(protocol(format!(
                "write of {len} bytes exceeds the {MAX_REQUEST_LEN}-byte maximum"
            )));
        }
        let units = len
            .div_ceil(64 * 1024)
            .clamp(MIN_REQUEST_UNITS, BUDGET_UNITS);
        let permit = budget
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("the budget is never closed");
        let volume = volume.clone();
        let replies = replies.clone();
        match kind {
            CMD_READ => {
                if len > MAX_REQUEST_LEN {
                    let _ = replies.send(reply(EINVAL));
                    continue;
                }
                let pool = pool.clone();
                // The blocking thread sends the reply itself: no async task per request.
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
                        },
                        Ok(Err(error)) => {
                            pool.give(buf);
                            reply(errno(&error, false))
                        }
                        Err(_) => reply(EIO),
                    };
                    let _ = replies.send(answer);
                    drop(permit);
                });
            }
            CMD_WRITE => {
                let len = len as usize;
                let mut data = pool.take(len);
                if let Err(error) = reader.read_exact(&mut data[..len]).await {
                    break Err(error);
                }
                let pool = pool.clone();
                spawn_io(replies, permit, cookie, true, move || {
                    let result = volume.write_at_in_place(offset, &mut data[..len], fua);
                    pool.give(data);
                    result
                });
            }
            CMD_WRITE_ZEROES => {
                spawn_io(replies, permit, cookie, true, move || {
                    volume.write_zeroes(offset, u64::from(len), fua)
                });
            }
            CMD_FLUSH => spawn_io(replies, permit, cookie, false, move || volume.flush()),
            CMD_TRIM => {
                // Accepted and ignored, like dm-crypt without allow_discards: holes in
                // the file would reveal which sectors are in use. The spec lets a
                // server leave trimmed data as it was.
                spawn_io(replies, permit, cookie, false, move || {
                    if !volume.is_attached() {
                        return Err(Error::Detached {
                            volume_id: volume.id().to_owned(),
                        });
                    }
                    match offset.checked_add(u64::from(len)) {
                        Some(end) if end <= volume.size() => {}
                        _ => return Err(Error::InvalidParameter("trim outside the volume".into())),
                    }
                    if fua {
                        volume.flush()?;
                    }
                    Ok(())
                });
            }
            _ => {
                let _ = replies.send(reply(EINVAL));
            }
        }
    };
    // DISC or EOF: let requests in flight finish and their replies go out, then close.
    let _ = budget.acquire_many(BUDGET_UNITS).await;
    drop(replies);
    let written = writer.await.map_err(|e| io::Error::other(e.to_string()))?;
    pool.wipe();
    result.and(written)
}

fn spawn_io(
    replies: mpsc::UnboundedSender<Reply>,
    permit: tokio::sync::OwnedSemaphorePermit,
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
        let _ = replies.send(Reply {
            cookie,
            error,
            data: None,
        });
        drop(permit);
    });
}

async fn write_reply<W: AsyncWrite + Unpin>(
    out: &mut W,
    reply: Reply,
    volume: &Volume,
    pool: &BufferPool,
) -> io::Result<()> {
    let (error, data) = match reply.data {
        // Plaintext decrypted before a detach must not leave after it.
        Some((mut buf, _)) if !volume.is_attached() => {
            zeroize::Zeroize::zeroize(&mut buf);
            (EIO, None)
        }
        data => (reply.error, data),
    };
    let mut head = [0u8; 16];
    head[0..4].copy_from_slice(&SIMPLE_REPLY_MAGIC.to_be_bytes());
    head[4..8].copy_from_slice(&error.to_be_bytes());
    head[8..16].copy_from_slice(&reply.cookie.to_be_bytes());
    out.write_all(&head).await?;
    if let Some((buf, len)) = data {
        out.write_all(&buf[..len]).await?;
        pool.give(buf);
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
