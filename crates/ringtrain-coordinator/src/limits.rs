//! Bounds on what a request may carry, checked by the gRPC handlers before anything sized by a
//! wire value is allocated or stored: names (length, no control characters), free text (length),
//! and the counts of repeated fields (running ranks, log lines, metrics). A value over a bound
//! is refused, never silently cut, except worker log lines and failure messages, which are cut
//! to [`MAX_LOG_LINE_BYTES`] (they are diagnostics: losing their tail is better than losing the
//! report). Errors name the field and quote at most a short snippet of the value.

use ringtrain_proto::status::{ErrorKind, to_status};
use tonic::Status;

/// Longest job name (the spec's `name`) and worker name, in bytes.
pub(crate) const MAX_NAME_BYTES: usize = 128;
/// Longest id a request may name (job ids, worker ids, session names), in bytes.
pub(crate) const MAX_ID_BYTES: usize = 128;
/// Longest address (`peer_address`, `metrics_address`), version string or directory path.
pub(crate) const MAX_ADDRESS_BYTES: usize = 256;
/// Longest path (`base_dir`, `origin`, a result's `checkpoint_dir`), in bytes.
pub(crate) const MAX_PATH_BYTES: usize = 4096;
/// Longest cancel reason or result `stop_reason`, in bytes.
pub(crate) const MAX_REASON_BYTES: usize = 4096;
/// Longest log line or failure message kept from a worker (longer ones are cut).
pub(crate) const MAX_LOG_LINE_BYTES: usize = 64 * 1024;
/// Most ranks one heartbeat may list as running.
pub(crate) const MAX_RUNNING_RANKS: usize = 256;
/// Most log lines one progress report may carry.
pub(crate) const MAX_LOG_LINES_PER_REPORT: usize = 1000;
/// Most metrics a result may carry, and the longest metric name.
pub(crate) const MAX_METRICS: usize = 1024;
/// Longest metric name, in bytes.
pub(crate) const MAX_METRIC_NAME_BYTES: usize = 256;
/// Largest result `report_json`, in bytes (the one value workers fit their reports to).
pub(crate) const MAX_REPORT_JSON_BYTES: usize = ringtrain_proto::MAX_REPORT_JSON_BYTES;
/// Most states a ListJobs filter may name (there are six).
pub(crate) const MAX_STATE_FILTERS: usize = 16;

/// At most 64 characters of a client-supplied value, escaped, for an error message.
pub(crate) fn snippet(text: &str) -> String {
    let cut = match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    };
    let mut out = format!("{cut:?}");
    if cut.len() < text.len() {
        out.push('…');
    }
    out
}

/// Whether `ch` may not appear in a name: any control character, and the Unicode direction
/// overrides and isolates (which reorder what a terminal shows).
pub(crate) fn is_forbidden_in_name(ch: char) -> bool {
    ch.is_control()
        || matches!(ch, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A name shown to people (`ringtrain workers`, `status`): at most [`MAX_NAME_BYTES`] bytes and
/// no control characters. `required` refuses an empty one.
///
/// # Errors
/// INVALID_ARGUMENT naming `field`.
pub(crate) fn check_name(field: &str, value: &str, required: bool) -> Result<(), Status> {
    if required && value.is_empty() {
        return Err(invalid(format!("{field} is empty")));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "{field} is {} bytes; the limit is {MAX_NAME_BYTES} bytes",
            value.len()
        )));
    }
    if let Some(ch) = value.chars().find(|c| is_forbidden_in_name(*c)) {
        return Err(invalid(format!(
            "{field} {} contains the control character {:?}; names are shown on terminals and may not",
            snippet(value),
            ch
        )));
    }
    Ok(())
}

/// Free text or an id: at most `max` bytes.
///
/// # Errors
/// INVALID_ARGUMENT naming `field` (with a snippet of the value).
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), Status> {
    if value.len() > max {
        return Err(invalid(format!(
            "{field} {} is {} bytes; the limit is {max} bytes",
            snippet(value),
            value.len()
        )));
    }
    Ok(())
}

/// A repeated field: at most `max` entries.
///
/// # Errors
/// RESOURCE_EXHAUSTED naming `field`, its count and the limit.
pub(crate) fn check_count(field: &str, count: usize, max: usize) -> Result<(), Status> {
    if count > max {
        return Err(Status::resource_exhausted(format!(
            "{field} has {count} entries; the limit is {max}"
        )));
    }
    Ok(())
}

/// Cuts `text` to [`MAX_LOG_LINE_BYTES`] at a character boundary, marking the cut.
pub(crate) fn cut(mut text: String) -> String {
    if text.len() > MAX_LOG_LINE_BYTES {
        let mut end = MAX_LOG_LINE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [cut]");
    }
    text
}

fn invalid(message: String) -> Status {
    to_status(ErrorKind::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn names_are_bounded_and_free_of_control_characters() {
        assert!(check_name("name", "gpu-node-3:7071", true).is_ok());
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = check_name("name", &long, true).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(
            e.message().starts_with("name is 129 bytes"),
            "{}",
            e.message()
        );
        for bad in [
            "evil\u{1b}[2J",
            "bell\u{7}",
            "csi\u{9b}31m",
            "rtl\u{202e}gnp.exe",
            "a\nb",
        ] {
            let e = check_name("name", bad, true).unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}");
            assert!(e.message().contains("control character"), "{}", e.message());
            // The message itself carries the value escaped, never raw.
            assert!(
                !e.message().chars().any(is_forbidden_in_name),
                "{}",
                e.message()
            );
        }
        assert!(check_name("name", "", true).is_err());
        assert!(check_name("name", "", false).is_ok());
    }

    #[test]
    fn snippets_are_short_and_escaped() {
        let s = snippet(&"\u{1b}".repeat(10_000));
        assert!(s.len() < 64 * 8, "{}", s.len());
        assert!(!s.contains('\u{1b}'));
        assert_eq!(snippet("job-1"), "\"job-1\"");
    }

    #[test]
    fn counts_over_the_limit_are_resource_exhausted() {
        assert!(check_count("logs", 3, 3).is_ok());
        let e = check_count("logs", 4, 3).unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted);
        assert_eq!(e.message(), "logs has 4 entries; the limit is 3");
    }
}
