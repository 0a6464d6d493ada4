//! A blocking writer on one side, a streamed response body on the other:
//! how a CSV built by the store's blocking code reaches the client without
//! being held whole in memory.

use std::io::Write;

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

/// The blocking side: buffers 64 KiB, then hands the chunk over (waiting
/// while the client is slower than the store).
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// End the body with an error: the client sees an incomplete transfer,
    /// never a file that looks whole.
    pub fn fail(self, why: String) {
        let _ = self.tx.blocking_send(Err(std::io::Error::other(why)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// A writer and the receiving end.
pub fn channel() -> (ChannelWriter, mpsc::Receiver<Result<Bytes, std::io::Error>>) {
    let (tx, rx) = mpsc::channel(8);
    (
        ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        rx,
    )
}

/// The body that streams what the writer sends, starting with `first`.
pub fn body(first: Bytes, rx: mpsc::Receiver<Result<Bytes, std::io::Error>>) -> Body {
    let rest =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let all = futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    // Fused: a layer (gzip compression) may poll again after the end, which
    // an unfused `unfold` answers with a panic that aborts the connection.
    Body::from_stream(futures_util::StreamExt::fuse(all))
}
