//! The BFD Control packet (RFC 5880 §4.1) and its optional authentication section (§4.2–4.4):
//! decoding with every packet-level reception check of §6.8.6, and encoding.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Checks that need session state (discriminator lookup, authentication expected or not,
//! sequence windows) live in `session`/`sessions`; the ones here need only the bytes.

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// Length of the mandatory section.
pub const MANDATORY_LEN: usize = 24;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Length of a keyed SHA1 authentication section.
const SHA1_AUTH_LEN: usize = 28;
/// Length of a keyed MD5 authentication section.
const MD5_AUTH_LEN: usize = 24;

// ===== types =====

/// Session state (RFC 5880 §4.1 "Sta").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// 0.
    AdminDown,
    /// 1.
    Down,
    /// 2.
    Init,
    /// 3.
    Up,
}

/// Diagnostic code (RFC 5880 §4.1 "Diag"); values 9–31 are reserved and kept as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Diag {
    /// 0 No Diagnostic.
    None,
    /// 1 Control Detection Time Expired.
    ControlDetectionTimeExpired,
    /// 2 Echo Function Failed.
    EchoFunctionFailed,
    /// 3 Neighbor Signaled Session Down.
    NeighborSignaledSessionDown,
    /// 4 Forwarding Plane Reset.
    ForwardingPlaneReset,
    /// 5 Path Down.
    PathDown,
    /// 6 Concatenated Path Down.
    ConcatenatedPathDown,
    /// 7 Administratively Down.
    AdministrativelyDown,
    /// 8 Reverse Concatenated Path Down.
    ReverseConcatenatedPathDown,
    /// 9–31, reserved.
    Reserved(u8),
}

/// The authentication section (RFC 5880 §4.2–4.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// Type 1: a password in clear (1–16 bytes).
    SimplePassword { key_id: u8, password: Vec<u8> },
    /// Type 2 (keyed) or 3 (meticulous keyed) MD5.
    Md5 {
        /// Meticulous: the sequence number grows with every packet.
        meticulous: bool,
        key_id: u8,
        /// Sequence number.
        sequence: u32,
        /// The digest as sent.
        digest: [u8; 16],
    },
    /// Type 4 (keyed) or 5 (meticulous keyed) SHA1.
    Sha1 {
        /// Meticulous: the sequence number grows with every packet.
        meticulous: bool,
        key_id: u8,
        /// Sequence number.
        sequence: u32,
        /// The hash as sent.
        hash: [u8; 20],
    },
}

/// A decoded Control packet. Intervals are in microseconds, as on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPacket {
    /// Diagnostic.
    pub diag: Diag,
    /// State of the sender.
    pub state: State,
    /// P: the sender asks for verification of a parameter change.
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: the sender's forwarding does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wants demand mode.
    pub demand: bool,
    pub detect_mult: u8,
    /// My Discriminator.
    pub my_discr: u32,
    /// Your Discriminator.
    pub your_discr: u32,
    /// Desired Min TX Interval, µs.
    pub desired_min_tx_us: u32,
    /// Required Min RX Interval, µs.
    pub required_min_rx_us: u32,
    /// Required Min Echo RX Interval, µs.
    pub required_min_echo_rx_us: u32,
    /// Authentication section, present when the A bit is set.
    pub auth: Option<Auth>,
}

/// Why bytes are not an acceptable Control packet (RFC 5880 §6.8.6, packet-level checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the mandatory section.
    #[error("packet of {len} bytes is shorter than 24")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// "If the version number is not correct (1), the packet MUST be discarded."
    #[error("version {version}, expected 1")]
    BadVersion {
        /// Version field.
        version: u8,
    },
    /// "If the Length field is less than the minimum correct value (24 if the A bit is clear,
    /// or 26 if the A bit is set), the packet MUST be discarded."
    #[error("length field {length} below the minimum {minimum}")]
    LengthTooSmall {
        /// Length field.
        length: u8,
        /// 24 or 26.
        minimum: u8,
    },
    /// "If the Length field is greater than the payload of the encapsulating protocol, the
    /// packet MUST be discarded."
    #[error("length field {length} beyond the {available} bytes received")]
    LengthBeyondPayload {
        /// Length field.
        length: u8,
        /// Bytes received.
        available: usize,
    },
    /// "If the Detect Mult field is zero, the packet MUST be discarded."
    #[error("detect multiplier is zero")]
    ZeroDetectMult,
    /// "If the Multipoint (M) bit is nonzero, the packet MUST be discarded."
    #[error("multipoint bit set")]
    Multipoint,
    /// "If the My Discriminator field is zero, the packet MUST be discarded."
    #[error("my discriminator is zero")]
    ZeroMyDiscr,
    /// "If the Your Discriminator field is zero and the State field is not Down or AdminDown,
    /// the packet MUST be discarded."
    #[error("your discriminator is zero in state {state:?}")]
    ZeroYourDiscr {
        /// State field.
        state: State,
    },
    /// The A bit is set but the section is cut short or its Auth Len disagrees.
    #[error("authentication section of type {auth_type} with bad length {auth_len}")]
    BadAuthLength { auth_type: u8, auth_len: u8 },
    /// An Auth Type RFC 5880 does not define.
    #[error("unknown authentication type {auth_type}")]
    UnknownAuthType { auth_type: u8 },
}

// ===== impls =====

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// The wire value.
    pub fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// A bounded label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        }
    }
}

impl Diag {
    /// From the 5-bit field.
    pub fn from_code(code: u8) -> Diag {
        match code & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Reserved(other),
        }
    }

    /// The wire value.
    pub fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(code) => code & 0x1f,
        }
    }

    /// A short name, as FRR and our logs print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Diag::None => "none",
            Diag::ControlDetectionTimeExpired => "ctl-detect-expired",
            Diag::EchoFunctionFailed => "echo-failed",
            Diag::NeighborSignaledSessionDown => "neighbor-down",
            Diag::ForwardingPlaneReset => "fwd-plane-reset",
            Diag::PathDown => "path-down",
            Diag::ConcatenatedPathDown => "concat-path-down",
            Diag::AdministrativelyDown => "admin-down",
            Diag::ReverseConcatenatedPathDown => "rev-concat-path-down",
            Diag::Reserved(_) => "reserved",
        }
    }
}

impl DecodeError {
    /// A bounded label for the drop counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::BadVersion { .. } => "bad_version",
            DecodeError::LengthTooSmall { .. } => "length_too_small",
            DecodeError::LengthBeyondPayload { .. } => "length_beyond_payload",
            DecodeError::ZeroDetectMult => "zero_detect_mult",
            DecodeError::Multipoint => "multipoint",
            DecodeError::ZeroMyDiscr => "zero_my_discr",
            DecodeError::ZeroYourDiscr { .. } => "zero_your_discr",
            DecodeError::BadAuthLength { .. } => "bad_auth_length",
            DecodeError::UnknownAuthType { .. } => "unknown_auth_type",
        }
    }
}

impl ControlPacket {
    /// A packet with the values of a session starting up (RFC 5880 §6.8.3): 1 s intervals,
    /// multiplier 3, no diagnostic, no flags, no Echo, no authentication. Change fields with
    /// struct update syntax.
    pub fn new(state: State, my_discr: u32, your_discr: u32) -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discr,
            your_discr,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 1_000_000,
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    /// Decodes and checks a packet; bytes past the Length field are ignored.
    pub fn decode(bytes: &[u8]) -> Result<ControlPacket, DecodeError> {
        if bytes.len() < MANDATORY_LEN {
            return Err(DecodeError::TooShort { len: bytes.len() });
        }
        let version = bytes[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::BadVersion { version });
        }
        let flags = bytes[1];
        let auth_present = flags & 0x04 != 0;
        let length = bytes[3];
        let minimum = if auth_present { 26 } else { 24 };
        if length < minimum {
            return Err(DecodeError::LengthTooSmall { length, minimum });
        }
        if usize::from(length) > bytes.len() {
            return Err(DecodeError::LengthBeyondPayload {
                length,
                available: bytes.len(),
            });
        }
        let detect_mult = bytes[2];
        if detect_mult == 0 {
            return Err(DecodeError::ZeroDetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let state = State::from_bits(flags >> 6);
        let my_discr = word(4);
        let your_discr = word(8);
        if my_discr == 0 {
            return Err(DecodeError::ZeroMyDiscr);
        }
        if your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::ZeroYourDiscr { state });
        }
        let auth = if auth_present {
            Some(decode_auth(&bytes[MANDATORY_LEN..usize::from(length)])?)
        } else {
            None
        };
        Ok(ControlPacket {
            diag: Diag::from_code(bytes[0]),
            state,
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            demand: flags & 0x02 != 0,
            detect_mult,
            my_discr,
            your_discr,
            desired_min_tx_us: word(12),
            required_min_rx_us: word(16),
            required_min_echo_rx_us: word(20),
            auth,
        })
    }

    /// Encodes the packet. A keyed SHA1/MD5 section is written as given; use
    /// [`ControlPacket::encode_sha1`] to sign one.
    pub fn encode(&self) -> Vec<u8> {
        let auth = self.auth.as_ref().map(encode_auth).unwrap_or_default();
        let length = MANDATORY_LEN + auth.len();
        let mut out = Vec::with_capacity(length);
        out.push((VERSION << 5) | self.diag.code());
        let flag = |set: bool, bit: u8| if set { bit } else { 0 };
        out.push(
            (self.state.bits() << 6)
                | flag(self.poll, 0x20)
                | flag(self.final_, 0x10)
                | flag(self.control_plane_independent, 0x08)
                | flag(self.auth.is_some(), 0x04)
                | flag(self.demand, 0x02),
        );
        out.push(self.detect_mult);
        // The auth section is at most 28 bytes, so the total fits a byte.
        out.push(u8::try_from(length).unwrap_or(u8::MAX));
        for word in [
            self.my_discr,
            self.your_discr,
            self.desired_min_tx_us,
            self.required_min_rx_us,
            self.required_min_echo_rx_us,
        ] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(&auth);
        out
    }

    /// Encodes the packet with a keyed SHA1 section (RFC 5880 §6.7.4): the key, padded to 20
    /// bytes, stands in the hash field while the SHA1 of the whole packet is computed.
    pub fn encode_sha1(&self, meticulous: bool, key_id: u8, sequence: u32, key: &[u8]) -> Vec<u8> {
        let mut packet = self.clone();
        packet.auth = Some(Auth::Sha1 {
            meticulous,
            key_id,
            sequence,
            hash: padded_key(key),
        });
        let mut bytes = packet.encode();
        let hash = Sha1::digest(&bytes);
        bytes[MANDATORY_LEN + 8..MANDATORY_LEN + SHA1_AUTH_LEN].copy_from_slice(&hash);
        bytes
    }
}

/// Whether a received packet's keyed SHA1 hash is right for `key` (RFC 5880 §6.7.4): the hash
/// is recomputed with the key in its place and compared.
pub fn verify_sha1(bytes: &[u8], key: &[u8]) -> bool {
    let Some(length) = bytes.get(3).map(|length| usize::from(*length)) else {
        return false;
    };
    if length != MANDATORY_LEN + SHA1_AUTH_LEN || bytes.len() < length {
        return false;
    }
    let hash_range = MANDATORY_LEN + 8..length;
    let received = bytes[hash_range.clone()].to_vec();
    let mut copy = bytes[..length].to_vec();
    copy[hash_range].copy_from_slice(&padded_key(key));
    let expected = Sha1::digest(&copy);
    // Compare without an early exit, so timing says nothing about the hash.
    expected
        .iter()
        .zip(&received)
        .fold(0u8, |diff, (a, b)| diff | (a ^ b))
        == 0
}

fn padded_key(key: &[u8]) -> [u8; 20] {
    let mut padded = [0u8; 20];
    let used = key.len().min(20);
    padded[..used].copy_from_slice(&key[..used]);
    padded
}

// ===== authentication section =====

fn decode_auth(section: &[u8]) -> Result<Auth, DecodeError> {
    let auth_type = section[0];
    let auth_len = section[1];
    let bad_length = DecodeError::BadAuthLength {
        auth_type,
        auth_len,
    };
    if usize::from(auth_len) != section.len() {
        return Err(bad_length);
    }
    let sequence =
        |section: &[u8]| u32::from_be_bytes([section[4], section[5], section[6], section[7]]);
    match auth_type {
        // §4.2: Auth Len is the password length + 3, the password 1–16 bytes.
        1 if (4..=19).contains(&auth_len) => Ok(Auth::SimplePassword {
            key_id: section[2],
            password: section[3..].to_vec(),
        }),
        2 | 3 if usize::from(auth_len) == MD5_AUTH_LEN => {
            let mut digest = [0u8; 16];
            digest.copy_from_slice(&section[8..24]);
            Ok(Auth::Md5 {
                meticulous: auth_type == 3,
                key_id: section[2],
                sequence: sequence(section),
                digest,
            })
        }
        4 | 5 if usize::from(auth_len) == SHA1_AUTH_LEN => {
            let mut hash = [0u8; 20];
            hash.copy_from_slice(&section[8..28]);
            Ok(Auth::Sha1 {
                meticulous: auth_type == 5,
                key_id: section[2],
                sequence: sequence(section),
                hash,
            })
        }
        1..=5 => Err(bad_length),
        _ => Err(DecodeError::UnknownAuthType { auth_type }),
    }
}

fn encode_auth(auth: &Auth) -> Vec<u8> {
    match auth {
        Auth::SimplePassword { key_id, password } => {
            let password = &password[..password.len().min(16)];
            let mut out = vec![1, u8::try_from(password.len() + 3).unwrap_or(19), *key_id];
            out.extend_from_slice(password);
            out
        }
        Auth::Md5 {
            meticulous,
            key_id,
            sequence,
            digest,
        } => {
            let mut out = vec![if *meticulous { 3 } else { 2 }, 24, *key_id, 0];
            out.extend_from_slice(&sequence.to_be_bytes());
            out.extend_from_slice(digest);
            out
        }
        Auth::Sha1 {
            meticulous,
            key_id,
            sequence,
            hash,
        } => {
            let mut out = vec![if *meticulous { 5 } else { 4 }, 28, *key_id, 0];
            out.extend_from_slice(&sequence.to_be_bytes());
            out.extend_from_slice(hash);
            out
        }
    }
}

#[cfg(test)]
mod tests;
