//! Property tests of the byte-exact parts of the response and request paths.

use std::collections::HashMap;

use bytes::Bytes;
use catgate::metering::sse::SseSplitter;
use catgate::proxy::request::with_include_usage;
use proptest::prelude::*;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// SSE-like bytes: terminators, blank lines, field prefixes and arbitrary bytes mixed.
fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"data: ".to_vec()),
        Just(br#"{"usage":null}"#.to_vec()),
        Just(b": ping".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

/// Feeds `input` cut at `cuts` (sorted, may repeat: empty chunks too); returns the events
/// handed out and what `finish` returned.
fn split_at(input: &[u8], cuts: &[usize]) -> (Vec<Bytes>, Option<Bytes>) {
    let mut splitter = SseSplitter::new();
    let mut events = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain([&input.len()]) {
        splitter.push(Bytes::copy_from_slice(&input[start..cut]), |e| {
            events.push(e)
        });
        start = cut;
    }
    (events, splitter.finish())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Request-like objects: the keys the proxy cares about (each with any value, and
/// `stream_options` also as a realistic object) among arbitrary ones.
fn request_object() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        Just("model".to_string()),
        Just("stream".to_string()),
        Just("messages".to_string()),
        Just("stream_options".to_string()),
        any::<String>(),
    ];
    let options = prop_oneof![
        Just(json!({"include_usage": false})),
        Just(json!({"include_usage": false, "chunk_size": 3})),
        Just(Value::Null),
    ];
    (
        prop::collection::btree_map(key, json_value(), 0..6),
        prop::option::of(options),
    )
        .prop_map(|(map, options)| {
            let mut map: Map<String, Value> = map.into_iter().collect();
            if let Some(o) = options {
                map.insert("stream_options".into(), o);
            }
            map
        })
}

fn raw_members(text: &[u8]) -> HashMap<String, &RawValue> {
    serde_json::from_slice(text).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sse_splitter_hands_out_exactly_its_input_at_any_split_points(
        input in sse_bytes(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let (events, rest) = split_at(&input, &cuts);
        let all: Vec<u8> = events.iter().chain(rest.as_ref()).flat_map(|b| b.to_vec()).collect();
        prop_assert_eq!(&all, &input);
        // Chunking changes nothing about where events end.
        let whole = split_at(&input, &[]);
        prop_assert_eq!((events, rest), whole);
    }

    #[test]
    fn include_usage_splice_touches_nothing_else(
        object in request_object(),
        pretty in any::<bool>(),
    ) {
        let text = if pretty {
            serde_json::to_string_pretty(&object).unwrap()
        } else {
            serde_json::to_string(&object).unwrap()
        };
        let body = Bytes::from(text);
        let out = with_include_usage(&body);
        prop_assert!(out.is_some(), "an object body was not rewritten: {:?}", body);
        let out = out.unwrap_or_default();
        let parsed: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {out:?}")))?;
        prop_assert_eq!(&parsed["stream_options"]["include_usage"], &Value::Bool(true));
        let before = raw_members(&body);
        let after = raw_members(&out);
        let added = usize::from(!before.contains_key("stream_options"));
        prop_assert_eq!(after.len(), before.len() + added);
        for (key, value) in &before {
            if key != "stream_options" {
                prop_assert_eq!(after.get(key).map(|v| v.get()), Some(value.get()), "{}", key);
            }
        }
        // The client's other stream options keep their bytes too.
        if let Some(Value::Object(_)) = object.get("stream_options") {
            let before = raw_members(before["stream_options"].get().as_bytes());
            let after = raw_members(after["stream_options"].get().as_bytes());
            let added = usize::from(!before.contains_key("include_usage"));
            prop_assert_eq!(after.len(), before.len() + added);
            for (key, value) in before.iter().filter(|(k, _)| *k != "include_usage") {
                prop_assert_eq!(after.get(key).map(|v| v.get()), Some(value.get()), "{}", key);
            }
        }
    }

    #[test]
    fn include_usage_splice_never_panics(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..128),
            // Nearly JSON: a request object with one byte changed.
            (request_object(), any::<prop::sample::Index>(), any::<u8>()).prop_map(
                |(object, at, byte)| {
                    let mut text = serde_json::to_vec(&object).unwrap_or_default();
                    if !text.is_empty() {
                        let i = at.index(text.len());
                        text[i] = byte;
                    }
                    text
                }
            ),
        ],
    ) {
        let _ = with_include_usage(&Bytes::from(bytes));
    }
}
