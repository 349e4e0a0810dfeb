//! A bridge process for the benchmarks: the release binary's `run`, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A replica: the release binary's `run`; killed on drop.
pub struct Replica(Child);

impl Replica {
    /// Starts `kaizala-bridge run --config {config}` with an empty environment.
    pub fn start(config: &Path) -> Self {
        let binary =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/kaizala-bridge");
        assert!(
            binary.exists(),
            "build the release binary first (./scripts/bench.sh does)"
        );
        let child = Command::new(binary)
            .args(["run", "--config"])
            .arg(config)
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }

    /// Resident memory, in KiB (0 once the process is gone).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// CPU time used so far (user + system), in seconds.
    #[allow(dead_code)]
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap_or_default();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
        (ticks(11) + ticks(12)) / 100.0
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
