//! Stream adapters of backups: SHA-256 over what passes, and progress counts.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_lc_rs::digest;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Hashes (SHA-256) every byte read through it.
pub(crate) struct HashingReader<R> {
    inner: R,
    digest: digest::Context,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            digest: digest::Context::new(&digest::SHA256),
        }
    }

    pub(crate) fn finish_hex(self) -> String {
        hex::encode(self.digest.finish())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for HashingReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.digest.update(&buf.filled()[before..]);
        }
        result
    }
}

/// Hashes (SHA-256) every byte written through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    digest: digest::Context,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            digest: digest::Context::new(&digest::SHA256),
        }
    }

    pub(crate) fn finish_hex(self) -> String {
        hex::encode(self.digest.finish())
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for HashingWriter<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.digest.update(&buf[..n]);
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts the bytes written through it and reports them to a callback about
/// every [`REPORT_EVERY`] bytes (and when asked).
pub(crate) struct CountingWriter<'a, W> {
    inner: W,
    done: u64,
    reported: u64,
    report: &'a (dyn Fn(u64) + Send + Sync),
}

const REPORT_EVERY: u64 = 4 << 20;

impl<'a, W> CountingWriter<'a, W> {
    pub(crate) fn new(inner: W, report: &'a (dyn Fn(u64) + Send + Sync)) -> Self {
        CountingWriter {
            inner,
            done: 0,
            reported: 0,
            report,
        }
    }

    pub(crate) fn done(&self) -> u64 {
        self.done
    }

    pub(crate) fn report_now(&mut self) {
        self.reported = self.done;
        (self.report)(self.done);
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CountingWriter<'_, W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            this.done += n as u64;
            if this.done - this.reported >= REPORT_EVERY {
                this.report_now();
            }
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads exactly `remaining` bytes from `inner`, then reports end of stream; an
/// end of `inner` before that is an `UnexpectedEof` error, so a consumer (a
/// put) aborts rather than storing a short object.
pub(crate) struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R> ExactReader<R> {
    pub(crate) fn new(inner: R, len: u64) -> Self {
        ExactReader {
            inner,
            remaining: len,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ExactReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.remaining == 0 {
            return Poll::Ready(Ok(()));
        }
        let max = (buf.remaining() as u64).min(self.remaining) as usize;
        let this = &mut *self;
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(max));
        match Pin::new(&mut this.inner).poll_read(cx, &mut limited) {
            Poll::Ready(Ok(())) => {
                let n = limited.filled().len();
                if n == 0 {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the backup stream ended inside an item",
                    )));
                }
                buf.advance(n);
                this.remaining -= n as u64;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}
