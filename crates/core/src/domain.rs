//! Domain types shared by every function and adapter.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The caller, taken from a verified token's `sub`. Never from a body, query or path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    /// Accepts subjects that are safe as an object-key segment and a log field.
    pub fn parse(sub: &str) -> Option<Self> {
        let valid = !sub.is_empty()
            && sub.len() <= 128
            && sub != "."
            && sub != ".."
            && sub
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'));
        valid.then(|| Self(sub.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A manual's format, always decided from its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentKind {
    Pdf,
    Markdown,
    Text,
}

impl DocumentKind {
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Markdown => "text/markdown; charset=utf-8",
            Self::Text => "text/plain; charset=utf-8",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Markdown => "md",
            Self::Text => "txt",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pdf => "pdf",
            Self::Markdown => "markdown",
            Self::Text => "text",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pdf" => Some(Self::Pdf),
            "markdown" => Some(Self::Markdown),
            "text" => Some(Self::Text),
            _ => None,
        }
    }
}

/// Where a manual is in its life: `processing → ready` or `processing → failed`; a manual
/// announced through an upload link starts as `uploading` until its bytes arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManualStatus {
    Uploading,
    Processing,
    Ready,
    Failed,
}

impl ManualStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "uploading" => Some(Self::Uploading),
            "processing" => Some(Self::Processing),
            "ready" => Some(Self::Ready),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Manual {
    pub id: String,
    pub user_id: UserId,
    pub name: String,
    pub key: String,
    pub kind: DocumentKind,
    pub size_bytes: u64,
    pub sha256: String,
    pub status: ManualStatus,
    pub status_reason: Option<String>,
    pub pages: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The bytes of an `uploading` manual, as they arrived through its upload link.
#[derive(Clone, Debug, PartialEq)]
pub struct ArrivedUpload {
    pub sha256: String,
    pub size_bytes: u64,
    pub kind: DocumentKind,
}

/// The placeholder content hash of a manual whose bytes have not arrived: unique per manual,
/// so it never collides with real content in the per-user duplicate check.
pub fn pending_sha256(manual_id: &str) -> String {
    format!("{PENDING_SHA256_PREFIX}{manual_id}")
}

const PENDING_SHA256_PREFIX: &str = "pending-";

impl Manual {
    /// The SHA-256 of the stored bytes; `None` while (or because) they never arrived.
    pub fn content_sha256(&self) -> Option<&str> {
        (!self.sha256.starts_with(PENDING_SHA256_PREFIX)).then_some(self.sha256.as_str())
    }
}

/// Why a manual whose bytes duplicate another of the user's manuals was not processed.
pub fn duplicate_upload_reason(existing: &Manual) -> String {
    format!(
        "This file was already uploaded as \"{}\" (manual {}); delete this entry.",
        existing.name, existing.id
    )
}

/// The end of processing, as recorded on the manual.
#[derive(Clone, Debug, PartialEq)]
pub enum ProcessingOutcome {
    Ready { pages: u32 },
    Failed { reason: String },
}

/// One passage the knowledge base found for a question.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrievedChunk {
    pub manual_id: String,
    pub page: u32,
    pub text: String,
    pub score: f32,
    /// The cosine similarity of the question's and the passage's embeddings, when retrieval
    /// computed one (manuel-local's dense search; Bedrock's Retrieve gives only `score`).
    pub similarity: Option<f32>,
}

/// What the answer model produced from the retrieved passages.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The answer text, with `[n]` citations numbered by position in `cited`.
    pub text: String,
    /// Indexes into the passages given to the model, in citation order.
    pub cited: Vec<usize>,
    /// Whether the passages contained the answer.
    pub found: bool,
    /// Indexes into the passages from most to least relevant in the model's judgement: the
    /// order further (uncited) sources are listed in. Empty when the model does not rank them;
    /// they are then listed in retrieval order.
    pub ranking: Vec<usize>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// What every answer model says when the user's manuals do not contain the answer.
pub const NOT_FOUND_ANSWER: &str = "I couldn't find this in your manuals. Try rephrasing the question, or upload the manual that covers it.";
