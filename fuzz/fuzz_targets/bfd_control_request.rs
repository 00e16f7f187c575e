//! Any line on the control socket: parsing never panics, and an accepted request survives a
//! serialise/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veg_bfd::control::{Request, parse_request};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = parse_request(line) {
        let text = serde_json::to_string(&request).expect("requests serialise");
        let again: Request = parse_request(&text).expect("a serialised request parses");
        assert_eq!(again, request);
    }
});
