//! Time in the units the state machine counts (milliseconds since the Unix epoch) and the
//! shutdown signal every long wait races against: small helpers below every other module.

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Resolves once shutdown was requested (or the coordinator is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send; drop it here rather than across an await.
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(i64::MAX as u128) as i64)
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
