//! The operations library of the OMS: what `omsctl` (a thin command-line front-end over it), its
//! dashboard and the tests do, as functions that return typed reports.
//!
//! # Layout, bottom to top (a module imports only those listed before it)
//! - [`args`], [`paths`], [`render`], [`filter`]: value parsers, default paths, tables and
//!   YAML, envelope filters.
//! - [`auth`], [`context`], [`local`], [`cpu`]: tokens, the config file's contexts, the local
//!   process stack (PostgreSQL, Kafka nodes, service replicas) and its CPU.
//! - [`ctx`]: the settings a run works with; [`client`]: the services' APIs, typed by the
//!   contracts' routes.
//! - [`tail`], [`topics`], [`groups`], [`produce`]: Kafka read and written directly.
//! - [`place`], [`trace`], [`verify`], [`status`], [`dlq`], [`chaos`], [`drill`], [`bench`]: the
//!   operations: placing orders, an order's journey, the invariants, the stack's status, dead
//!   letters and their replay, fault injection, drills with a verdict, the load generator.
//!
//! Every operation's report is `Serialize + Deserialize` with stable field names (what
//! `omsctl -o json` prints, and what tests read back). With the `clap` feature, option structs
//! and enums derive clap's traits so a front-end can take them as flags.

pub mod args;
pub mod auth;
pub mod bench;
pub mod chaos;
pub mod client;
pub mod context;
pub mod cpu;
pub mod ctx;
pub mod dlq;
pub mod drill;
pub mod filter;
pub mod groups;
pub mod local;
pub mod paths;
pub mod place;
pub mod produce;
pub mod render;
pub mod status;
pub mod tail;
pub mod topics;
pub mod trace;
pub mod verify;
pub mod version;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Output {
    /// Human-readable tables.
    #[default]
    Table,
    /// JSON (JSON Lines for streams); field names are stable.
    Json,
    /// YAML of the same document as JSON (a document per message for streams).
    Yaml,
    /// One id per line (order ids, entry ids, groups, message coordinates): for xargs.
    Ids,
}

/// An error that knows its exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code: 1 failed check or verdict, 2 usage or connection error.
    pub code: u8,
    /// What to print.
    pub error: anyhow::Error,
}

impl Failure {
    /// A usage or connection error (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            error: anyhow::anyhow!("{message}"),
        }
    }

    /// A failed check or verdict (exit 1).
    pub fn verdict(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            error: anyhow::anyhow!("{message}"),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: 2,
            error: e.into(),
        }
    }
}
