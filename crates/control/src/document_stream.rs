//! A document's plaintext on its way out, frame by frame, behind the cluster's gate.
//!
//! The object store decrypts into one end of an in-memory pipe of [`DOWNLOAD_PIPE_BYTES`] on a
//! task of its own (the producer); [`DocumentStream`] reads the other end. Memory per download
//! is the pipe, one chunk and the decryptor's frame buffer, whatever the document's size; a slow
//! reader only slows the producer down.
//!
//! Two rules make a stream safe to hand to a client:
//! - the cluster's gate is checked before every chunk, so after the key is seen inaccessible no
//!   plaintext leaves, even of frames already decrypted into the pipe;
//! - the end of the pipe is not the end of the document: the stream ends cleanly only when the
//!   producer says the whole message was authenticated (its last frame included); any failure
//!   ends the stream with an error, which a consumer must treat as a cut-short document.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::DuplexStream;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use crate::error::{Error, Result};
use crate::runtime::ClusterRuntime;

/// Bytes buffered between the decryptor and the reader of a download: a quarter of a default
/// ESDK frame, so the gate is checked at least every 64 KiB.
pub(crate) const DOWNLOAD_PIPE_BYTES: usize = 64 * 1024;

/// A document's plaintext as a stream of chunks; see [`crate::ControlPlane::get_document`] and
/// the module doc. Dropping it stops the decryption.
pub struct DocumentStream {
    runtime: Arc<ClusterRuntime>,
    /// The first chunk, read before the stream was handed out.
    first: Option<Bytes>,
    chunks: ReaderStream<DuplexStream>,
    /// The decryption; `None` once its outcome is known.
    producer: Option<JoinHandle<Result<u64>>>,
    done: bool,
}

impl DocumentStream {
    /// The stream once its first chunk is here, or the error that came before any.
    pub(crate) async fn start(
        runtime: Arc<ClusterRuntime>,
        reader: DuplexStream,
        producer: JoinHandle<Result<u64>>,
    ) -> Result<DocumentStream> {
        let mut stream = DocumentStream {
            runtime,
            first: None,
            chunks: ReaderStream::with_capacity(reader, DOWNLOAD_PIPE_BYTES),
            producer: Some(producer),
            done: false,
        };
        match stream.next().await {
            Some(Ok(chunk)) => stream.first = Some(chunk),
            Some(Err(error)) => return Err(error),
            // An empty document: the stream stays ended.
            None => {}
        }
        Ok(stream)
    }

    /// The whole plaintext in memory, for a document known to be small (tests, tools). A stream
    /// that ends in an error gives that error and nothing else.
    pub async fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = self.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    fn stop(&mut self) {
        self.done = true;
        if let Some(producer) = self.producer.take() {
            producer.abort();
        }
    }
}

impl Stream for DocumentStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let chunk = match this.first.take() {
            Some(chunk) => chunk,
            None => match ready!(Pin::new(&mut this.chunks).poll_next(cx)) {
                Some(Ok(chunk)) => chunk,
                // The pipe ended (or broke): the producer's outcome says whether it was whole.
                Some(Err(_)) | None => {
                    let Some(producer) = this.producer.as_mut() else {
                        this.done = true;
                        return Poll::Ready(None);
                    };
                    let outcome = ready!(Pin::new(producer).poll(cx));
                    this.producer = None;
                    this.done = true;
                    return Poll::Ready(match outcome {
                        Ok(Ok(_)) => match this.runtime.gate() {
                            Ok(()) => None,
                            Err(locked) => Some(Err(locked)),
                        },
                        Ok(Err(error)) => Some(Err(error)),
                        Err(join) => Some(Err(Error::internal(format!(
                            "the document's decryption stopped: {join}"
                        )))),
                    });
                }
            },
        };
        // No plaintext leaves once the gate closed, however much is already decrypted.
        if let Err(locked) = this.runtime.gate() {
            this.stop();
            return Poll::Ready(Some(Err(locked)));
        }
        Poll::Ready(Some(Ok(chunk)))
    }
}

/// Names the cluster only: never a byte of the document.
impl std::fmt::Debug for DocumentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentStream")
            .field("cluster", &self.runtime.id)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Drop for DocumentStream {
    fn drop(&mut self) {
        self.stop();
    }
}
