//! HTTP handlers, one module per endpoint.

pub mod discovery;
pub mod health;
mod peer;
pub mod token;

pub use peer::Peer;
