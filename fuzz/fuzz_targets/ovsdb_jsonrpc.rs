//! Any bytes from an OVSDB server, in any split: the framer and the message, value and update
//! parsers never panic, and splitting the same bytes at another point gives the same texts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veg_ovsdb::jsonrpc::{FrameSplitter, Message};
use veg_ovsdb::{Replica, Schema, Value};

fuzz_target!(|data: &[u8]| {
    let texts = |cut: usize| {
        let mut splitter = FrameSplitter::default();
        let mut out = Vec::new();
        for chunk in [&data[..cut], &data[cut..]] {
            splitter.push(chunk);
            while let Some(text) = splitter.next_text() {
                out.push(text);
            }
        }
        out
    };
    let whole = texts(data.len());
    assert_eq!(whole, texts(data.len() / 2));
    let mut replica = Replica::default();
    for text in whole.into_iter().flatten() {
        let _ = Value::from_json(&text);
        replica.apply(&Schema::default(), &text);
        let _ = Message::from_value(text);
    }
});
