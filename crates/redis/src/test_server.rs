//! A real redis-server for tests (the `test-support` feature): started on a port of its own,
//! killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub type StartError = Box<dyn std::error::Error>;

pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// A server on `port` (a free one when `None`), accepting connections. `None` when
    /// redis-server is not installed under a plain `cargo test`; `make test` installs it and
    /// sets `MANUEL_TEST_REDIS=1`, which makes a missing server an error.
    pub fn start(port: Option<u16>) -> Result<Option<Self>, StartError> {
        let port = match port {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        };
        let child = match Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if std::env::var("MANUEL_TEST_REDIS").is_err() => {
                eprintln!("redis-server unavailable ({error}): skipping (run with `make test`)");
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        let mut server = Self { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Some(server));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.kill();
        Err("redis-server did not start".into())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops the server now (an outage).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
