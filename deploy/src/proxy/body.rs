//! The two bodies the proxy passes through: the client's request body, cut off past the size
//! limit, and the upstream's response body, tied to its upstream's lease.
//!
//! Owns streaming limits and drain-expiry closing of response streams. It must not buffer a
//! body, touch headers or pick an upstream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::routes::Lease;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body stopped early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyCut {
    #[error("request body is larger than the limit")]
    TooLarge,
    #[error("the upstream's drain expired")]
    DrainExpired,
}

/// A client's request body that fails once more than `limit` bytes have come, setting
/// `exceeded` so the caller answers 413.
pub(crate) struct LimitedBody {
    inner: Incoming,
    remaining: u64,
    exceeded: Arc<AtomicBool>,
}

impl LimitedBody {
    pub(crate) fn new(inner: Incoming, limit: u64) -> (Self, Arc<AtomicBool>) {
        let exceeded = Arc::new(AtomicBool::new(false));
        (
            Self {
                inner,
                remaining: limit,
                exceeded: exceeded.clone(),
            },
            exceeded,
        )
    }
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.remaining {
                        self.remaining = 0;
                        self.exceeded.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(BodyCut::TooLarge.into())));
                    }
                    self.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// An upstream's response body that holds its lease until it ends and fails (closing the
/// client's connection) when the upstream is closed at its drain deadline.
pub(crate) struct LeasedBody {
    inner: Incoming,
    closed: Pin<Box<WaitForCancellationFutureOwned>>,
    lease: Option<Lease>,
}

impl LeasedBody {
    pub(crate) fn new(inner: Incoming, lease: Lease) -> Self {
        let closed = Box::pin(lease.close_token().cancelled_owned());
        Self {
            inner,
            closed,
            lease: Some(lease),
        }
    }
}

impl Body for LeasedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.lease.is_none() {
            return Poll::Ready(None);
        }
        if self.closed.as_mut().poll(cx).is_ready() {
            self.lease = None;
            return Poll::Ready(Some(Err(BodyCut::DrainExpired.into())));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                self.lease = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                self.lease = None;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lease.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
