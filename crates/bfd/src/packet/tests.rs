use proptest::prelude::*;

use super::*;

/// A valid Up packet from FRR (fixture packet 29, IPv4 steady state).
fn up_packet() -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state: State::Up,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 598_453_385,
        your_discr: 3_194_710_320,
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 50_000,
        auth: None,
    }
}

#[test]
fn encodes_the_wire_layout() {
    let bytes = up_packet().encode();
    let expected: [u8; 24] = [
        0x20, 0xc0, 0x03, 0x18, // v1 diag 0, Up, mult 3, len 24
        0x23, 0xab, 0xac, 0x89, // my discr 598453385
        0xbe, 0x6b, 0x69, 0x30, // your discr 3194710320
        0x00, 0x01, 0x86, 0xa0, // 100000 µs
        0x00, 0x01, 0x86, 0xa0, // 100000 µs
        0x00, 0x00, 0xc3, 0x50, // 50000 µs
    ];
    assert_eq!(bytes, expected);
    assert_eq!(ControlPacket::decode(&bytes), Ok(up_packet()));
}

/// Bytes of `up_packet` with `edit` applied.
fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = up_packet().encode();
    edit(&mut bytes);
    bytes
}

// One test per DecodeError variant.

#[test]
fn rejects_short_packets() {
    assert_eq!(
        ControlPacket::decode(&[0x20; 23]),
        Err(DecodeError::TooShort { len: 23 })
    );
}

#[test]
fn rejects_other_versions() {
    let bytes = edited(|b| b[0] = (2 << 5) | (b[0] & 0x1f));
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::BadVersion { version: 2 })
    );
}

#[test]
fn rejects_length_below_minimum() {
    let bytes = edited(|b| b[3] = 23);
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::LengthTooSmall {
            length: 23,
            minimum: 24
        })
    );
    let bytes = edited(|b| {
        b[1] |= 0x04; // A bit: 26 at least
        b[3] = 25;
        b.extend_from_slice(&[0, 0]);
    });
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::LengthTooSmall {
            length: 25,
            minimum: 26
        })
    );
}

#[test]
fn rejects_length_beyond_payload() {
    let bytes = edited(|b| b[3] = 28);
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::LengthBeyondPayload {
            length: 28,
            available: 24
        })
    );
}

#[test]
fn ignores_bytes_past_the_length_field() {
    let bytes = edited(|b| b.extend_from_slice(&[0xff; 8]));
    assert_eq!(ControlPacket::decode(&bytes), Ok(up_packet()));
}

#[test]
fn rejects_zero_detect_mult() {
    let bytes = edited(|b| b[2] = 0);
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::ZeroDetectMult)
    );
}

#[test]
fn rejects_multipoint() {
    let bytes = edited(|b| b[1] |= 0x01);
    assert_eq!(ControlPacket::decode(&bytes), Err(DecodeError::Multipoint));
}

#[test]
fn rejects_zero_my_discr() {
    let bytes = edited(|b| b[4..8].fill(0));
    assert_eq!(ControlPacket::decode(&bytes), Err(DecodeError::ZeroMyDiscr));
}

#[test]
fn zero_your_discr_only_in_down_and_admin_down() {
    for state in [State::Up, State::Init] {
        let bytes = edited(|b| {
            b[1] = (b[1] & 0x3f) | (state.bits() << 6);
            b[8..12].fill(0);
        });
        assert_eq!(
            ControlPacket::decode(&bytes),
            Err(DecodeError::ZeroYourDiscr { state })
        );
    }
    for state in [State::Down, State::AdminDown] {
        let mut packet = up_packet();
        packet.state = state;
        packet.your_discr = 0;
        assert_eq!(ControlPacket::decode(&packet.encode()), Ok(packet));
    }
}

#[test]
fn rejects_bad_auth_lengths() {
    // Simple password with Auth Len 3 (no password).
    let bytes = edited(|b| {
        b[1] |= 0x04;
        b[3] = 27;
        b.extend_from_slice(&[1, 3, 1]);
    });
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::BadAuthLength {
            auth_type: 1,
            auth_len: 3
        })
    );
    // SHA1 whose Auth Len disagrees with the Length field.
    let mut bytes = up_packet().encode_sha1(false, 1, 7, b"secret");
    bytes[MANDATORY_LEN + 1] = 24;
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::BadAuthLength {
            auth_type: 4,
            auth_len: 24
        })
    );
}

#[test]
fn rejects_unknown_auth_types() {
    let bytes = edited(|b| {
        b[1] |= 0x04;
        b[3] = 28;
        b.extend_from_slice(&[9, 4, 1, 0]);
    });
    assert_eq!(
        ControlPacket::decode(&bytes),
        Err(DecodeError::UnknownAuthType { auth_type: 9 })
    );
}

#[test]
fn parses_every_auth_type() {
    let cases = [
        Auth::SimplePassword {
            key_id: 3,
            password: b"pw".to_vec(),
        },
        Auth::Md5 {
            meticulous: false,
            key_id: 1,
            sequence: 9,
            digest: [7; 16],
        },
        Auth::Md5 {
            meticulous: true,
            key_id: 1,
            sequence: 10,
            digest: [8; 16],
        },
        Auth::Sha1 {
            meticulous: false,
            key_id: 2,
            sequence: 11,
            hash: [9; 20],
        },
        Auth::Sha1 {
            meticulous: true,
            key_id: 2,
            sequence: 12,
            hash: [10; 20],
        },
    ];
    for auth in cases {
        let mut packet = up_packet();
        packet.auth = Some(auth);
        assert_eq!(ControlPacket::decode(&packet.encode()), Ok(packet));
    }
}

#[test]
fn keyed_sha1_signs_and_verifies() {
    let bytes = up_packet().encode_sha1(true, 5, 1000, b"secret");
    assert_eq!(bytes.len(), 52);
    assert_eq!(bytes[3], 52);
    assert!(verify_sha1(&bytes, b"secret"));
    assert!(!verify_sha1(&bytes, b"Secret"));
    let mut tampered = bytes.clone();
    tampered[16] ^= 1; // Required Min RX
    assert!(!verify_sha1(&tampered, b"secret"));
    let decoded = ControlPacket::decode(&bytes).map(|packet| packet.auth);
    assert!(matches!(
        decoded,
        Ok(Some(Auth::Sha1 {
            meticulous: true,
            key_id: 5,
            sequence: 1000,
            ..
        }))
    ));
    // Known answer: SHA1 over this packet with "secret" padded in the hash field, computed
    // with Python's hashlib.
    assert_eq!(
        hex(&bytes[32..52]),
        "9a0ba9e58fcc189d136f5f775d4a5fa881006679"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn any_auth() -> impl Strategy<Value = Option<Auth>> {
    prop_oneof![
        Just(None),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 1..=16))
            .prop_map(|(key_id, password)| Some(Auth::SimplePassword { key_id, password })),
        (any::<bool>(), any::<u8>(), any::<u32>(), any::<[u8; 16]>()).prop_map(
            |(meticulous, key_id, sequence, digest)| Some(Auth::Md5 {
                meticulous,
                key_id,
                sequence,
                digest
            })
        ),
        (any::<bool>(), any::<u8>(), any::<u32>(), any::<[u8; 20]>()).prop_map(
            |(meticulous, key_id, sequence, hash)| Some(Auth::Sha1 {
                meticulous,
                key_id,
                sequence,
                hash
            })
        ),
    ]
}

fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::AdminDown),
        Just(State::Down),
        Just(State::Init),
        Just(State::Up)
    ]
}

prop_compose! {
    fn any_packet()(
        diag in 0u8..32, state in any_state(), poll: bool, final_: bool, cpi: bool, demand: bool,
        detect_mult in 1u8..=255, my_discr in 1u32.., your_discr in 1u32..,
        tx: u32, rx: u32, echo: u32, auth in any_auth(),
    ) -> ControlPacket {
        ControlPacket {
            diag: Diag::from_code(diag), state, poll, final_, control_plane_independent: cpi, demand,
            detect_mult, my_discr, your_discr, desired_min_tx_us: tx, required_min_rx_us: rx,
            required_min_echo_rx_us: echo, auth,
        }
    }
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(packet in any_packet()) {
        let bytes = packet.encode();
        prop_assert_eq!(usize::from(bytes[3]), bytes.len());
        prop_assert_eq!(ControlPacket::decode(&bytes), Ok(packet));
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = ControlPacket::decode(&bytes);
    }
}
