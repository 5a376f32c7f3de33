//! Every metric the code emits, with its unit and dimensions. The CloudWatch dashboard and alarms
//! in template.yaml may only use what is listed here (a test checks it), so a metric is added
//! here first and then emitted through [`super::Metrics`].

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Manuel/Application";

/// The value of the `Function` dimension for each function.
pub const FUNCTIONS: &[&str] = &[
    "transcribe",
    "query",
    "manuals",
    "process-manual",
    "usage",
    "error-processor",
];

/// The values of the `Dependency` dimension.
pub const DEPENDENCIES: &[&str] = &[
    "bedrock-retrieve",
    "bedrock-converse",
    "bedrock-ingestion",
    "dynamodb",
    "s3",
    "transcribe",
    "sqs",
    "sns",
    "redis",
    "secretsmanager",
    // manuel-local's tantivy index.
    "search-index",
];

/// The values of the `Severity` dimension (error-processor's classification).
pub const SEVERITIES: &[&str] = &["critical", "high", "medium", "low"];

/// The values of the `Path` dimension: how Amazon Transcribe heard a clip (a streaming session
/// for PCM, FLAC and Ogg/Opus, a batch job for MP4 and WebM or when streaming is off).
pub const TRANSCRIPTION_PATHS: &[&str] = &["streaming", "batch"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dimension {
    Function,
    Dependency,
    Severity,
    Path,
}

impl Dimension {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Function => "Function",
            Self::Dependency => "Dependency",
            Self::Severity => "Severity",
            Self::Path => "Path",
        }
    }

    /// Every value the code can give this dimension.
    pub const fn values(self) -> &'static [&'static str] {
        match self {
            Self::Function => FUNCTIONS,
            Self::Dependency => DEPENDENCIES,
            Self::Severity => SEVERITIES,
            Self::Path => TRANSCRIPTION_PATHS,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

const BY_FUNCTION: &[Dimension] = &[Dimension::Function];
const BY_DEPENDENCY: &[Dimension] = &[Dimension::Function, Dimension::Dependency];
const BY_SEVERITY: &[Dimension] = &[Dimension::Function, Dimension::Severity];
const BY_PATH: &[Dimension] = &[Dimension::Function, Dimension::Path];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// 1 on the first invocation of a Lambda container.
    ColdStart,
    /// One per HTTP request, whatever the outcome.
    Requests,
    /// Responses with a 4xx status.
    ClientErrors,
    /// Responses with a 5xx status.
    ServerErrors,
    /// Time from the request entering the function to the response leaving it.
    Latency,
    /// Questions refused because the user's daily or monthly quota is used up.
    QuotaExceeded,
    /// Requests refused by the per-IP or per-user rate limit.
    RateLimited,
    /// Answers served from the L1 or L2 cache.
    CacheHits,
    /// Answers computed because no cache had them.
    CacheMisses,
    /// L2 (Redis) failures that were bypassed.
    CacheL2Errors,
    /// Calls to a dependency that failed (after retries).
    DependencyErrors,
    /// Retries of a dependency call after a transient failure (throttling, 5xx, timeout).
    DependencyRetries,
    /// A dependency's circuit breaker opened (calls to it are refused until a probe succeeds).
    CircuitOpened,
    /// Time spent in one call to a dependency.
    DependencyLatency,
    /// Manuals that finished processing and are searchable.
    ManualsReady,
    /// Manuals that finished processing with a reason they cannot be used.
    ManualsFailed,
    /// Manuals the knowledge base indexed only in part (`PARTIALLY_INDEXED`): ready, but some
    /// of their passages may never be found.
    ManualsPartiallyIndexed,
    /// Time from a streamed question's arrival to its first word sent to the client (answers
    /// computed, not served from the cache).
    FirstWordLatency,
    /// Time spent transcribing one audio clip.
    TranscriptionLatency,
    /// Time Amazon Transcribe took over one attempt at a clip, by path (streaming or batch).
    TranscriptionPathLatency,
    /// Error reports stored by error-processor, by severity.
    ErrorsRecorded,
    /// Alerts error-processor published to SNS.
    AlertsPublished,
    /// Records error-processor could not handle and handed back to SQS.
    BatchItemFailures,
    /// Stored records that could not be read (a manuals row missing a field) and were left out
    /// of a list, by the store that held them; the log line names the record.
    UnreadableRecords,
}

impl Metric {
    pub const ALL: &'static [Metric] = &[
        Self::ColdStart,
        Self::Requests,
        Self::ClientErrors,
        Self::ServerErrors,
        Self::Latency,
        Self::QuotaExceeded,
        Self::RateLimited,
        Self::CacheHits,
        Self::CacheMisses,
        Self::CacheL2Errors,
        Self::DependencyErrors,
        Self::DependencyRetries,
        Self::CircuitOpened,
        Self::DependencyLatency,
        Self::ManualsReady,
        Self::ManualsFailed,
        Self::ManualsPartiallyIndexed,
        Self::FirstWordLatency,
        Self::TranscriptionLatency,
        Self::TranscriptionPathLatency,
        Self::ErrorsRecorded,
        Self::AlertsPublished,
        Self::BatchItemFailures,
        Self::UnreadableRecords,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::ColdStart => "ColdStart",
            Self::Requests => "Requests",
            Self::ClientErrors => "ClientErrors",
            Self::ServerErrors => "ServerErrors",
            Self::Latency => "Latency",
            Self::QuotaExceeded => "QuotaExceeded",
            Self::RateLimited => "RateLimited",
            Self::CacheHits => "CacheHits",
            Self::CacheMisses => "CacheMisses",
            Self::CacheL2Errors => "CacheL2Errors",
            Self::DependencyErrors => "DependencyErrors",
            Self::DependencyRetries => "DependencyRetries",
            Self::CircuitOpened => "CircuitOpened",
            Self::DependencyLatency => "DependencyLatency",
            Self::ManualsReady => "ManualsReady",
            Self::ManualsFailed => "ManualsFailed",
            Self::ManualsPartiallyIndexed => "ManualsPartiallyIndexed",
            Self::FirstWordLatency => "FirstWordLatency",
            Self::TranscriptionLatency => "TranscriptionLatency",
            Self::TranscriptionPathLatency => "TranscriptionPathLatency",
            Self::ErrorsRecorded => "ErrorsRecorded",
            Self::AlertsPublished => "AlertsPublished",
            Self::BatchItemFailures => "BatchItemFailures",
            Self::UnreadableRecords => "UnreadableRecords",
        }
    }

    pub const fn unit(self) -> Unit {
        match self {
            Self::Latency
            | Self::DependencyLatency
            | Self::FirstWordLatency
            | Self::TranscriptionLatency
            | Self::TranscriptionPathLatency => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }

    /// The one dimension set this metric is emitted with.
    pub const fn dimensions(self) -> &'static [Dimension] {
        match self {
            Self::DependencyErrors
            | Self::DependencyRetries
            | Self::CircuitOpened
            | Self::DependencyLatency
            | Self::UnreadableRecords => BY_DEPENDENCY,
            Self::ErrorsRecorded => BY_SEVERITY,
            Self::TranscriptionPathLatency => BY_PATH,
            _ => BY_FUNCTION,
        }
    }

    pub fn by_name(name: &str) -> Option<Metric> {
        Self::ALL
            .iter()
            .copied()
            .find(|metric| metric.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found_again() {
        for metric in Metric::ALL {
            assert_eq!(Metric::by_name(metric.name()), Some(*metric));
        }
        let mut names: Vec<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
    }

    #[test]
    fn every_metric_carries_the_function() {
        for metric in Metric::ALL {
            assert_eq!(metric.dimensions().first(), Some(&Dimension::Function));
        }
    }
}
