//! Tracing setup: structured logs to stdout, as human-readable lines or JSON.

use std::io::IsTerminal as _;

use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use crate::{Result, StartupError};

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for terminals.
    #[default]
    Plain,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global tracing subscriber.
///
/// `filter` uses tracing's `EnvFilter` syntax (`info,k8s_deployer=debug`).
///
/// # Errors
///
/// Fails if `filter` is not a valid filter or if a global subscriber is
/// already installed.
pub fn init(filter: &str, format: LogFormat) -> Result<(), StartupError> {
    let filter = EnvFilter::try_new(filter).map_err(|source| StartupError::LogFilter {
        filter: filter.to_owned(),
        source,
    })?;
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Plain => registry
            .with(fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    }
    .map_err(StartupError::TelemetryInit)
}
