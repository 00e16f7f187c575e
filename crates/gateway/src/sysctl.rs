//! Sysctls under /proc/sys of the current network namespace.
//!
//! With CAP_NET_ADMIN a process may write its own namespace's `net.*` sysctls, but container
//! runtimes mount /proc/sys read-only in containers that are not privileged: the gateway Pod's
//! privileged init container sets them, `veg gateway run` only checks them, and a wrong value
//! is reported, not papered over.

use std::io;
use std::path::PathBuf;

/// The file of a sysctl key. Interface names may contain dots, so the `conf.<interface>.`
/// component is kept whole.
pub fn path(key: &str) -> PathBuf {
    let mut path = PathBuf::from("/proc/sys");
    for family in ["net.ipv4.conf.", "net.ipv6.conf."] {
        if let Some(rest) = key.strip_prefix(family)
            && let Some((interface, leaf)) = rest.rsplit_once('.')
        {
            path.extend(family.trim_end_matches('.').split('.'));
            path.push(interface);
            path.push(leaf);
            return path;
        }
    }
    path.extend(key.split('.'));
    path
}

/// The current value, `None` when the key does not exist.
pub fn read(key: &str) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path(key)) {
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Writes a value.
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_with_dots_stay_one_component() {
        assert_eq!(
            path("net.ipv4.conf.net1.100.rp_filter"),
            PathBuf::from("/proc/sys/net/ipv4/conf/net1.100/rp_filter")
        );
        assert_eq!(
            path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path("net.ipv6.conf.all.forwarding"),
            PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding")
        );
    }
}
