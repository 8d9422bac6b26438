//! Connector token source.
