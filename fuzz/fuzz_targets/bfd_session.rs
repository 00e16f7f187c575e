//! Sequences of packets into live sessions (not just decoding): an active session towards B
//! and a passive one B's neighbour A may open, fed packets built from the input — valid
//! Control packets with fuzzed fields, or raw bytes — from either peer or a stranger, at
//! fuzzed TTLs and times, with the timers run in between. Nothing panics, and the sessions'
//! states stay coherent (a session is Up only with a remote discriminator).
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use veg_bfd::{ControlPacket, Role, SessionConfig, Sessions, State};

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));

fn config(peer: IpAddr, role: Role) -> SessionConfig {
    SessionConfig {
        peer,
        local: None,
        role,
        desired_min_tx: Duration::from_millis(10),
        required_min_rx: Duration::from_millis(10),
        detect_mult: 3,
        min_ttl: 255,
        auth: None,
        silent_path_down: false,
    }
}

fn take<const N: usize>(data: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = data.split_first_chunk::<N>()?;
    *data = rest;
    Some(*head)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let mut now = Instant::now();
    let mut next = 7u32;
    let mut sessions = Sessions::new(move || {
        next = next.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        next
    });
    if sessions.add(config(B, Role::Active), now).is_err() {
        return;
    }
    sessions.allow(config(A, Role::Passive));
    let mut jitter = || 0.5;
    let mut out = Vec::new();
    while let Some([kind, source, ttl, advance]) = take::<4>(&mut data) {
        now += Duration::from_millis(u64::from(advance % 64));
        let source = match source % 3 {
            0 => A,
            1 => B,
            _ => STRANGER,
        };
        let ttl = if ttl < 128 { 255 } else { ttl };
        let bytes = if kind % 2 == 0 {
            let Some([state, flags, mult, my0, my1, your0, your1, tx, rx]) = take::<9>(&mut data)
            else {
                break;
            };
            let state = match state % 4 {
                0 => State::AdminDown,
                1 => State::Down,
                2 => State::Init,
                _ => State::Up,
            };
            // Discriminators from a small range, so they meet the real ones.
            let known = sessions.status(now);
            let pick = |selector: u8, low: u8| -> u32 {
                match selector % 4 {
                    0 => 0,
                    1 => known.first().map_or(1, |s| s.local_discr),
                    2 => known.last().map_or(1, |s| s.local_discr),
                    _ => u32::from(low),
                }
            };
            let mut packet = ControlPacket::new(state, pick(my0, my1).max(1), pick(your0, your1));
            packet.poll = flags & 1 != 0;
            packet.final_ = flags & 2 != 0;
            packet.demand = flags & 4 != 0;
            packet.detect_mult = mult;
            packet.desired_min_tx_us = u32::from(tx) * 1000;
            packet.required_min_rx_us = u32::from(rx) * 1000;
            packet.encode()
        } else {
            let Some([length]) = take::<1>(&mut data) else {
                break;
            };
            let length = usize::from(length % 64).min(data.len());
            let (raw, rest) = data.split_at(length);
            data = rest;
            raw.to_vec()
        };
        let _ = sessions.receive(&bytes, source, None, ttl, now);
        out.clear();
        sessions.poll(now, &mut jitter, &mut out);
        for status in sessions.status(now) {
            assert!(
                status.state != State::Up || status.remote_discr != 0,
                "Up without a remote discriminator: {status:?}"
            );
        }
    }
});
