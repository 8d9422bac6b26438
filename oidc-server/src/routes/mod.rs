//! HTTP handlers, one module per endpoint.

pub(crate) mod discovery;
pub(crate) mod health;
mod peer;
pub(crate) mod token;

pub(crate) use peer::Peer;
