//! `[[connectors]]`: who may ask for tokens, with which credentials, for what.

use std::collections::{BTreeSet, HashSet};

use oidc_core::claims::{self, Attributes};
use oidc_core::JwkSet;

use super::federated::{ambiguous_bindings, copy_claims, federated};
use super::Problems;
use crate::config::raw::ConnectorSection;
use crate::config::{ConnectorConfig, Origin};

/// The connectors; `upstream_names` are the names of the
/// `[[upstream_issuers]]` entries, which `federated` bindings name.
pub(super) fn connectors(
    sections: &[ConnectorSection],
    origin: &Origin,
    upstream_names: &[&str],
    p: &mut Problems,
) -> Option<Vec<ConnectorConfig>> {
    let mut connectors = Vec::new();
    let mut seen = HashSet::new();
    for (index, section) in sections.iter().enumerate() {
        let field = format!("connectors[{index}]");
        if !seen.insert(section.id.clone()) {
            p.add(
                format!("{field}.id"),
                format!("{:?} is registered twice", section.id),
            );
        }
        if let Some(connector) = p.part(|p| connector(section, origin, upstream_names, &field, p)) {
            connectors.push((index, connector));
        }
    }
    ambiguous_bindings(&connectors, p);
    Some(connectors.into_iter().map(|(_, c)| c).collect())
}

fn connector(
    section: &ConnectorSection,
    origin: &Origin,
    upstream_names: &[&str],
    field: &str,
    p: &mut Problems,
) -> Option<ConnectorConfig> {
    let id = &section.id;
    let id_ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:@".contains(c));
    p.require(
        id_ok,
        (),
        &format!("{field}.id"),
        format!("{id:?} must be 1 to 128 characters of letters, digits and ._-:@"),
    );
    let secret_sha256 = match &section.secret_sha256 {
        None => Some(None),
        Some(hex_digest) => {
            let mut digest = [0u8; 32];
            let ok = hex::decode_to_slice(hex_digest, &mut digest).is_ok();
            p.require(
                ok,
                Some(digest),
                &format!("{field}.secret_sha256"),
                "must be 64 hex digits (the SHA-256 of the secret, as printed by `oidc-server connectors add`)",
            )
        }
    };
    let jwks = jwks(section, origin, field, p);
    if section.secret_sha256.is_none()
        && section.jwks.is_none()
        && section.jwks_file.is_none()
        && section.aws_principals.is_empty()
        && section.aws_principal_ids.is_empty()
        && section.federated.is_empty()
    {
        p.add(
            field.to_owned(),
            "has no credential: set secret_sha256 (client secret), jwks/jwks_file (private_key_jwt), \
             aws_principals / aws_principal_ids (AWS IAM) or federated (token exchange)",
        );
    }
    let federated = federated(&section.federated, upstream_names, field, p);
    for principal in &section.aws_principals {
        let body = principal.strip_suffix('*').unwrap_or(principal);
        if !principal.starts_with("arn:") || body.contains('*') || principal.split(':').count() < 6 {
            p.add(
                format!("{field}.aws_principals"),
                format!("{principal:?} must be an IAM ARN like arn:aws:iam::123456789012:role/name (a trailing * is allowed)"),
            );
        } else if principal.ends_with('*')
            && body
                .split_once(":role/")
                .is_some_and(|(_, name)| name.contains('/'))
        {
            p.add(
                format!("{field}.aws_principals"),
                format!(
                    "{principal:?}: a role session's ARN carries no path, so a wildcard after a path cannot be checked; \
                     use role/NAME-PREFIX* or bind exact role ARNs or aws_principal_ids"
                ),
            );
        }
    }
    for id in &section.aws_principal_ids {
        let ok = (id.starts_with("AROA") || id.starts_with("AIDA"))
            && (16..=128).contains(&id.len())
            && id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok {
            p.add(
                format!("{field}.aws_principal_ids"),
                format!("{id:?} must be an IAM unique id: AROA... (a role) or AIDA... (a user), as `aws iam get-role` shows (RoleId)"),
            );
        }
    }
    if section.audiences.is_empty() || section.audiences.iter().any(String::is_empty) {
        p.add(
            format!("{field}.audiences"),
            "list at least one non-empty audience; the first is the default",
        );
    }
    for scope in section.scopes.iter().chain(&section.default_scopes) {
        if scope.is_empty()
            || !scope
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        {
            p.add(
                format!("{field}.scopes"),
                format!("{scope:?} is not a valid scope token"),
            );
        }
    }
    let scopes: BTreeSet<String> = section.scopes.iter().cloned().collect();
    for scope in &section.default_scopes {
        if !scopes.contains(scope) {
            p.add(
                format!("{field}.default_scopes"),
                format!("{scope:?} is not in scopes; default scopes must be allowed scopes"),
            );
        }
    }
    let attributes = attributes(&section.attributes, field, p);
    let copy_claims = copy_claims(section, field, p);
    Some(ConnectorConfig {
        id: id.clone(),
        secret_sha256: secret_sha256?,
        jwks: jwks?,
        audiences: section.audiences.clone(),
        scopes,
        default_scopes: section.default_scopes.clone(),
        attributes: attributes?,
        aws_principals: section.aws_principals.clone(),
        aws_principal_ids: section.aws_principal_ids.clone(),
        federated: federated?,
        copy_claims: copy_claims?,
        dpop: section.dpop,
    })
}

/// The connector's `private_key_jwt` keys: inline or from a file, at least one usable.
fn jwks(
    section: &ConnectorSection,
    origin: &Origin,
    field: &str,
    p: &mut Problems,
) -> Option<Option<JwkSet>> {
    let text = match (&section.jwks, &section.jwks_file) {
        (Some(_), Some(_)) => {
            p.add(format!("{field}.jwks"), "set either jwks or jwks_file, not both");
            return None;
        }
        (Some(table), None) => serde_json::to_string(table).ok(),
        (None, Some(file)) => match origin.read(file) {
            Ok(text) => Some(text),
            Err(e) => {
                p.add(format!("{field}.jwks_file"), e);
                return None;
            }
        },
        (None, None) => return Some(None),
    };
    match JwkSet::from_json(text.unwrap_or_default().as_bytes()) {
        Ok(set) if set.is_empty() => {
            let reasons: Vec<String> = set.refused().iter().map(|r| r.reason.to_string()).collect();
            p.add(
                format!("{field}.jwks"),
                format!("no usable key ({})", reasons.join("; ")),
            );
            None
        }
        Ok(set) => Some(Some(set)),
        Err(e) => {
            p.add(format!("{field}.jwks"), e.to_string());
            None
        }
    }
}

fn attributes(table: &toml::Table, field: &str, p: &mut Problems) -> Option<Attributes> {
    match serde_json::to_value(table) {
        Ok(serde_json::Value::Object(map)) => match Attributes::try_from(map) {
            Ok(attrs) => Some(attrs),
            Err(e) => {
                p.add(
                    format!("{field}.attributes"),
                    format!("{e}; reserved names: {}", claims::RESERVED_CLAIMS.join(", ")),
                );
                None
            }
        },
        _ => {
            p.add(format!("{field}.attributes"), "must be a table");
            None
        }
    }
}
