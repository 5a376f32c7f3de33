//! Starts the real manuel-local binary on a free port and talks to it over HTTP.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// `variable`, or where `make setup` installs the file (`relative` to the repository).
fn installed(variable: &str, relative: &str) -> PathBuf {
    std::env::var_os(variable).map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(relative)
        },
        PathBuf::from,
    )
}

pub fn pdfium_lib() -> PathBuf {
    installed("MANUEL_PDFIUM_LIB", ".tools/pdfium/libpdfium.so")
}

/// The embedding model `make setup` installs.
pub fn embedding_model() -> PathBuf {
    installed(
        "MANUEL_EMBEDDING_MODEL",
        ".tools/models/all-MiniLM-L6-v2-int8",
    )
}

/// The ONNX Runtime library `make setup` installs.
pub fn onnxruntime() -> PathBuf {
    installed("MANUEL_ONNXRUNTIME", ".tools/onnxruntime/libonnxruntime.so")
}

/// The speech model `make setup` installs.
pub fn speech_model() -> PathBuf {
    installed("MANUEL_SPEECH_MODEL", ".tools/models/whisper-tiny.en")
}

/// Where `user`'s manual files are stored: `manuals/<pseudonym>/` (no user id in any key).
pub fn manuals_prefix(user: &str) -> String {
    match manuel_core::domain::UserId::parse(user) {
        Some(user) => manuel_core::storage_keys::manuals_prefix(&user),
        None => panic!("{user:?} is not a user id"),
    }
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("fixture {}: {error}", path.display()))
}

pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
}

impl Server {
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> TestResult<Self> {
        Self::start_with_env(data_dir, extra_args, &[])
    }

    pub fn start_with_env(
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> TestResult<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_manuel-local"))
            .args(["--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(extra_args)
            .envs(env.iter().copied())
            .env("MANUEL_PDFIUM_LIB", pdfium_lib())
            .env("MANUEL_EMBEDDING_MODEL", embedding_model())
            .env("MANUEL_ONNXRUNTIME", onnxruntime())
            .env("MANUEL_SPEECH_MODEL", speech_model())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let base = line
            .split_whitespace()
            .find(|word| word.starts_with("http://"))
            .ok_or_else(|| format!("unexpected first line from manuel-local: {line:?}"))?
            .to_owned();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            child,
            base,
            data_dir: data_dir.to_owned(),
            client,
        })
    }

    pub fn stop(mut self) -> TestResult {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        Err("manuel-local did not stop on SIGTERM".into())
    }

    pub fn token(&self, user: &str) -> TestResult<String> {
        token(&self.data_dir, user)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server as a crash would (SIGKILL): no shutdown code runs.
    pub fn crash(mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The server process's peak resident memory so far (`VmHWM`), in bytes; its ingest
    /// workers are other processes and not counted.
    pub fn peak_rss(&self) -> TestResult<u64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|kib| kib * 1024)
    }

    /// The processes the server started (its ingest workers) that are still alive.
    pub fn children(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> TestResult<(u16, Value)> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{status} not JSON ({e}): {text}"))?
        };
        Ok((status, body))
    }

    pub async fn get(&self, token: &str, path: &str) -> TestResult<(u16, Value)> {
        self.send(self.client.get(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> TestResult<(u16, Value)> {
        self.send(self.client.delete(self.url(path)).bearer_auth(token))
            .await
    }

    pub async fn post(&self, token: &str, path: &str, body: &Value) -> TestResult<(u16, Value)> {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    pub async fn upload(&self, token: &str, name: &str, bytes: &[u8]) -> TestResult<(u16, Value)> {
        self.post(
            token,
            "/api/manuals/upload",
            &json!({"file_name": name, "file_data": STANDARD.encode(bytes), "content_type": "application/octet-stream"}),
        )
        .await
    }

    pub async fn ask(&self, token: &str, question: &str) -> TestResult<Value> {
        let (status, body) = self
            .post(token, "/api/query", &json!({ "question": question }))
            .await?;
        if status != 200 {
            return Err(format!("query {question:?} → {status}: {body}").into());
        }
        Ok(body)
    }

    /// Polls the manual until it leaves `processing`.
    /// Uploads a new manual and waits until it is `ready`; returns its detail.
    pub async fn upload_ready(&self, token: &str, name: &str, bytes: &[u8]) -> TestResult<Value> {
        let (status, body) = self.upload(token, name, bytes).await?;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["status"], "processing");
        assert_eq!(body["duplicate"], false);
        assert_eq!(body["size_bytes"], bytes.len());
        let id = body["manual_id"].as_str().ok_or("no manual_id")?;
        let detail = self.wait_processed(token, id).await?;
        assert_eq!(detail["status"], "ready", "{detail}");
        Ok(detail)
    }

    pub async fn wait_processed(&self, token: &str, id: &str) -> TestResult<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.get(token, &format!("/api/manuals/{id}")).await?;
            if status != 200 {
                return Err(format!("detail of {id} → {status}: {body}").into());
            }
            if body["status"] != "processing" {
                return Ok(body);
            }
            if Instant::now() > deadline {
                return Err(format!("{id} still processing after 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` given in kB.
pub fn proc_status_kib(pid: u32, field: &str) -> TestResult<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .ok_or_else(|| format!("no {field} for {pid}"))?;
    Ok(line.split_whitespace().nth(1).ok_or("no value")?.parse()?)
}

/// Live (not zombie) processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                // pid (comm) state ppid …: comm may hold spaces, so read after the last ')'.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                fields.first() != Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str())
            })
        })
        .collect()
}

pub fn token(data_dir: &Path, user: &str) -> TestResult<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_manuel-local"))
        .args(["token", "--user", user, "--data-dir"])
        .arg(data_dir)
        .output()?;
    if !output.status.success() {
        return Err(format!("token failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// The error body every refusal must have.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, expected_code: &str) {
    assert_eq!(status, expected_status, "{body}");
    assert_eq!(body["code"], expected_code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
}

/// Sends a request whose body the server may refuse before reading it all, over a raw
/// connection: an HTTP client writing the rest of the body races the server closing the
/// connection after its 413. Returns the status and the JSON body.
pub async fn send_oversized(
    server: &Server,
    token: &str,
    path: &str,
    body: &[u8],
) -> TestResult<(u16, Value)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status line in {text:?}"))?;
    let json = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .filter(|body| !body.is_empty())
        .map(serde_json::from_str)
        .transpose()?
        .unwrap_or(Value::Null);
    Ok((status, json))
}

/// `text` spoken by espeak-ng and recorded by sox into `file_name` (its extension picks the
/// format): `sox_args` describe the output (rate, channels, bits), `effects` follow the file
/// name (`rate`, `pad`, `trim`). `make test` installs both tools.
pub fn spoken(
    dir: &Path,
    text: &str,
    file_name: &str,
    sox_args: &[&str],
    effects: &[&str],
) -> TestResult<Vec<u8>> {
    let raw = dir.join("spoken.wav");
    let out = dir.join(file_name);
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&raw)
        .arg(text)
        .status()
        .map_err(|error| format!("espeak-ng is needed (make test installs it): {error}"))?;
    assert!(status.success(), "espeak-ng failed");
    let status = Command::new("sox")
        .arg(&raw)
        .args(sox_args)
        .arg(&out)
        .args(effects)
        .status()
        .map_err(|error| format!("sox is needed (make test installs it): {error}"))?;
    assert!(status.success(), "sox failed");
    Ok(std::fs::read(out)?)
}
