//! The sockets of RFC 5881 (single hop BFD over UDP): the only file that makes socket calls.
//!
//! - Receive: one socket per address family on port 3784, reporting each datagram's TTL or
//!   hop limit (`IP_RECVTTL`/`IPV6_RECVHOPLIMIT`) so GTSM can be checked per peer.
//! - Send: one socket per source address (or per family when routing picks it), bound to a
//!   port in 49152–65535 and sending with TTL/hop limit 255 and traffic class CS6 (§4, §5).
//!   Every session from that address shares the port, which RFC 5881 allows ("the same UDP
//!   source port number MUST be used for all BFD Control packets associated with a
//!   particular session").

use std::collections::HashMap;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::error::Error;
use crate::sessions::Outgoing;

/// Destination port of single hop BFD Control packets.
pub const CONTROL_PORT: u16 = 3784;
/// The source port range of RFC 5881 §4.
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// TTL / hop limit we send with (RFC 5881 §5).
const TTL: u32 = 255;
/// Traffic class CS6 (network control), as FRR sends.
const CS6: u32 = 0xc0;

/// A received datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes written into the buffer.
    pub len: usize,
    /// Source address.
    pub source: IpAddr,
    /// The local address it was sent to, when the kernel said; a passive session answers
    /// from it.
    pub destination: Option<IpAddr>,
    /// TTL or hop limit it arrived with (0 when the kernel did not say).
    pub ttl: u8,
}

/// The daemon's sockets.
#[derive(Debug)]
pub struct Network {
    rx_v4: Option<UdpSocket>,
    rx_v6: Option<UdpSocket>,
    /// Send sockets by source address (`None`: one per family, unbound address).
    tx: HashMap<TxKey, Socket>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TxKey {
    Local(IpAddr),
    AnyV4,
    AnyV6,
}

// ===== impl Network =====

impl Network {
    /// Opens the receive sockets of the wanted families. A family that cannot be opened is an
    /// error only when it was asked for explicitly (`require_*`).
    pub fn bind(v4: bool, v6: bool, require_v6: bool) -> Result<Network, Error> {
        let rx_v4 = if v4 {
            Some(rx_socket(IpAddr::V4(Ipv4Addr::UNSPECIFIED))?)
        } else {
            None
        };
        let rx_v6 = if v6 {
            match rx_socket(IpAddr::V6(Ipv6Addr::UNSPECIFIED)) {
                Ok(socket) => Some(socket),
                Err(error) if !require_v6 => {
                    tracing::warn!(error = %error, "IPv6 BFD disabled: cannot open its socket");
                    None
                }
                Err(error) => return Err(error),
            }
        } else {
            None
        };
        Ok(Network {
            rx_v4,
            rx_v6,
            tx: HashMap::new(),
        })
    }

    /// Waits for the next datagram on either family.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        loop {
            let socket = match (&self.rx_v4, &self.rx_v6) {
                (Some(v4), Some(v6)) => tokio::select! {
                    ready = v4.readable() => ready.map(|()| v4)?,
                    ready = v6.readable() => ready.map(|()| v6)?,
                },
                (Some(socket), None) | (None, Some(socket)) => {
                    socket.readable().await?;
                    socket
                }
                (None, None) => std::future::pending().await,
            };
            // A spurious wake-up (would block) clears readiness; wait again.
            match socket.try_io(Interest::READABLE, || recv_with_ttl(socket, buf)) {
                Ok(datagram) => return Ok(datagram),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends a packet to the peer's port 3784 from the session's source address.
    pub fn send(&mut self, packet: &Outgoing) -> Result<(), Error> {
        let key = match packet.local {
            Some(local) => TxKey::Local(local),
            None if packet.peer.is_ipv4() => TxKey::AnyV4,
            None => TxKey::AnyV6,
        };
        let socket = match self.tx.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => entry.insert(tx_socket(key)?),
        };
        let destination = SockAddr::from(SocketAddr::new(packet.peer, CONTROL_PORT));
        socket
            .send_to(&packet.bytes, &destination)
            .map(|_| ())
            .map_err(|error| Error::Send {
                peer: packet.peer,
                error,
            })
    }
}

fn recv_with_ttl(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(i32, nix::libc::in6_pktinfo);
    let message = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut ttl = 0u8;
    let mut destination = None;
    for cmsg in message.cmsgs().map_err(io::Error::from)? {
        match cmsg {
            ControlMessageOwned::Ipv4Ttl(value) | ControlMessageOwned::Ipv6HopLimit(value) => {
                ttl = u8::try_from(value).unwrap_or(0);
            }
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                destination = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    info.ipi_addr.s_addr,
                ))));
            }
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                destination = Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    let source = message
        .address
        .as_ref()
        .and_then(|address| {
            address
                .as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    Ok(Datagram {
        len: message.bytes,
        source,
        destination,
        ttl,
    })
}

/// A non-blocking UDP socket of `address`'s family (IPv6 only for IPv6), not yet bound.
fn udp_socket(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn rx_socket(any: IpAddr) -> Result<UdpSocket, Error> {
    let address = SocketAddr::new(any, CONTROL_PORT);
    let bind_error = |error| Error::Bind { address, error };
    let socket = udp_socket(address).map_err(bind_error)?;
    if any.is_ipv6() {
        setsockopt(&socket, sockopt::Ipv6RecvHopLimit, &true)
            .map_err(|errno| bind_error(io::Error::from(errno)))?;
        setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
            .map_err(|errno| bind_error(io::Error::from(errno)))?;
    } else {
        setsockopt(&socket, sockopt::Ipv4RecvTtl, &true)
            .map_err(|errno| bind_error(io::Error::from(errno)))?;
        setsockopt(&socket, sockopt::Ipv4PacketInfo, &true)
            .map_err(|errno| bind_error(io::Error::from(errno)))?;
    }
    socket.bind(&address.into()).map_err(bind_error)?;
    UdpSocket::from_std(std::net::UdpSocket::from(socket)).map_err(bind_error)
}

fn tx_socket(key: TxKey) -> Result<Socket, Error> {
    let local = match key {
        TxKey::Local(local) => local,
        TxKey::AnyV4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        TxKey::AnyV6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let address = SocketAddr::new(local, 0);
    let bind_error = |error| Error::Bind { address, error };
    let socket = udp_socket(address).map_err(bind_error)?;
    if local.is_ipv6() {
        socket.set_unicast_hops_v6(TTL).map_err(bind_error)?;
        socket.set_tclass_v6(CS6).map_err(bind_error)?;
    } else {
        socket.set_ttl_v4(TTL).map_err(bind_error)?;
        socket.set_tos_v4(CS6).map_err(bind_error)?;
    }
    // A random start spreads daemons over the range; walk it until a port is free.
    let span = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let start = rand::random::<u32>() % span;
    let mut last_error = None;
    for offset in 0..span.min(512) {
        let port = *SOURCE_PORTS.start() + u16::try_from((start + offset) % span).unwrap_or(0);
        match socket.bind(&SocketAddr::new(local, port).into()) {
            Ok(()) => return Ok(socket),
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(bind_error(error)),
        }
    }
    Err(bind_error(
        last_error.unwrap_or_else(|| io::Error::other("no free source port")),
    ))
}
