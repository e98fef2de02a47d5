//! The command front-ends: each parses its flags, calls the layers below and prints. Nothing
//! below imports from here.

pub mod auth;
pub mod bench;
pub mod chaos;
pub mod confirm;
pub mod context;
pub mod dlq;
pub mod drill;
pub mod groups;
pub mod order;
pub mod produce;
pub mod saga;
pub mod stack;
pub mod tail;
pub mod topics;
pub mod verify;
pub mod version;
