//! HTTP handlers, one module per endpoint.

pub mod discovery;
pub mod health;
pub mod token;

pub use crate::peer::Peer;
