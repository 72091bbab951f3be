//! A request body with a deadline: it must arrive in full within so long of
//! the request's headers (a short time for guests, a longer one once the
//! connection is trusted), or reading it fails. A client trickling a body
//! byte by byte no longer holds its connection for as long as it likes: the
//! handler answers the error and the connection, its body unread, closes.
//!
//! A body that has arrived in full marks its request busy (`Busy`): its
//! guest connection is then among the last to give way to newcomers.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use super::guests::Busy;

/// How long a body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Before a request on the connection authenticated.
    pub guest: Duration,
    /// After.
    pub trusted: Duration,
}

/// Set on one request whose credential allows its body the longer
/// deadline without trusting the whole connection (a signed upload URL,
/// which anyone holding it may use).
#[derive(Debug, Default)]
pub struct LongBody(AtomicBool);

impl LongBody {
    pub fn allow(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimedOut(Duration);

pub struct DeadlineBody {
    inner: Incoming,
    start: Instant,
    timeouts: BodyTimeouts,
    busy: Arc<Busy>,
    long: Arc<LongBody>,
    /// Armed at the first read that has to wait: bodies that are already
    /// here (most of them) cost no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    pub fn new(
        inner: Incoming,
        timeouts: BodyTimeouts,
        busy: Arc<Busy>,
        long: Arc<LongBody>,
    ) -> Self {
        // A request without a body is whole from the start.
        if inner.is_end_stream() {
            busy.start();
        }
        Self {
            inner,
            start: Instant::now(),
            timeouts,
            busy,
            long,
            timer: None,
        }
    }

    fn limit(&self) -> Duration {
        if self.busy.visit().is_trusted() || self.long.0.load(Ordering::Acquire) {
            self.timeouts.trusted
        } else {
            self.timeouts.guest
        }
    }
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() || this.inner.is_end_stream() {
                this.busy.start();
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        loop {
            let limit = this.limit();
            let deadline = this.start + limit;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            // Trust may have come (or gone, never) since the timer was set.
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if this.limit() == limit => {
                    return Poll::Ready(Some(Err(Box::new(BodyTimedOut(limit)))));
                }
                Poll::Ready(()) => continue,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
