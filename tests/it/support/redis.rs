//! A private `redis-server` for one test: a free port, a temporary directory, nothing
//! persisted (or, for restart tests, an append-only file), killed on drop. No test
//! relies on a Redis someone started by hand.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub struct RedisServer {
    port: u16,
    child: Child,
    append_only: bool,
    dir: tempfile::TempDir,
}

fn spawn(port: u16, dir: &std::path::Path, append_only: bool) -> Child {
    let appendonly = if append_only { "yes" } else { "no" };
    let mut command = Command::new("redis-server");
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        appendonly,
    ]);
    if append_only {
        // Every write on disk before it is acknowledged: what a restart test relies on.
        command.args(["--appendfsync", "always"]);
    }
    command
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start redis-server ({e}); install it with `apt-get install redis-server` \
                 (./scripts/test.sh does this when run as root)"
            )
        })
}

impl RedisServer {
    /// Starts a server that keeps nothing, and waits until it answers PING.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a server with append-only persistence, which [`RedisServer::restart`]
    /// brings back with its data.
    #[allow(dead_code)] // used by the it crate, not by tests/logs.rs
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(append_only: bool) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let port = free_port();
        let child = spawn(port, dir.path(), append_only);
        let mut server = Self {
            port,
            child,
            append_only,
            dir,
        };
        server.wait_until_answering();
        server
    }

    /// Kills the server (as a crash would) and starts it again on the same port and
    /// directory, after `down` without it.
    #[allow(dead_code)] // used by the it crate, not by tests/logs.rs
    pub fn restart(&mut self, down: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(down);
        self.child = spawn(self.port, self.dir.path(), self.append_only);
        self.wait_until_answering();
    }

    /// Kills the server (as a crash would); [`RedisServer::start_again`] brings it
    /// back on the same port and directory.
    #[allow(dead_code)] // used by the it crate, not by tests/logs.rs
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a killed server again and waits until it answers.
    #[allow(dead_code)] // used by the it crate, not by tests/logs.rs
    pub fn start_again(&mut self) {
        self.child = spawn(self.port, self.dir.path(), self.append_only);
        self.wait_until_answering();
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redis-server exited at start with {status}");
            }
            if ping(self.port) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago (the OS chose it for a listener we then closed).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
