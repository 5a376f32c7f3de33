//! Telemetry: JSON logs and CloudWatch Embedded Metric Format (EMF) metrics.
//!
//! EMF is plain JSON on stdout that CloudWatch turns into metrics, so nothing here knows about
//! AWS. A binary installs a recorder once ([`install_emf`]); without one, metrics are dropped
//! (local mode and unit tests), while logs still work.

mod catalogue;
mod emf;
mod logs;
mod request;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub use catalogue::{
    DEPENDENCIES, Dimension, FUNCTIONS, Metric, NAMESPACE, SEVERITIES, TRANSCRIPTION_PATHS, Unit,
};
pub use emf::emf_line;
pub use logs::{init_json_logs, user_hash};
pub use request::{ErrorCode, request_telemetry};

type Writer = Box<dyn Fn(&str) + Send + Sync>;

struct Recorder {
    function: &'static str,
    write: Writer,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();
static COLD: AtomicBool = AtomicBool::new(true);

/// Emits metrics as EMF lines on stdout, with `function` as the `Function` dimension. Only the
/// first call has an effect: a process is one function.
pub fn install_emf(function: &'static str) {
    install(
        function,
        Box::new(|line| {
            use std::io::Write;
            // One write per line keeps lines whole when several tasks emit at once.
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(format!("{line}\n").as_bytes());
            let _ = out.flush();
        }),
    );
}

/// Emits metrics through `write` (tests capture them this way).
pub fn install(function: &'static str, write: Writer) {
    let _ = RECORDER.set(Recorder { function, write });
}

/// The function this process was installed as, if any.
pub fn function_name() -> Option<&'static str> {
    RECORDER.get().map(|recorder| recorder.function)
}

/// True exactly once per process: on the first invocation, which also counts a `ColdStart`.
pub fn take_cold_start() -> bool {
    let cold = COLD.swap(false, Ordering::Relaxed);
    if cold {
        record(Metric::ColdStart, 1.0);
    }
    cold
}

/// Records metrics whose only dimension is `Function`.
pub fn record_many(values: &[(Metric, f64)]) {
    emit(&[], values);
}

pub fn record(metric: Metric, value: f64) {
    emit(&[], &[(metric, value)]);
}

/// Records a metric about one dependency (`DependencyErrors`, `DependencyLatency`).
pub fn record_dependency(metric: Metric, dependency: &'static str, value: f64) {
    emit(&[(Dimension::Dependency, dependency)], &[(metric, value)]);
}

/// Records a metric by error severity (`ErrorsRecorded`).
pub fn record_severity(metric: Metric, severity: &'static str, value: f64) {
    emit(&[(Dimension::Severity, severity)], &[(metric, value)]);
}

/// Records a metric about one transcription path (`TranscriptionPathLatency`: `streaming` or
/// `batch`).
pub fn record_path(metric: Metric, path: &'static str, value: f64) {
    emit(&[(Dimension::Path, path)], &[(metric, value)]);
}

/// `extra` are the dimensions besides `Function`; a metric whose catalogue dimensions differ is
/// dropped with a warning rather than published under a name the dashboard does not know.
fn emit(extra: &[(Dimension, &str)], values: &[(Metric, f64)]) {
    let Some(recorder) = RECORDER.get() else {
        return;
    };
    let mut dimensions = vec![(Dimension::Function, recorder.function)];
    dimensions.extend_from_slice(extra);
    let names: Vec<Dimension> = dimensions.iter().map(|(dimension, _)| *dimension).collect();
    let values: Vec<(Metric, f64)> = values
        .iter()
        .copied()
        .filter(|(metric, _)| {
            let matches = metric.dimensions() == names.as_slice();
            if !matches {
                tracing::warn!(
                    metric = metric.name(),
                    "metric emitted with the wrong dimensions; dropped"
                );
            }
            matches
        })
        .collect();
    if values.is_empty() {
        return;
    }
    let timestamp = chrono::Utc::now().timestamp_millis();
    (recorder.write)(&emf_line(timestamp, &dimensions, &values));
}
