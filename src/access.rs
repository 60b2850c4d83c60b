//! The access log: exactly one info line per `/v1` request, target `catgate::access`.
//!
//! A request that reached the upstream stage has a usage record, and its line is written when
//! the record is settled (the recorder has every field then), so the line's `request_id` is
//! the record's id and the `x-catgate-request-id` header. A request answered without a record
//! (a bad token, a limit, a local answer) gets its line from the proxy with what is known.
//! Text that a client or upstream chose (the model) is logged quoted, so it cannot forge a
//! line; secrets never appear.

use crate::store::usage::UsageRecord;

/// The line of a request that has a usage record (`cost` is absent when unpriced).
pub fn settled(r: &UsageRecord) {
    tracing::info!(
        target: "catgate::access",
        request_id = %r.request_id,
        user_id = r.user_id,
        key_id = r.key_id,
        route = %r.route,
        // A `&str` (not `?`): the text format quotes and escapes it, the JSON format writes
        // it as a plain JSON string (Debug would put the quotes inside the string there).
        model = r.model.as_str(),
        status = r.status,
        attempts = r.attempts,
        latency_ms = r.latency_ms,
        prompt_tokens = r.prompt_tokens,
        completion_tokens = r.completion_tokens,
        total_tokens = r.total_tokens,
        cost = r.cost.as_ref().map(tracing::field::display),
    );
}

/// The line of a request answered without a usage record; `user_id` when the token was known.
pub fn unrecorded(request_id: &str, user_id: Option<i64>, route: &str, status: u16, ms: u64) {
    tracing::info!(
        target: "catgate::access",
        request_id = %request_id,
        user_id,
        route = %route,
        status,
        attempts = 0u32,
        latency_ms = ms,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Sink {
        type Writer = Sink;
        fn make_writer(&'a self) -> Sink {
            self.clone()
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn record(model: &str) -> UsageRecord {
        serde_json::from_value(json!({
            "request_id": "0193-abc", "user_id": 2, "key_id": 1, "model": model,
            "route": "/v1/chat/completions", "prompt_tokens": 9, "completion_tokens": 12,
            "total_tokens": 21, "cost": "0.00000855", "stream": false, "status": 200,
            "latency_ms": 5, "attempts": 1, "created_at": "2026-11-27T10:00:00.000000Z"
        }))
        .unwrap()
    }

    #[test]
    fn the_model_is_a_plain_json_string_and_quoted_in_text() {
        let sink = Sink::default();
        let json = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(sink.clone())
            .finish();
        tracing::subscriber::with_default(json, || settled(&record("gpt-4o-mini")));
        let line: Value = serde_json::from_str(sink.text().trim()).unwrap();
        assert_eq!(
            (&line["model"], &line["request_id"], &line["cost"]),
            (
                &json!("gpt-4o-mini"),
                &json!("0193-abc"),
                &json!("0.00000855")
            )
        );

        // Text: a model a client chose cannot start a line or forge a field.
        let sink = Sink::default();
        let text = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(sink.clone())
            .finish();
        let hostile = "x\nINFO catgate::access: status=200";
        tracing::subscriber::with_default(text, || settled(&record(hostile)));
        let log = sink.text();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(
            log.contains(r#"model="x\nINFO catgate::access: status=200""#),
            "{log}"
        );
    }
}
