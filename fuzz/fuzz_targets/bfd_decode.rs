//! Any bytes from the network: decoding never panics, and whatever decodes re-encodes to
//! bytes that decode to the same packet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use veg_bfd::ControlPacket;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = ControlPacket::decode(data) {
        let again = ControlPacket::decode(&packet.encode());
        assert_eq!(again.as_ref(), Ok(&packet));
        let _ = veg_bfd::packet::verify_sha1(data, b"key");
    }
});
