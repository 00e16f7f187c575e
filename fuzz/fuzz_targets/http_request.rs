//! Any bytes a peer sends the daemons' HTTP endpoint: the parser never panics, never keeps
//! more than its limits, and a request it completes stays complete when more bytes follow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veg_daemon::http::{MAX_BODY, Parse, parse_request};

fuzz_target!(|data: &[u8]| {
    match parse_request(data) {
        Parse::Complete(request) => {
            assert!(request.body.chars().count() <= MAX_BODY);
            let mut more = data.to_vec();
            more.extend_from_slice(b"trailing bytes");
            assert_eq!(parse_request(&more), Parse::Complete(request));
        }
        Parse::Incomplete | Parse::TooLarge => {}
    }
});
