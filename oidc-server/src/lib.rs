//! Token endpoint.
