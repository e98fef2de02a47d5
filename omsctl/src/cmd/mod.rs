//! The command front-ends: each parses its flags, calls the layers below and prints. Nothing
//! below imports from here.

pub mod auth;
pub mod context;
