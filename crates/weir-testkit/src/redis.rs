//! A throwaway `redis-server` of a test's own (no persistence), which the test can stall
//! (`kill -STOP`) and resume (`kill -CONT`): a Redis that stops answering without dropping
//! its connections, as in a failover or a slow fork.

use std::time::Duration;

/// The server; killed when dropped.
pub struct Throwaway {
    child: std::process::Child,
    /// `redis://127.0.0.1:<port>`.
    pub url: String,
}

impl Throwaway {
    /// Starts one on a free port. `None` (with a printed note, so the test can skip) when
    /// `redis-server` is not on PATH.
    pub async fn start() -> Option<Throwaway> {
        // A free port: bound, then given back for the server.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = match std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("skipped: cannot start redis-server ({e}); install Redis to run it");
                return None;
            }
        };
        let t = Throwaway {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        };
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(t);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not listen on {port}");
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Stops it answering (its connections stay open).
    pub fn stall(&self) {
        self.signal("-STOP");
    }

    /// Lets it answer again.
    pub fn resume(&self) {
        self.signal("-CONT");
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
