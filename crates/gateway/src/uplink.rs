//! Uplink fate sharing: is the external gateway reachable? (pure verdicts; the probing is in
//! `netlink`, the loop in `agent`).
//!
//! Each tick reads the neighbour entry of every external gateway (the verdict on the probe
//! sent one tick earlier: Reachable only when a reply came) and the external link's carrier,
//! then sends a fresh probe. `multiplier` missed ticks in a row take the uplink down;
//! `multiplier` good ticks in a row bring it back, so a flapping uplink does not flap BFD.

/// The uplink's state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    multiplier: u32,
    up: bool,
    streak: u32,
}

impl Uplink {
    /// Starts up: BFD is not disturbed before a failure is seen.
    pub fn new(multiplier: u32) -> Self {
        Self {
            multiplier: multiplier.max(1),
            up: true,
            streak: 0,
        }
    }

    /// Whether the uplink is considered up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one tick's verdict; returns the new state when it changed.
    pub fn record(&mut self, reachable: bool) -> Option<bool> {
        if reachable == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        if self.streak >= self.multiplier {
            self.up = reachable;
            self.streak = 0;
            Some(self.up)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_after_multiplier_misses_in_a_row_and_up_after_as_many_successes() {
        let mut uplink = Uplink::new(3);
        let verdicts = [
            false, false, true, // two misses, then a success resets
            false, false, false, // down
            true, true, false, true, true, true, // a miss resets the way back
        ];
        let transitions: Vec<(usize, bool)> = verdicts
            .iter()
            .enumerate()
            .filter_map(|(tick, ok)| uplink.record(*ok).map(|up| (tick, up)))
            .collect();
        assert_eq!(transitions, [(5, false), (11, true)]);
        assert!(uplink.is_up());
    }
}
