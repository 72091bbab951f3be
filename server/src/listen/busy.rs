//! A response body that keeps its request marked busy (`guests::Busy`)
//! until it has gone out in full, or is dropped unsent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use hyper::body::{Frame, SizeHint};

use super::guests::Busy;

pub struct BusyBody {
    inner: Body,
    busy: Option<Arc<Busy>>,
}

impl BusyBody {
    pub fn new(inner: Body, busy: Arc<Busy>) -> Self {
        busy.start();
        Self {
            inner,
            busy: Some(busy),
        }
    }
}

impl hyper::body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) || this.inner.is_end_stream() {
            // Sent: the connection is idle again, whatever holds this body.
            this.busy = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
