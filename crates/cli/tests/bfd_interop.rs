//! `veg bfdd` against FRR `bfdd` in network namespaces, IPv4 and IPv6, 100 ms × 3:
//! bring-up, detection of a cut link, AdminDown, FRR restarts, live timer changes both ways,
//! GTSM and strangers. Bounds follow the BFD lab notes (detection [150, 600] ms, Up ≤ 5 s).
//! Needs root, FRR, nft and curl; under CI=true a missing one fails the test.

mod bfdlab;
mod support;

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bfdlab::{FRR_V4, FRR_V6, Lab, VEG_V4, VEG_V6, VegRole, unix_now, wait_until};

const UP_WITHIN: Duration = Duration::from_secs(5);
const DETECTION: std::ops::RangeInclusive<f64> = 0.150..=0.600;

/// FRR peers as seen from FRR (its address for veg) and as seen from veg.
const FAMILIES: [(&str, &str); 2] = [(VEG_V4, FRR_V4), (VEG_V6, FRR_V6)];

fn veg_state(lab: &Lab, frr_address: &str) -> String {
    lab.veg_session(frr_address)
        .map(|session| session["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn frr_status(lab: &Lab, veg_address: &str) -> String {
    lab.frr_peer(veg_address)
        .map(|peer| peer["status"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn all_up(lab: &Lab) -> bool {
    FAMILIES
        .iter()
        .all(|(veg, frr)| veg_state(lab, frr) == "Up" && frr_status(lab, veg) == "up")
}

fn wait_all_up(lab: &Lab, what: &str) -> Result<Duration> {
    let start = Instant::now();
    ensure!(
        wait_until(UP_WITHIN, || all_up(lab)),
        "{what}: sessions not Up within {UP_WITHIN:?}"
    );
    Ok(start.elapsed())
}

/// Downs on either side since `since` (unix time), for flap checks.
fn downs_since(lab: &Lab, since: f64) -> Vec<String> {
    let veg = lab
        .veg_transitions()
        .into_iter()
        .filter(|(at, _, old, _, _)| *at >= since && old == "Up")
        .map(|t| format!("veg {t:?}"));
    let frr = lab
        .frr_transitions()
        .into_iter()
        .filter(|(at, _, from, _, _)| *at >= since && from == "up")
        .map(|t| format!("frr {t:?}"));
    veg.chain(frr).collect()
}

/// Cuts the link, waits for both sides to go Down in both families, and returns when each of
/// veg and FRR detected it per family, in seconds after the cut, as the earliest and latest the
/// cut can have taken effect allow; then restores the link. The detections are the daemons' own
/// logged transitions, so the test's polling adds nothing to them.
fn cut_and_measure(lab: &Lab) -> Result<Vec<(String, (f64, f64))>> {
    std::thread::sleep(Duration::from_millis(500));
    let (cut_from, cut_by) = lab.cut()?;
    let detected = wait_until(Duration::from_secs(3), || {
        FAMILIES
            .iter()
            .all(|(veg, frr)| veg_state(lab, frr) == "Down" && frr_status(lab, veg) == "down")
    });
    lab.uncut()?;
    ensure!(detected, "the cut was not detected on both sides");
    // Judging needs the cut's own moment known to well within the bounds.
    ensure!(
        cut_by - cut_from < 0.150,
        "applying the cut took {:.3} s, too long to judge a detection time",
        cut_by - cut_from
    );
    let mut measured = Vec::new();
    for (veg_address, frr_address) in FAMILIES {
        let veg_down = lab
            .veg_transitions()
            .into_iter()
            .find(|(at, peer, old, new, diag)| {
                *at >= cut_from
                    && peer == frr_address
                    && old == "Up"
                    && new == "Down"
                    && diag == "ctl-detect-expired"
            })
            .map(|(at, ..)| at);
        let frr_down = lab
            .frr_transitions()
            .into_iter()
            .find(|(at, peer, from, to, reason)| {
                *at >= cut_from
                    && peer == veg_address
                    && from == "up"
                    && to == "down"
                    && reason == "control-expired"
            })
            .map(|(at, ..)| at);
        for (who, down) in [
            (format!("veg {frr_address}"), veg_down),
            (format!("frr {veg_address}"), frr_down),
        ] {
            let down = down.unwrap_or(f64::NAN);
            measured.push((who, (down - cut_by, down - cut_from)));
        }
    }
    for (who, (earliest, latest)) in &measured {
        // Within the bounds for some moment of the cut: not before the earliest possible
        // detection, not after the latest allowed one.
        ensure!(
            *latest >= *DETECTION.start() && *earliest <= *DETECTION.end(),
            "{who} detected the cut after {earliest:.3}..{latest:.3} s (the cut took effect between {cut_from:.3} and {cut_by:.3})"
        );
    }
    Ok(measured)
}

/// The gateway's case: veg passive, FRR active.
#[test]
fn veg_passive_interoperates_with_frr() -> Result<()> {
    if !bfdlab::prerequisites() {
        return Ok(());
    }
    let mut lab = Lab::new(VegRole::Passive)?;
    lab.start_veg(&[])?;
    let up = wait_all_up(&lab, "bring-up")?;
    eprintln!("bring-up: {up:?}");

    // FRR sees our discriminator, timers and no echo.
    for (veg_address, frr_address) in FAMILIES {
        let frr = lab.frr_peer(veg_address)?;
        let veg = lab.veg_session(frr_address)?;
        ensure!(frr["remote-id"] == veg["local_discr"], "{frr} vs {veg}");
        ensure!(veg["remote_discr"] == frr["id"], "{frr} vs {veg}");
        for (field, value) in [
            ("remote-receive-interval", 100),
            ("remote-transmit-interval", 100),
            ("remote-detect-multiplier", 3),
            ("remote-echo-receive-interval", 0),
        ] {
            ensure!(
                frr[field] == value,
                "FRR {field} = {} for {veg_address}",
                frr[field]
            );
        }
    }

    // Stable.
    let soak = unix_now();
    std::thread::sleep(Duration::from_secs(3));
    ensure!(
        downs_since(&lab, soak).is_empty(),
        "flaps: {:?}",
        downs_since(&lab, soak)
    );

    // Cut the link twice; both sides detect within bounds; the sessions come back.
    for round in 0..2 {
        let measured = cut_and_measure(&lab)?;
        eprintln!("cut {round}: {measured:?}");
        let back = wait_all_up(&lab, "recovery after a cut")?;
        eprintln!("recovered in {back:?}");
    }

    // veg AdminDown: FRR goes Down at once, knowing why.
    let asked = unix_now();
    lab.veg_request(r#"{"command":"admin-down"}"#)?;
    ensure!(wait_until(Duration::from_secs(2), || FAMILIES
        .iter()
        .all(|(v, _)| frr_status(&lab, v) == "down")));
    for (veg_address, _) in FAMILIES {
        let down = lab
            .frr_transitions()
            .into_iter()
            .find(|(at, peer, _, to, _)| *at >= asked && peer == veg_address && to == "down");
        let (at, _, _, _, reason) =
            down.ok_or_else(|| anyhow::anyhow!("FRR logged no Down for {veg_address}"))?;
        eprintln!(
            "admin-down {veg_address}: FRR down after {:.1} ms ({reason})",
            (at - asked) * 1e3
        );
        ensure!(
            at - asked <= 0.100,
            "FRR took {:.3} s to see our AdminDown",
            at - asked
        );
        ensure!(reason == "neighbor-down", "reason {reason}");
        ensure!(lab.frr_peer(veg_address)?["remote-diagnostic"] == "administratively down");
    }
    lab.veg_request(r#"{"command":"admin-up"}"#)?;
    wait_all_up(&lab, "after admin-up")?;

    // Timers changed live on our side: FRR follows through Poll/Final, nothing flaps.
    let changed = unix_now();
    lab.veg_request(
        r#"{"command":"set-timers","timers":{"min_tx_ms":300,"min_rx_ms":300,"multiplier":3}}"#,
    )?;
    ensure!(
        wait_until(Duration::from_secs(2), || FAMILIES.iter().all(|(v, _)| {
            lab.frr_peer(v).is_ok_and(|p| {
                p["remote-transmit-interval"] == 300 && p["remote-receive-interval"] == 300
            })
        })),
        "FRR did not take our new timers"
    );
    ensure!(wait_until(Duration::from_secs(2), || FAMILIES.iter().all(
        |(_, f)| lab.veg_session(f).is_ok_and(|s| s["polling"] == false)
    )));
    std::thread::sleep(Duration::from_secs(2));
    ensure!(
        all_up(&lab) && downs_since(&lab, changed).is_empty(),
        "flap after our timer change"
    );
    lab.veg_request(
        r#"{"command":"set-timers","timers":{"min_tx_ms":100,"min_rx_ms":100,"multiplier":3}}"#,
    )?;

    // FRR changes its timers: we follow its Poll and keep the session.
    let changed = unix_now();
    for (veg_address, frr_address) in FAMILIES {
        lab.frr_configure_peer(
            veg_address,
            frr_address,
            &["transmit-interval 300", "receive-interval 300"],
        )?;
    }
    ensure!(
        wait_until(Duration::from_secs(3), || FAMILIES.iter().all(|(_, f)| {
            lab.veg_session(f).is_ok_and(|s| {
                s["remote_desired_min_tx_us"] == 300_000 && s["detection_time_us"] == 900_000
            })
        })),
        "veg did not follow FRR's 300 ms timers"
    );
    for (veg_address, frr_address) in FAMILIES {
        lab.frr_configure_peer(
            veg_address,
            frr_address,
            &["transmit-interval 100", "receive-interval 100"],
        )?;
    }
    ensure!(
        wait_until(Duration::from_secs(3), || FAMILIES.iter().all(|(_, f)| lab
            .veg_session(f)
            .is_ok_and(|s| s["detection_time_us"] == 300_000))),
        "veg did not follow FRR back to 100 ms"
    );
    std::thread::sleep(Duration::from_secs(1));
    ensure!(
        all_up(&lab) && downs_since(&lab, changed).is_empty(),
        "flap after FRR's timer change: {:?}",
        downs_since(&lab, changed)
    );

    // FRR restarts with new discriminators: we come back Up with no action on our side.
    let old_ids: Vec<_> = FAMILIES
        .iter()
        .map(|(v, _)| lab.frr_peer(v).map(|p| p["id"].clone()))
        .collect::<Result<_>>()?;
    lab.stop_frr()?;
    lab.start_frr()?;
    let back = wait_all_up(&lab, "after FRR restarted")?;
    eprintln!("FRR restart: Up again after {back:?}");
    for ((veg_address, frr_address), old_id) in FAMILIES.iter().zip(old_ids) {
        let new_id = lab.frr_peer(veg_address)?["id"].clone();
        ensure!(
            lab.veg_session(frr_address)?["remote_discr"] == new_id,
            "stale remote discriminator"
        );
        eprintln!("FRR discriminator {old_id} -> {new_id}");
    }

    // Stopping veg says AdminDown to FRR instead of leaving it to time out.
    let stopped = unix_now();
    lab.stop_veg()?;
    ensure!(wait_until(Duration::from_secs(1), || FAMILIES
        .iter()
        .all(|(v, _)| frr_status(&lab, v) == "down")));
    let slowest = lab
        .frr_transitions()
        .into_iter()
        .filter(|(at, _, _, to, reason)| {
            *at >= stopped && to == "down" && reason == "neighbor-down"
        })
        .map(|(at, ..)| at - stopped)
        .fold(0.0_f64, f64::max);
    ensure!(
        slowest > 0.0 && slowest < 0.5,
        "FRR saw our shutdown after {slowest:.3} s"
    );
    Ok(())
}

/// The monitor's case: veg active, FRR passive.
#[test]
fn veg_active_interoperates_with_frr() -> Result<()> {
    if !bfdlab::prerequisites() {
        return Ok(());
    }
    let mut lab = Lab::new(VegRole::Active)?;
    lab.start_veg(&[])?;
    let up = wait_all_up(&lab, "bring-up")?;
    eprintln!("bring-up: {up:?}");
    let measured = cut_and_measure(&lab)?;
    eprintln!("cut: {measured:?}");
    wait_all_up(&lab, "recovery after a cut")?;

    // AdminDown reaches a passive FRR at once as well.
    let asked = unix_now();
    lab.veg_request(r#"{"command":"admin-down"}"#)?;
    ensure!(wait_until(Duration::from_millis(500), || FAMILIES
        .iter()
        .all(|(v, _)| frr_status(&lab, v) == "down")));
    let slowest = lab
        .frr_transitions()
        .into_iter()
        .filter(|(at, _, _, to, reason)| *at >= asked && to == "down" && reason == "neighbor-down")
        .map(|(at, ..)| at - asked)
        .fold(0.0_f64, f64::max);
    ensure!(
        slowest > 0.0 && slowest <= 0.100,
        "FRR saw our AdminDown after {slowest:.3} s"
    );
    lab.veg_request(r#"{"command":"admin-up"}"#)?;
    wait_all_up(&lab, "after admin-up")?;

    // A passive FRR restarts: it must not accept our stale Your Discriminator, so we time out,
    // fall back to Your Discriminator 0 and bring the session back without any command.
    lab.stop_frr()?;
    lab.start_frr()?;
    let back = wait_all_up(&lab, "after FRR restarted")?;
    eprintln!("FRR restart: Up again after {back:?}");
    for (veg_address, frr_address) in FAMILIES {
        ensure!(lab.veg_session(frr_address)?["remote_discr"] == lab.frr_peer(veg_address)?["id"]);
    }
    Ok(())
}

/// GTSM (RFC 5881 §5) per peer, strangers, and the HTTP endpoints.
#[test]
fn gtsm_strangers_and_metrics() -> Result<()> {
    if !bfdlab::prerequisites() {
        return Ok(());
    }
    let mut lab = Lab::new(VegRole::Passive)?;
    lab.frr_ttl_254()?;
    lab.start_veg(&["--http", "127.0.0.1:10669"])?;
    std::thread::sleep(Duration::from_secs(3));
    ensure!(lab.veg_dropped("ttl") > 0, "no TTL drops counted");
    ensure!(
        FAMILIES
            .iter()
            .all(|(_, frr)| lab.veg_session(frr).is_err()),
        "a TTL 254 peer opened a session"
    );
    for frr_address in [FRR_V4, FRR_V6] {
        lab.veg_request(&format!(
            r#"{{"command":"set-min-ttl","peer":"{frr_address}","min_ttl":254}}"#
        ))
        .or_else(|_| {
            lab.veg_request(&format!(
                r#"{{"command":"allow","peer":"{frr_address}","min_ttl":254}}"#
            ))
        })?;
    }
    wait_all_up(&lab, "with min TTL 254")?;

    let before = lab.veg_dropped("unknown_peer");
    lab.send_from_stranger()?;
    ensure!(
        wait_until(Duration::from_secs(2), || lab.veg_dropped("unknown_peer")
            > before),
        "the stranger's packet was not counted as dropped"
    );

    let metrics = lab.veg_http("127.0.0.1:10669", "/metrics")?;
    for expected in [
        "veg_bfd_sessions{state=\"Up\"} 2",
        "veg_bfd_packets_dropped_total{reason=\"ttl\"}",
        "veg_bfd_packets_dropped_total{reason=\"unknown_peer\"} 1",
        "veg_bfd_state_transitions_total{from=\"Init\",to=\"Up\",diag=\"none\"}",
    ] {
        ensure!(
            metrics.contains(expected),
            "/metrics lacks {expected}:\n{metrics}"
        );
    }
    ensure!(lab.veg_http("127.0.0.1:10669", "/livez")? == "ok\n");
    ensure!(lab.veg_http("127.0.0.1:10669", "/readyz")? == "ok\n");
    Ok(())
}
