//! Metering: SSE splitting and usage extraction (on the response path), tokenizer fallback
//! and pricing (on the recorder thread), and the recorder that writes usage rows.

pub mod answer_scan;
pub mod completion_text;
pub mod journal;
pub mod pricing;
pub mod recorder;
pub mod settle;
pub mod sse;
pub mod stream_meter;
pub mod tokenizer;
pub mod usage;
pub mod usage_wire;
