//! `[[upstream_issuers]]`: the identity providers whose tokens a connector
//! may exchange for ours (RFC 8693). Each entry has exactly the fields of
//! an oidc-core trust file entry, read by oidc-core's own reader
//! ([`EntryFields`]), plus `one_time_use`; `audiences` may be left out and
//! then is this service's issuer URL (what connector-client asks its
//! platform for by default).

use std::collections::HashMap;
use std::path::Path;

use oidc_core::verify::trust::file::EntryFields;

use super::Problems;
use crate::config::{Origin, UpstreamIssuerConfig};

/// The key this server adds to a trust entry's fields.
const ONE_TIME_USE: &str = "one_time_use";

pub(super) fn upstream_issuers(
    tables: &[toml::Table],
    issuer: &str,
    origin: &Origin,
    p: &mut Problems,
) -> Option<Vec<UpstreamIssuerConfig>> {
    let base = match origin {
        Origin::File(path) => path.parent().unwrap_or(Path::new(".")),
        Origin::Embedded | Origin::Environment => Path::new("."),
    };
    let mut entries = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut issuers: HashMap<String, usize> = HashMap::new();
    for (index, table) in tables.iter().enumerate() {
        let field = format!("upstream_issuers[{index}]");
        if let Some(entry) = p.part(|p| upstream_issuer(table, issuer, base, &field, p)) {
            let name = entry.entry.name().to_owned();
            if let Some(first) = names.insert(name.clone(), index) {
                p.add(
                    format!("{field}.name"),
                    format!("{name:?} is also the name of upstream_issuers[{first}]; names must be unique"),
                );
                continue;
            }
            let upstream = entry.entry.issuer().to_owned();
            if let Some(first) = issuers.insert(upstream.clone(), index) {
                p.add(
                    format!("{field}.issuer"),
                    format!(
                        "{upstream:?} is also the issuer of upstream_issuers[{first}]; a token's iss must name one entry"
                    ),
                );
                continue;
            }
            entries.push(entry);
        }
    }
    Some(entries)
}

fn upstream_issuer(
    table: &toml::Table,
    issuer: &str,
    base: &Path,
    field: &str,
    p: &mut Problems,
) -> Option<UpstreamIssuerConfig> {
    let mut table = table.clone();
    if table.contains_key("dpop") {
        p.add(
            format!("{field}.dpop"),
            "means nothing here: an upstream token is a credential exchanged at the token endpoint, never \
             presented with a DPoP proof; to require DPoP-bound tokens, set dpop = \"required\" on the connector",
        );
        return None;
    }
    let one_time_use = match table.remove(ONE_TIME_USE) {
        None => true,
        Some(toml::Value::Boolean(value)) => value,
        Some(_) => {
            p.add(
                format!("{field}.{ONE_TIME_USE}"),
                "must be true (each token exchanged once, the default) or false (a platform that reuses its tokens)",
            );
            return None;
        }
    };
    if !table.contains_key("audiences") {
        table.insert(
            "audiences".into(),
            toml::Value::Array(vec![toml::Value::String(issuer.to_owned())]),
        );
    }
    let fields: EntryFields = match toml::Value::Table(table).try_into() {
        Ok(fields) => fields,
        Err(error) => {
            p.add(
                field,
                format!(
                    "{}; the keys are a trust file entry's, plus one_time_use",
                    one_line(&error)
                ),
            );
            return None;
        }
    };
    if fields.issuer() == issuer {
        p.add(
            format!("{field}.issuer"),
            "is this token service's own issuer: its tokens are not upstream identities",
        );
        return None;
    }
    match fields.build(base) {
        Ok(entry) => Some(UpstreamIssuerConfig { entry, one_time_use }),
        Err(error) => {
            p.add(format!("{field}.{}", error.field()), error.to_string());
            None
        }
    }
}

/// The TOML reader's message on one line.
fn one_line(error: &toml::de::Error) -> String {
    error.message().split_whitespace().collect::<Vec<_>>().join(" ")
}
