//! The pure parts of RFC 5880 §6.8: the state transition on reception (§6.8.6), the
//! transmission interval with jitter (§6.8.7) and the detection time (§6.8.4).

use std::time::Duration;

use crate::packet::{Diag, State};

/// Slowest rate while a session is not Up (§6.8.3: "not less than one second").
pub const SLOW_TX: Duration = Duration::from_secs(1);

/// What a received packet does to the local state (§6.8.6, the part after the checks):
/// `(new state, new diag)` when the state changes, else `None`.
///
/// ```text
///  local \ remote   AdminDown       Down            Init            Up
///  Down             -               Init            Up              -
///  Init             Down (diag 3)   -               Up              Up
///  Up               Down (diag 3)   Down (diag 3)   -               -
/// ```
/// A local AdminDown ignores everything (the caller discards the packet first).
pub fn on_receive(local: State, remote: State) -> Option<(State, Diag)> {
    match (local, remote) {
        // "If received state is AdminDown: If bfd.SessionState is not Down: Set bfd.LocalDiag
        // to 3 (Neighbor signaled session down), Set bfd.SessionState to Down"
        (State::Init | State::Up, State::AdminDown) => {
            Some((State::Down, Diag::NeighborSignaledSessionDown))
        }
        // "If bfd.SessionState is Down: If received State is Down: Set bfd.SessionState to
        // Init. Else if received State is Init: Set bfd.SessionState to Up"
        (State::Down, State::Down) => Some((State::Init, Diag::None)),
        (State::Down, State::Init) => Some((State::Up, Diag::None)),
        // "Else if bfd.SessionState is Init: If received State is Init or Up: Set
        // bfd.SessionState to Up"
        (State::Init, State::Init | State::Up) => Some((State::Up, Diag::None)),
        // "Else (bfd.SessionState is Up): If received State is Down: Set bfd.LocalDiag to 3
        // (Neighbor signaled session down), Set bfd.SessionState to Down"
        (State::Up, State::Down) => Some((State::Down, Diag::NeighborSignaledSessionDown)),
        _ => None,
    }
}

/// The interval between periodic transmissions before jitter (§6.8.7): "the larger of
/// bfd.DesiredMinTxInterval and bfd.RemoteMinRxInterval". `None` when the remote asked for
/// none ("If bfd.RemoteMinRxInterval is zero, the local system MUST NOT periodically
/// transmit").
pub fn tx_interval(desired_min_tx_us: u32, remote_min_rx_us: u32) -> Option<Duration> {
    if remote_min_rx_us == 0 {
        return None;
    }
    Some(Duration::from_micros(u64::from(
        desired_min_tx_us.max(remote_min_rx_us),
    )))
}

/// Applies §6.8.7 jitter: "reduced by a random value of 0 to 25%", or to 75–90% when
/// bfd.DetectMult is 1. `unit` is a uniform sample in [0, 1).
pub fn jittered(interval: Duration, detect_mult: u8, unit: f64) -> Duration {
    let (low, high) = if detect_mult == 1 {
        (0.75, 0.90)
    } else {
        (0.75, 1.00)
    };
    interval.mul_f64(low + (high - low) * unit.clamp(0.0, 1.0))
}

/// Detection time in Asynchronous mode (§6.8.4): "the value of Detect Mult received from the
/// remote system, multiplied by the agreed transmit interval of the remote system (the greater
/// of bfd.RequiredMinRxInterval and the last received Desired Min TX Interval)".
pub fn detection_time(
    remote_detect_mult: u8,
    required_min_rx_us: u32,
    remote_desired_min_tx_us: u32,
) -> Duration {
    let agreed = required_min_rx_us.max(remote_desired_min_tx_us);
    Duration::from_micros(u64::from(agreed) * u64::from(remote_detect_mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table() {
        use State::*;
        let table = [
            (Down, AdminDown, None),
            (Down, Down, Some((Init, Diag::None))),
            (Down, Init, Some((Up, Diag::None))),
            (Down, Up, None),
            (
                Init,
                AdminDown,
                Some((Down, Diag::NeighborSignaledSessionDown)),
            ),
            (Init, Down, None),
            (Init, Init, Some((Up, Diag::None))),
            (Init, Up, Some((Up, Diag::None))),
            (
                Up,
                AdminDown,
                Some((Down, Diag::NeighborSignaledSessionDown)),
            ),
            (Up, Down, Some((Down, Diag::NeighborSignaledSessionDown))),
            (Up, Init, None),
            (Up, Up, None),
        ];
        for (local, remote, expected) in table {
            assert_eq!(
                on_receive(local, remote),
                expected,
                "{local:?} receiving {remote:?}"
            );
        }
    }

    #[test]
    fn interval_is_the_larger_and_zero_means_silence() {
        assert_eq!(
            tx_interval(100_000, 300_000),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            tx_interval(1_000_000, 100_000),
            Some(Duration::from_secs(1))
        );
        assert_eq!(tx_interval(100_000, 0), None);
    }

    #[test]
    fn jitter_bounds() {
        let interval = Duration::from_millis(100);
        assert_eq!(jittered(interval, 3, 0.0), Duration::from_millis(75));
        assert!(jittered(interval, 3, 0.999_999) <= interval);
        assert!(jittered(interval, 3, 0.999_999) > Duration::from_micros(99_990));
        assert_eq!(jittered(interval, 1, 0.0), Duration::from_millis(75));
        assert!(jittered(interval, 1, 0.999_999) <= Duration::from_millis(90));
    }

    #[test]
    fn detection_uses_the_remote_multiplier_and_the_slower_side() {
        assert_eq!(
            detection_time(3, 100_000, 100_000),
            Duration::from_millis(300)
        );
        assert_eq!(
            detection_time(5, 100_000, 300_000),
            Duration::from_millis(1500)
        );
        assert_eq!(
            detection_time(3, 1_000_000, 100_000),
            Duration::from_secs(3)
        );
    }
}
