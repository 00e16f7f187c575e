//! Network namespaces a test creates and always removes (a drop guard), so a failing test
//! leaves nothing behind. Name them with a per-test id.

use std::process::Command;

use anyhow::Result;

use crate::process::run;

/// A network namespace, deleted when dropped (its interfaces go with it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name` (failing if it exists: names carry a per-test id).
    pub fn add(name: &str) -> Result<Netns> {
        run("ip", &["netns", "add", name])?;
        Ok(Netns {
            name: name.to_owned(),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `program args` inside the namespace, failing with its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
