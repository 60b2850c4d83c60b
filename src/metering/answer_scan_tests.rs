//! The answer readers against real answer shapes: the fast path agrees with the full parse,
//! Chat and Responses names, and bogus numbers.

use super::*;

fn u(p: u64, c: u64, t: u64) -> Usage {
    Usage::plain(p, c).with_total(t)
}

impl Usage {
    fn with_total(mut self, t: u64) -> Usage {
        self.total_tokens = t;
        self
    }
}

#[test]
fn body_usage_fast_path_agrees_with_the_full_parse() {
    let cases: &[(&str, Option<Usage>, Option<&str>)] = &[
        (
            r#"{"model":"m1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            Some(u(1, 2, 3)),
            Some("m1"),
        ),
        // Text that mentions "usage" is escaped, so it is never taken for the key.
        (
            r#"{"model":"m1","choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\":99}"}}],"usage":{"prompt_tokens":1,"total_tokens":1}}"#,
            Some(u(1, 0, 1)),
            Some("m1"),
        ),
        (
            r#"{"model":"m1","choices":[{"message":{"content":"\"usage\": {}"}}],"usage":null}"#,
            None,
            Some("m1"),
        ),
        (
            r#"{"model":"","usage":{"prompt_tokens":5}}"#,
            Some(u(5, 0, 5)),
            None,
        ),
        (
            r#"{"usage" : { "prompt_tokens" : 4 , "total_tokens" : 4 } , "model" : "m2"}"#,
            Some(u(4, 0, 4)),
            Some("m2"),
        ),
    ];
    for (body, usage, model) in cases {
        let got = from_json_body(body.as_bytes());
        assert_eq!(
            (got.usage, got.model.as_deref()),
            (*usage, *model),
            "{body}"
        );
    }
}

#[test]
fn json_bodies() {
    let chat = br#"{"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":45,"total_tokens":55}}"#;
    let got = from_json_body(chat);
    assert_eq!(
        (got.usage, got.model.as_deref()),
        (Some(u(10, 45, 55)), Some("gpt-4o"))
    );
    let embed = br#"{"object":"list","model":"text-embedding-3-small","usage":{"prompt_tokens":5,"total_tokens":5}}"#;
    assert_eq!(from_json_body(embed).usage, Some(u(5, 0, 5)));
    let no_total = br#"{"usage":{"prompt_tokens":2,"completion_tokens":3}}"#;
    assert_eq!(from_json_body(no_total).usage, Some(u(2, 3, 5)));
    let bad_usage = br#"{"model":"m","usage":{"prompt_tokens":"2"}}"#;
    let got = from_json_body(bad_usage);
    assert_eq!((got.usage, got.model.as_deref()), (None, Some("m")));
    assert_eq!(from_json_body(br#"{"model":"m","usage":null}"#).usage, None);
    assert_eq!(
        from_json_body(br#"{"model":7,"usage":"x"}"#),
        BodyUsage::default()
    );
    assert_eq!(from_json_body(b"<html>502</html>"), BodyUsage::default());
}

#[test]
fn chat_details_and_tier_are_read() {
    let body = br#"{"id":"x","object":"chat.completion","model":"gpt-4o-audio-preview","service_tier":"default","choices":[],"usage":{"prompt_tokens":1200,"completion_tokens":400,"total_tokens":1600,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":100,"cache_write_tokens":50},"completion_tokens_details":{"reasoning_tokens":64,"audio_tokens":300,"accepted_prediction_tokens":0}}}"#;
    let got = from_json_body(body);
    let want = Usage {
        prompt_tokens: 1200,
        cached_tokens: 1024,
        cache_write_tokens: 50,
        audio_input_tokens: 100,
        completion_tokens: 400,
        reasoning_tokens: 64,
        audio_output_tokens: 300,
        total_tokens: 1600,
        suspect: false,
    };
    assert_eq!(got.usage, Some(want));
    assert_eq!(got.service_tier.as_deref(), Some("default"));
}

#[test]
fn responses_api_names_are_read() {
    let body = br#"{"id":"resp_1","object":"response","model":"o3-2025-04-16","output":[{"type":"message","content":[{"type":"output_text","text":"\"service_tier\": \"x\""}]}],"service_tier":"flex","usage":{"input_tokens":5000,"input_tokens_details":{"cached_tokens":4096},"output_tokens":900,"output_tokens_details":{"reasoning_tokens":700},"total_tokens":5900}}"#;
    let got = from_json_body(body);
    let usage = got.usage.unwrap();
    assert_eq!(
        (
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens,
            usage.reasoning_tokens,
            usage.total_tokens
        ),
        (5000, 4096, 900, 700, 5900)
    );
    assert_eq!(got.service_tier.as_deref(), Some("flex"));
    assert_eq!(got.model.as_deref(), Some("o3-2025-04-16"));
}

#[test]
fn bogus_details_read_as_zero_and_are_flagged() {
    let body = br#"{"usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,"prompt_tokens_details":{"cached_tokens":-5,"audio_tokens":2.5},"completion_tokens_details":{"reasoning_tokens":"many"}}}"#;
    let got = from_json_body(body).usage.unwrap();
    assert_eq!(
        (
            got.cached_tokens,
            got.audio_input_tokens,
            got.reasoning_tokens
        ),
        (0, 0, 0)
    );
    assert!(got.suspect && got.was_inconsistent());
    // A bogus top-level count makes the usage unreadable.
    for bad in [
        r#"{"usage":{"prompt_tokens":-1,"completion_tokens":1}}"#,
        r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":1}}"#,
        r#"{"usage":{"prompt_tokens":1,"completion_tokens":{"x":1}}}"#,
        r#"{"usage":{"prompt_tokens":1,"total_tokens":"2"}}"#,
    ] {
        assert_eq!(from_json_body(bad.as_bytes()).usage, None, "{bad}");
    }
}
