//! Real FRR packets (`tests/data/bfd-sample.pcap`, copied from shared/fixtures/bfd) decode to
//! exactly the fields in `bfd-sample.expected.jsonl`, and re-encode to the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use veg_bfd::{ControlPacket, State};

struct Captured {
    ts: f64,
    src: IpAddr,
    dst: IpAddr,
    ttl: u8,
    tos: u8,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
}

/// A minimal pcap reader: Ethernet (with optional VLAN tags), IPv4 or IPv6, UDP.
fn read_pcap(bytes: &[u8]) -> Result<Vec<Captured>> {
    ensure!(bytes.len() >= 24, "no pcap header");
    let magic = u32::from_le_bytes(bytes[0..4].try_into()?);
    let (little, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        other => bail!("not a pcap file (magic {other:#x})"),
    };
    let u32_at = |at: usize| -> Result<u32> {
        let word: [u8; 4] = bytes.get(at..at + 4).context("truncated")?.try_into()?;
        Ok(if little {
            u32::from_le_bytes(word)
        } else {
            u32::from_be_bytes(word)
        })
    };
    ensure!(
        u32_at(20)? == 1,
        "link type {} is not Ethernet",
        u32_at(20)?
    );
    let mut packets = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let seconds = f64::from(u32_at(at)?);
        let fraction = f64::from(u32_at(at + 4)?) / if nanos { 1e9 } else { 1e6 };
        let captured = usize::try_from(u32_at(at + 8)?)?;
        let frame = bytes
            .get(at + 16..at + 16 + captured)
            .context("truncated record")?;
        packets.push(parse_frame(frame, seconds + fraction)?);
        at += 16 + captured;
    }
    Ok(packets)
}

fn parse_frame(frame: &[u8], ts: f64) -> Result<Captured> {
    let mut offset = 12;
    let mut ethertype = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
    while ethertype == 0x8100 {
        offset += 4;
        ethertype = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
    }
    let ip = &frame[offset + 2..];
    let (src, dst, ttl, tos, udp) = match ethertype {
        0x0800 => {
            let header = usize::from(ip[0] & 0x0f) * 4;
            ensure!(ip[9] == 17, "not UDP");
            let src = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[12..16])?);
            let dst = Ipv4Addr::from(<[u8; 4]>::try_from(&ip[16..20])?);
            (
                IpAddr::V4(src),
                IpAddr::V4(dst),
                ip[8],
                ip[1],
                &ip[header..],
            )
        }
        0x86dd => {
            ensure!(ip[6] == 17, "not UDP");
            let class = ((ip[0] & 0x0f) << 4) | (ip[1] >> 4);
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24])?);
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40])?);
            (IpAddr::V6(src), IpAddr::V6(dst), ip[7], class, &ip[40..])
        }
        other => bail!("ethertype {other:#x}"),
    };
    let length = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    Ok(Captured {
        ts,
        src,
        dst,
        ttl,
        tos,
        sport: u16::from_be_bytes([udp[0], udp[1]]),
        dport: u16::from_be_bytes([udp[2], udp[3]]),
        payload: udp[8..length].to_vec(),
    })
}

/// The decoded packet in the fixture's field names.
fn as_fixture_json(captured: &Captured, packet: &ControlPacket) -> Value {
    let state = match packet.state {
        State::AdminDown => 0,
        State::Down => 1,
        State::Init => 2,
        State::Up => 3,
    };
    json!({
        "src": captured.src.to_string(), "dst": captured.dst.to_string(),
        "ttl": captured.ttl, "tos": captured.tos, "sport": captured.sport, "dport": captured.dport,
        "version": 1, "diag": packet.diag.code(), "diag_name": packet.diag.as_str(),
        "state": state, "state_name": packet.state.as_str(),
        "P": packet.poll, "F": packet.final_, "C": packet.control_plane_independent,
        "A": packet.auth.is_some(), "D": packet.demand, "M": false,
        "detect_mult": packet.detect_mult, "length": captured.payload[3],
        "my_disc": packet.my_discr, "your_disc": packet.your_discr,
        "desired_min_tx_us": packet.desired_min_tx_us,
        "required_min_rx_us": packet.required_min_rx_us,
        "required_min_echo_rx_us": packet.required_min_echo_rx_us,
    })
}

#[test]
fn frr_capture_decodes_to_the_expected_fields() -> Result<()> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let packets = read_pcap(&std::fs::read(data.join("bfd-sample.pcap"))?)?;
    let expected: Vec<Value> = std::fs::read_to_string(data.join("bfd-sample.expected.jsonl"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(
        packets.len() == 32 && expected.len() == 32,
        "{} packets, {} lines",
        packets.len(),
        expected.len()
    );
    for (index, (captured, mut want)) in packets.iter().zip(expected).enumerate() {
        let packet = ControlPacket::decode(&captured.payload)
            .map_err(|error| anyhow::anyhow!("packet {}: {error}", index + 1))?;
        let want_ts = want["ts"].as_f64().context("ts")?;
        ensure!(
            (captured.ts - want_ts).abs() < 1e-6,
            "packet {}: ts {} != {want_ts}",
            index + 1,
            captured.ts
        );
        want.as_object_mut().context("object")?.remove("ts");
        let got = as_fixture_json(captured, &packet);
        ensure!(
            got == want,
            "packet {}:\n got  {got}\n want {want}",
            index + 1
        );
        ensure!(
            packet.encode() == captured.payload,
            "packet {}: re-encoding changed the bytes",
            index + 1
        );
    }
    Ok(())
}
