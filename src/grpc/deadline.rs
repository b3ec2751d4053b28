//! How long a call may take: until the caller's deadline (`grpc-timeout`), and never longer
//! than the server's own limit (`--call-timeout`) for the part that waits on Kubernetes. A
//! call that runs out answers UNAVAILABLE in our words a little before the caller's deadline,
//! rather than leaving the caller the transport's bare DEADLINE_EXCEEDED, or waiting for the
//! Kubernetes client's 60-second read timeout when the API server stalls.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

/// Answer this much before the caller's deadline, so that it gets our reason rather than
/// the transport's bare DEADLINE_EXCEEDED.
pub(super) const DEADLINE_MARGIN: Duration = Duration::from_millis(200);

/// What a caller whose call ran out should do, for calls that change nothing.
pub(super) const RETRY: &str = "retry later";

/// The same for Deploy: the create may have reached the API server before it stalled.
pub(super) const RETRY_CREATE: &str = "the pod may or may not have been created; retry with the \
     same request_id, which returns the pod if it was";

/// The same for DeletePod.
pub(super) const RETRY_DELETE: &str = "the pod may or may not have been deleted; retry";

/// The caller's deadline, from the `grpc-timeout` header.
pub(super) fn caller_deadline(metadata: &tonic::metadata::MetadataMap) -> Option<Instant> {
    let value = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let amount: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

/// When work that may take `limit` must be over: `limit` from now, or [`DEADLINE_MARGIN`]
/// before the caller's deadline if that comes first.
pub(super) fn call_limit(deadline: Option<Instant>, limit: Duration) -> Instant {
    let now = Instant::now();
    let own = now.checked_add(limit).unwrap_or(now);
    deadline
        .map(|d| d.checked_sub(DEADLINE_MARGIN).unwrap_or(d))
        .map_or(own, |d| d.min(own))
}

/// Runs `work` until `until`; past it the work is dropped and the call answers
/// [`Error::CallTimedOut`] (UNAVAILABLE) with `retry` as the advice.
pub(super) async fn bounded<T>(
    until: Instant,
    retry: &'static str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    match tokio::time::timeout_at(until, work).await {
        Ok(result) => result,
        Err(_) => Err(Error::CallTimedOut {
            after: started.elapsed(),
            retry,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        assert!(caller_deadline(&metadata).is_none());
        for (value, at_least) in [
            ("5S", Duration::from_secs(4)),
            ("1500m", Duration::from_millis(1400)),
            ("2M", Duration::from_secs(119)),
        ] {
            metadata.insert("grpc-timeout", value.parse().expect("ascii"));
            let deadline = caller_deadline(&metadata).expect("a deadline");
            assert!(deadline > Instant::now() + at_least, "{value}");
        }
        metadata.insert("grpc-timeout", "5X".parse().expect("ascii"));
        assert!(caller_deadline(&metadata).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_limit_is_the_earlier_of_ours_and_the_callers() {
        let now = Instant::now();
        let ten = Duration::from_secs(10);
        assert_eq!(call_limit(None, ten), now + ten);
        let late = now + Duration::from_secs(60);
        assert_eq!(call_limit(Some(late), ten), now + ten);
        let soon = now + Duration::from_secs(2);
        assert_eq!(call_limit(Some(soon), ten), soon - DEADLINE_MARGIN);
    }

    #[tokio::test(start_paused = true)]
    async fn work_past_the_limit_is_unavailable_in_our_words() {
        let until = Instant::now() + Duration::from_secs(10);
        let stalled = bounded(until, RETRY, std::future::pending::<Result<()>>()).await;
        let status = tonic::Status::from(stalled.expect_err("the work never ends"));
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            status.message(),
            "Kubernetes did not answer within 10s: retry later"
        );
        let quick = bounded(until, RETRY, async { Ok(7) }).await;
        assert_eq!(quick.ok(), Some(7));
    }
}
