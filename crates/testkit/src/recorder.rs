//! An independent record of every write to one OVSDB table over a window: `ovsdb-client
//! monitor` (OVS's own client, not veg's) with its JSON lines written as they arrive, replayed
//! afterwards into the table's contents after each update. Checks that must hold *throughout*
//! a window ("the survivor never leaves the nexthops") read this instead of polling.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value as Json;

use crate::process::wait_until;

/// A table's rows by uuid, each row its monitored columns.
pub type TableRows = BTreeMap<String, BTreeMap<String, Json>>;

/// A running `ovsdb-client monitor`; stopped when dropped.
pub struct TableRecorder {
    child: Child,
    out: PathBuf,
    what: String,
}

impl TableRecorder {
    /// Starts recording `table`'s `columns` of `db` at `remote` into `out`, and returns once the
    /// table's initial contents arrived (so the table must not be empty).
    pub fn start(
        program: &Path,
        remote: &str,
        db: &str,
        table: &str,
        columns: &[&str],
        out: &Path,
    ) -> Result<TableRecorder> {
        // Line-buffered: each update reaches the file as it arrives, so a stop loses nothing.
        let child = Command::new("stdbuf")
            .arg("-oL")
            .arg(program)
            .args(["--format=json", "monitor", remote, db, table])
            .arg(columns.join(","))
            .stdout(std::fs::File::create(out)?)
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let recorder = TableRecorder {
            child,
            out: out.to_owned(),
            what: format!("{db} {table}"),
        };
        ensure!(
            wait_until(Duration::from_secs(5), || std::fs::read_to_string(out)
                .is_ok_and(|text| text.contains('\n'))),
            "no initial contents of {} within 5 s",
            recorder.what
        );
        Ok(recorder)
    }

    /// Stops recording and returns the table's contents after each update, the initial
    /// contents first.
    pub fn stop(mut self) -> Result<Vec<TableRows>> {
        // A last update may still be in flight.
        std::thread::sleep(Duration::from_millis(100));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.out)?;
        replay(&text).with_context(|| format!("replaying the record of {}", self.what))
    }
}

impl Drop for TableRecorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The contents after each update of `ovsdb-client --format=json monitor` output: one JSON
/// object per line, `headings` [`row`, `action`, columns…] and `data` rows; a modification is
/// an `old` row (with the uuid) followed by a `new` row (all columns, no uuid).
pub fn replay(text: &str) -> Result<Vec<TableRows>> {
    let mut rows = TableRows::new();
    let mut states = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let update: Json = serde_json::from_str(line).with_context(|| line.to_owned())?;
        let headings: Vec<&str> = update["headings"]
            .as_array()
            .context("no headings")?
            .iter()
            .filter_map(Json::as_str)
            .collect();
        ensure!(
            headings.starts_with(&["row", "action"]),
            "unexpected headings {headings:?}"
        );
        let mut modified = None;
        for entry in update["data"].as_array().context("no data")? {
            let cells = entry.as_array().context("a row is not an array")?;
            let uuid = cells.first().and_then(Json::as_str).unwrap_or_default();
            let action = cells.get(1).and_then(Json::as_str).unwrap_or_default();
            let columns = || {
                headings
                    .iter()
                    .zip(cells)
                    .skip(2)
                    .map(|(name, value)| ((*name).to_owned(), value.clone()))
                    .collect::<BTreeMap<_, _>>()
            };
            match action {
                "initial" | "insert" => {
                    rows.insert(uuid.to_owned(), columns());
                }
                "delete" => {
                    rows.remove(uuid);
                }
                "old" => modified = Some(uuid.to_owned()),
                "new" => {
                    let uuid = modified.take().context("a new row without its old row")?;
                    rows.insert(uuid, columns());
                }
                other => bail!("unknown action {other:?}"),
            }
        }
        states.push(rows.clone());
    }
    Ok(states)
}

/// An OVSDB value as strings: a scalar is one, `["set", [...]]` its members.
pub fn strings(value: &Json) -> Vec<String> {
    match value {
        Json::String(s) => vec![s.clone()],
        Json::Array(pair) if pair.first() == Some(&Json::from("set")) => pair
            .get(1)
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Json::Number(n) => vec![n.to_string()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact lines ovsdb-client 3.1 printed for an initial row, two modifications and an
    /// insert.
    #[test]
    fn replay_follows_initial_modify_and_insert() -> Result<()> {
        let text = r#"{"data":[["9e37","initial",29100,["set",["198.18.0.1","198.18.0.3"]]]],"headings":["row","action","priority","nexthops"]}
{"data":[["9e37","old",null,["set",["198.18.0.1","198.18.0.3"]]],["","new",29100,"198.18.0.1"]],"headings":["row","action","priority","nexthops"]}
{"data":[["9e37","old",null,"198.18.0.1"],["","new",29100,["set",[]]]],"headings":["row","action","priority","nexthops"]}
{"data":[["2c8d","insert",100,["set",[]]]],"headings":["row","action","priority","nexthops"]}
{"data":[["9e37","delete",29100,["set",[]]]],"headings":["row","action","priority","nexthops"]}
"#;
        let states = replay(text)?;
        let hops = |i: usize, uuid: &str| states[i].get(uuid).map(|r| strings(&r["nexthops"]));
        assert_eq!(states.len(), 5);
        assert_eq!(
            hops(0, "9e37"),
            Some(vec!["198.18.0.1".to_owned(), "198.18.0.3".to_owned()])
        );
        assert_eq!(hops(1, "9e37"), Some(vec!["198.18.0.1".to_owned()]));
        assert_eq!(hops(2, "9e37"), Some(Vec::new()));
        assert_eq!(states[3].len(), 2);
        assert_eq!(hops(4, "9e37"), None);
        assert_eq!(strings(&states[4]["2c8d"]["priority"]), vec!["100"]);
        Ok(())
    }

    #[test]
    fn a_new_row_without_its_old_row_is_an_error() {
        let text =
            r#"{"data":[["","new",1,"x"]],"headings":["row","action","priority","nexthops"]}"#;
        assert!(replay(text).is_err());
    }
}
