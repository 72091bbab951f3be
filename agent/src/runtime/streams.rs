//! A step's stdout and stderr read by one loop, so their lines reach the
//! log in the order the agent read them.
//!
//! What order is guaranteed, and no more: the lines of one stream keep
//! their order; across the two streams, lines come in the order they were
//! read; output both pipes hold at one read comes stdout first. Two pipes
//! carry no clock, so the agent cannot know which of two writes to
//! different streams came first when both wait in their pipes (as after
//! `echo a; echo b >&2`, written within microseconds): a line written to
//! stderr just before one written to stdout may be shown after it. Stdout
//! first is the order of the common "say what it does, then fail on
//! stderr", and, unlike the fair polling of two readers, the same on every
//! run. (One pipe for both would keep every order but lose which stream a
//! line came from.)

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use xene_core::event::LogStream;

use super::{LineBuffer, LogSink};

/// A pipe's default capacity on Linux: a read this large takes all it holds.
const READ_BYTES: usize = 64 * 1024;

/// One stream being read.
struct Reader<R> {
    pipe: R,
    stream: LogStream,
    buffer: Vec<u8>,
    lines: LineBuffer,
    /// Its end was read (or reading it failed).
    done: bool,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(pipe: R, stream: LogStream) -> Self {
        Self {
            pipe,
            stream,
            buffer: vec![0; READ_BYTES],
            lines: LineBuffer::default(),
            done: false,
        }
    }

    /// One read: `Ready(n)` bytes now in the buffer (0: the end), or
    /// pending with the waker registered.
    fn poll_once(&mut self, cx: &mut Context<'_>) -> Poll<usize> {
        if self.done {
            return Poll::Pending;
        }
        let mut buf = ReadBuf::new(&mut self.buffer);
        match Pin::new(&mut self.pipe).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(buf.filled().len()),
            Poll::Ready(Err(_)) => Poll::Ready(0),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Sends the lines the last read completed, or the partial last line at
    /// the end.
    async fn take(&mut self, read: Poll<usize>, sink: &LogSink<'_>) {
        match read {
            Poll::Pending => {}
            Poll::Ready(0) => {
                self.done = true;
                self.lines.finish(self.stream, sink).await;
            }
            Poll::Ready(n) => self.lines.push(&self.buffer[..n], self.stream, sink).await,
        }
    }
}

/// Reads both streams to their ends, in rounds: each round waits until
/// either pipe has something, then reads each once, stdout first, and sends
/// the lines in that order.
pub(crate) async fn pump(
    stdout: impl AsyncRead + Unpin,
    stderr: impl AsyncRead + Unpin,
    sink: &LogSink<'_>,
) {
    let mut out = Reader::new(stdout, LogStream::Stdout);
    let mut err = Reader::new(stderr, LogStream::Stderr);
    while !(out.done && err.done) {
        let (o, e) = poll_fn(|cx| {
            let o = out.poll_once(cx);
            let e = err.poll_once(cx);
            if o.is_pending() && e.is_pending() {
                Poll::Pending
            } else {
                Poll::Ready((o, e))
            }
        })
        .await;
        out.take(o, sink).await;
        err.take(e, sink).await;
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::sync::mpsc;
    use xene_core::event::RunEvent;

    use super::*;
    use crate::mask::Masker;
    use LogStream::{Stderr, Stdout};

    /// Writes each line to its stream; with `wait`, only once the reader
    /// sent the line before.
    async fn lines_of(writes: &[(LogStream, &str)], wait: bool) -> Vec<(LogStream, String)> {
        let (out_r, mut out_w) = tokio::io::simplex(1 << 20);
        let (err_r, mut err_w) = tokio::io::simplex(1 << 20);
        let (tx, mut rx) = mpsc::channel(1024);
        let masker = Masker::default();
        let sink = LogSink {
            events: &tx,
            task: "t",
            step: "s",
            masker: &masker,
        };
        let mut lines = Vec::new();
        let write = async {
            for (stream, text) in writes {
                match stream {
                    Stdout => out_w.write_all(text.as_bytes()).await.unwrap(),
                    Stderr => err_w.write_all(text.as_bytes()).await.unwrap(),
                }
                if wait && let Some(RunEvent::Log { stream, data, .. }) = rx.recv().await {
                    lines.push((stream, data));
                }
            }
            // The readers see their ends.
            out_w.shutdown().await.unwrap();
            err_w.shutdown().await.unwrap();
        };
        tokio::join!(write, pump(out_r, err_r, &sink));
        drop(tx);
        while let Some(RunEvent::Log { stream, data, .. }) = rx.recv().await {
            lines.push((stream, data));
        }
        lines
    }

    #[tokio::test]
    async fn lines_come_in_the_order_they_were_read() {
        let writes = [(Stdout, "a\n"), (Stderr, "b\n"), (Stdout, "c\n")];
        let lines = lines_of(&writes, true).await;
        let want = [(Stdout, "a"), (Stderr, "b"), (Stdout, "c")];
        assert_eq!(lines, want.map(|(s, l)| (s, l.to_string())));
    }

    #[tokio::test]
    async fn what_both_pipes_hold_at_one_read_comes_stdout_first() {
        // Both written before the reader looks: it cannot know which came
        // first, and says stdout first, every time.
        for _ in 0..20 {
            let writes = [(Stderr, "late\n"), (Stdout, "early\n")];
            let lines = lines_of(&writes, false).await;
            let want = [(Stdout, "early"), (Stderr, "late")];
            assert_eq!(lines, want.map(|(s, l)| (s, l.to_string())));
        }
    }
}
