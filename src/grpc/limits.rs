//! The code of a request message above the server's receive limit.
//!
//! tonic refuses such a message while decoding it, before any handler runs, with
//! OUT_OF_RANGE ("Error, decoded message length too large: ..."). gRPC servers conventionally
//! answer RESOURCE_EXHAUSTED (grpc-go, grpc-java, grpc-core), and that is what clients
//! written for them look for, so [`MessageLimitLayer`] rewrites that one answer's code.
//! tonic sends it as a trailers-only response, so the code is in the response headers.

use std::task::{Context, Poll};

use futures::TryFutureExt as _;
use futures::future::MapOk;
use http::HeaderValue;

/// The text tonic's decoder gives a message above the limit, as it is in the `grpc-message`
/// header: percent-encoded, spaces included.
const TOO_LARGE: &[u8] = b"message%20length%20too%20large";

/// The [`tower::Layer`] that answers RESOURCE_EXHAUSTED for a request message above the
/// server's receive limit, where tonic answers OUT_OF_RANGE.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageLimitLayer;

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimitService<S>;

    fn layer(&self, inner: S) -> MessageLimitService<S> {
        MessageLimitService { inner }
    }
}

/// See [`MessageLimitLayer`].
#[derive(Debug, Clone)]
pub struct MessageLimitService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for MessageLimitService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = MapOk<S::Future, fn(http::Response<ResBody>) -> http::Response<ResBody>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        self.inner
            .call(request)
            .map_ok(resource_exhausted_if_too_large)
    }
}

/// The response, with RESOURCE_EXHAUSTED in place of tonic's OUT_OF_RANGE for a message
/// above the limit; any other response unchanged.
fn resource_exhausted_if_too_large<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers
        .get("grpc-status")
        .is_some_and(|code| code.as_bytes() == b"11");
    let too_large = headers.get("grpc-message").is_some_and(|message| {
        message
            .as_bytes()
            .windows(TOO_LARGE.len())
            .any(|w| w == TOO_LARGE)
    });
    if out_of_range && too_large {
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The response tonic sends for `status`.
    fn response(status: tonic::Status) -> http::Response<()> {
        status.into_http()
    }

    #[test]
    fn only_the_too_large_refusal_becomes_resource_exhausted() {
        use tonic::Code;
        let too_large = "Error, decoded message length too large: found 5242885 bytes, \
                         the limit is: 4194304 bytes";
        #[rustfmt::skip]
        let cases = [
            (Code::OutOfRange, too_large, Code::ResourceExhausted),
            (Code::OutOfRange, "wait_timeout is out of range", Code::OutOfRange),
            (Code::InvalidArgument, too_large, Code::InvalidArgument),
            (Code::Ok, "", Code::Ok),
        ];
        for (code, message, want) in cases {
            let answered =
                resource_exhausted_if_too_large(response(tonic::Status::new(code, message)));
            let status = tonic::Status::from_header_map(answered.headers()).expect("a status");
            assert_eq!(status.code(), want, "{code:?} {message:?}");
            assert_eq!(status.message(), message);
        }
        let plain = resource_exhausted_if_too_large(http::Response::new(()));
        assert!(plain.headers().get("grpc-status").is_none());
    }
}
