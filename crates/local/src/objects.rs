//! Manual files under `<data_dir>/objects/`, and the signed, expiring links that download them
//! or upload them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use manuel_core::PortError;
use manuel_core::ports::{ObjectStore, UploadLink};
use sha2::Sha256;

pub struct FileObjectStore {
    root: PathBuf,
    links: LinkSigner,
}

impl FileObjectStore {
    pub fn new(root: PathBuf, links: LinkSigner) -> Self {
        Self { root, links }
    }

    /// Maps an object key to a file below the root. Keys are made by the functions, but a
    /// key that could leave the root is refused anyway.
    pub fn path_for(&self, key: &str) -> Result<PathBuf, PortError> {
        let mut path = self.root.clone();
        for segment in key.split('/') {
            let safe = !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'));
            if !safe {
                return Err(PortError::failed(format!("unsafe object key {key:?}")));
            }
            path.push(segment);
        }
        Ok(path)
    }

    pub fn links(&self) -> &LinkSigner {
        &self.links
    }
}

#[async_trait]
impl ObjectStore for FileObjectStore {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), PortError> {
        let path = self.path_for(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| PortError::failed("an object needs a directory"))?
            .to_owned();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &path, &bytes))
            .await
            .map_err(PortError::failed)?
            .map_err(PortError::failed)
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, PortError> {
        let path = self.path_for(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(PortError::failed(error)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        let path = self.path_for(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(PortError::failed(error)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, PortError> {
        let dir = self.path_for(prefix.trim_end_matches('/'))?;
        tokio::task::spawn_blocking(move || remove_tree(&dir))
            .await
            .map_err(PortError::failed)?
            .map_err(PortError::failed)
    }

    /// A `/files/…` link of this server whose signature holds, expired or not.
    fn key_of_link(&self, link: &str) -> Option<String> {
        self.links.key_of(link)
    }

    async fn download_link(
        &self,
        key: &str,
        file_name: &str,
        _content_type: &str,
        ttl: Duration,
    ) -> Result<String, PortError> {
        self.path_for(key)?;
        Ok(self.links.sign(key, file_name, ttl))
    }

    async fn upload_link(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<UploadLink, PortError> {
        self.path_for(key)?;
        Ok(UploadLink {
            url: self
                .links
                .sign_upload(key, content_type, content_length, ttl),
            headers: vec![
                ("Content-Type".to_owned(), content_type.to_owned()),
                ("Content-Length".to_owned(), content_length.to_string()),
            ],
        })
    }
}

/// Removes `dir` and everything below it; returns how many files there were (0 when it does
/// not exist).
fn remove_tree(dir: &Path) -> std::io::Result<u64> {
    fn count(dir: &Path) -> std::io::Result<u64> {
        let mut files = 0;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                files += count(&entry.path())?;
            } else {
                files += 1;
            }
        }
        Ok(files)
    }
    let files = match count(dir) {
        Ok(files) => files,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(error),
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(files),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(files),
        Err(error) => Err(error),
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Signs `/files/<key>?name=…&expires=…&sig=…` links with a secret kept in the data directory.
pub struct LinkSigner {
    secret: Vec<u8>,
    public_base_url: String,
}

/// Why a download or upload link was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("This link has expired.")]
    Expired,
    #[error("This link is not valid.")]
    BadSignature,
}

/// What an upload link allows: one PUT of exactly `length` bytes of `content_type` at `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadGrant<'a> {
    pub key: &'a str,
    pub content_type: &'a str,
    pub length: u64,
    pub expires: i64,
}

impl LinkSigner {
    pub fn new(secret: Vec<u8>, public_base_url: &str) -> Self {
        Self {
            secret,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `/uploads/<key>?type=…&length=…&expires=…&sig=…`, for one PUT.
    pub fn sign_upload(&self, key: &str, content_type: &str, length: u64, ttl: Duration) -> String {
        let grant = UploadGrant {
            key,
            content_type,
            length,
            expires: expiry(ttl),
        };
        format!(
            "{}/uploads/{}?type={}&length={}&expires={}&sig={}",
            self.public_base_url,
            key,
            percent_encode(content_type),
            length,
            grant.expires,
            self.upload_signature(&grant)
        )
    }

    pub fn verify_upload(&self, grant: &UploadGrant<'_>, signature: &str) -> Result<(), LinkError> {
        let expected = hex::decode(signature).map_err(|_| LinkError::BadSignature)?;
        let mut mac = self.mac();
        mac.update(&upload_message(grant));
        mac.verify_slice(&expected)
            .map_err(|_| LinkError::BadSignature)?;
        if grant.expires < chrono::Utc::now().timestamp() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    fn upload_signature(&self, grant: &UploadGrant<'_>) -> String {
        let mut mac = self.mac();
        mac.update(&upload_message(grant));
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn sign(&self, key: &str, file_name: &str, ttl: Duration) -> String {
        let expires = expiry(ttl);
        let signature = self.signature(key, file_name, expires);
        format!(
            "{}/files/{}?name={}&expires={}&sig={}",
            self.public_base_url,
            key,
            percent_encode(file_name),
            expires,
            signature
        )
    }

    pub fn verify(
        &self,
        key: &str,
        file_name: &str,
        expires: i64,
        signature: &str,
    ) -> Result<(), LinkError> {
        let expected = hex::decode(signature).map_err(|_| LinkError::BadSignature)?;
        let mut mac = self.mac();
        mac.update(&message(key, file_name, expires));
        mac.verify_slice(&expected)
            .map_err(|_| LinkError::BadSignature)?;
        if expires < chrono::Utc::now().timestamp() {
            return Err(LinkError::Expired);
        }
        Ok(())
    }

    /// The key of a download link this signer made (expired or not), if its signature holds.
    pub fn key_of(&self, link: &str) -> Option<String> {
        let rest = link
            .split('#')
            .next()?
            .strip_prefix(&self.public_base_url)?
            .strip_prefix("/files/")?;
        let (key, query) = rest.split_once('?')?;
        let field = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        let file_name = percent_decode(field("name")?)?;
        let expires: i64 = field("expires")?.parse().ok()?;
        let expected = hex::decode(field("sig")?).ok()?;
        let mut mac = self.mac();
        mac.update(&message(key, &file_name, expires));
        mac.verify_slice(&expected).ok()?;
        Some(key.to_owned())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    fn signature(&self, key: &str, file_name: &str, expires: i64) -> String {
        let mut mac = self.mac();
        mac.update(&message(key, file_name, expires));
        hex::encode(mac.finalize().into_bytes())
    }
}

fn expiry(ttl: Duration) -> i64 {
    chrono::Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(3600)
}

/// Starts with the method, so an upload signature can never pass as a download signature.
fn upload_message(grant: &UploadGrant<'_>) -> Vec<u8> {
    format!(
        "PUT\n{}\n{}\n{}\n{}",
        grant.key, grant.content_type, grant.length, grant.expires
    )
    .into_bytes()
}

fn message(key: &str, file_name: &str, expires: i64) -> Vec<u8> {
    format!("{key}\n{file_name}\n{expires}").into_bytes()
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            out.push(u8::from_str_radix(value.get(at + 1..at + 3)?, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_verify_until_they_expire_and_not_when_altered() {
        let signer = LinkSigner::new(b"secret".to_vec(), "http://127.0.0.1:3000/");
        let link = signer.sign(
            "manuals/alice/x.pdf",
            "My manual.pdf",
            Duration::from_secs(60),
        );
        assert!(link.starts_with(
            "http://127.0.0.1:3000/files/manuals/alice/x.pdf?name=My%20manual.pdf&expires="
        ));
        let query = link.split('?').nth(1).unwrap_or_default();
        let field = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .to_owned()
        };
        let expires: i64 = field("expires").parse().unwrap_or_default();
        let sig = field("sig");
        assert_eq!(
            signer.verify("manuals/alice/x.pdf", "My manual.pdf", expires, &sig),
            Ok(())
        );
        assert_eq!(
            signer.verify("manuals/bob/x.pdf", "My manual.pdf", expires, &sig),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            signer.verify("manuals/alice/x.pdf", "My manual.pdf", expires + 1, &sig),
            Err(LinkError::BadSignature)
        );
        let old = signer.signature("manuals/alice/x.pdf", "n", 1000);
        assert_eq!(
            signer.verify("manuals/alice/x.pdf", "n", 1000, &old),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn a_link_names_its_key_only_when_this_signer_made_it() {
        let signer = LinkSigner::new(b"secret".to_vec(), "http://127.0.0.1:3000");
        let link = signer.sign(
            "manuals/alice/x.pdf",
            "Ünïcode manual.pdf",
            Duration::from_secs(60),
        );
        assert_eq!(signer.key_of(&link).as_deref(), Some("manuals/alice/x.pdf"));
        assert_eq!(
            signer.key_of(&format!("{link}#page=3")).as_deref(),
            Some("manuals/alice/x.pdf")
        );
        // Expired links still name their key: who may read it is checked by the caller.
        let old = format!(
            "http://127.0.0.1:3000/files/manuals/alice/x.pdf?name=n&expires=1000&sig={}",
            signer.signature("manuals/alice/x.pdf", "n", 1000)
        );
        assert_eq!(signer.key_of(&old).as_deref(), Some("manuals/alice/x.pdf"));
        let other = LinkSigner::new(b"other".to_vec(), "http://127.0.0.1:3000");
        assert_eq!(other.key_of(&link), None);
        assert_eq!(
            signer.key_of(&link.replace("manuals/alice", "manuals/bob")),
            None
        );
        assert_eq!(
            signer.key_of(&link.replace("127.0.0.1", "evil.example")),
            None
        );
        assert_eq!(signer.key_of("manuals/alice/x.pdf"), None);
        assert_eq!(
            signer.key_of("https://bucket.s3.amazonaws.com/manuals/alice/x.pdf"),
            None
        );
    }

    #[test]
    fn keys_cannot_leave_the_root() {
        let store = FileObjectStore::new(
            PathBuf::from("/data/objects"),
            LinkSigner::new(vec![1], "http://x"),
        );
        assert!(store.path_for("manuals/alice/a.pdf").is_ok());
        for key in [
            "../etc/passwd",
            "manuals//a",
            "manuals/../../x",
            "/abs",
            "a/b c",
        ] {
            assert!(store.path_for(key).is_err(), "{key}");
        }
    }
}
