//! Dead letters and their safe replay: entries ([`entry`]) read from the DLQ topics, replays
//! ([`replay`]) repaired first if asked ([`edit`]), predicted with `--dry-run` ([`predict`]) and
//! recorded in the audit topic ([`audit`]); [`view`] is what `dlq list` and `dlq show` report.

pub mod audit;
pub mod edit;
pub mod entry;
pub mod predict;
pub mod replay;
pub mod view;

pub use replay::replay_one;

use crate::ctx::Ctx;
use crate::Failure;

/// A dead letter as the TUI shows it.
pub type Item = entry::EntryView;

/// Every dead letter, with its replay status (the TUI's DLQ view).
pub async fn items(ctx: &Ctx) -> Result<Vec<Item>, Failure> {
    view::list(ctx, None, &[]).await
}
