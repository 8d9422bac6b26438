//! A connector's `federated` bindings and `copy_claims`, and the rule that
//! makes token exchange unambiguous: no two connectors may bind the same
//! upstream token.

use oidc_core::claims::{self, AWS_STS_NAMESPACE};
use oidc_core::verify::{ClaimPath, Glob};
use serde_json::Value;

use super::Problems;
use crate::config::raw::{ConnectorSection, FederatedSection};
use crate::config::{ClaimEquals, ConnectorConfig, CopiedClaim, FederatedBinding};

/// Longest `subject` pattern (an ARN is at most 2048 characters).
const MAX_SUBJECT_LEN: usize = 2048;

/// The connector's bindings, each naming an entry of `upstream_names`.
pub(super) fn federated(
    sections: &[FederatedSection],
    upstream_names: &[&str],
    field: &str,
    p: &mut Problems,
) -> Option<Vec<FederatedBinding>> {
    let mut bindings = Vec::new();
    for (index, section) in sections.iter().enumerate() {
        let field = format!("{field}.federated[{index}]");
        if let Some(binding) = p.part(|p| binding(section, upstream_names, &field, p)) {
            bindings.push(binding);
        }
    }
    Some(bindings)
}

fn binding(
    section: &FederatedSection,
    upstream_names: &[&str],
    field: &str,
    p: &mut Problems,
) -> Option<FederatedBinding> {
    if !upstream_names.contains(&section.issuer.as_str()) {
        let known = if upstream_names.is_empty() {
            "there is none: add an [[upstream_issuers]] entry".to_owned()
        } else {
            format!("known: {}", upstream_names.join(", "))
        };
        p.add(
            format!("{field}.issuer"),
            format!(
                "{:?} is not the name of an [[upstream_issuers]] entry ({known})",
                section.issuer
            ),
        );
    }
    let subject = &section.subject;
    if subject.is_empty() || subject.len() > MAX_SUBJECT_LEN || subject.chars().any(char::is_control) {
        p.add(
            format!("{field}.subject"),
            format!(
                "must be 1 to {MAX_SUBJECT_LEN} characters without control characters: the upstream token's sub, \
                 exact or a glob (* any run of characters, ? one)"
            ),
        );
    }
    let mut claims = Vec::new();
    for (name, value) in &section.claims {
        let claim_field = format!("{field}.claims");
        let Some(path) = claim_path(name, &claim_field, p) else {
            continue;
        };
        let value = match value {
            toml::Value::String(s) => Value::String(s.clone()),
            toml::Value::Integer(n) => Value::from(*n),
            toml::Value::Boolean(b) => Value::Bool(*b),
            _ => {
                p.add(
                    claim_field,
                    format!("{name:?} must be a string, an integer or a boolean"),
                );
                continue;
            }
        };
        claims.push(ClaimEquals {
            name: name.clone(),
            path,
            value,
        });
    }
    Some(FederatedBinding {
        issuer: section.issuer.clone(),
        subject: subject.clone(),
        subject_glob: Glob::new(subject),
        claims,
    })
}

/// A claim name or JSON Pointer a binding or `copy_claims` may read: a
/// valid pointer, never into what a caller chose (AWS's `request_tags`).
fn claim_path(name: &str, field: &str, p: &mut Problems) -> Option<ClaimPath> {
    let Some(path) = ClaimPath::parse(name) else {
        p.add(
            field,
            format!(
                "{name:?} starts with / but is not a JSON Pointer (RFC 6901: escape ~ as ~0 and / as ~1, \
                 e.g. \"/https:~1~1sts.amazonaws.com~1/aws_account\")"
            ),
        );
        return None;
    };
    if caller_chosen(&path) {
        p.add(
            field,
            format!(
                "{name:?} is in AWS's request_tags, which the caller of GetWebIdentityToken chooses: \
                 bind principal_tags, aws_account or org_id instead"
            ),
        );
        return None;
    }
    Some(path)
}

/// Whether `path` is inside AWS STS's `request_tags`.
fn caller_chosen(path: &ClaimPath) -> bool {
    matches!(path.segments(), [namespace, tags, ..] if namespace == AWS_STS_NAMESPACE && tags == "request_tags")
}

/// `copy_claims = { attribute = "claim or /pointer" }`.
pub(super) fn copy_claims(
    section: &ConnectorSection,
    field: &str,
    p: &mut Problems,
) -> Option<Vec<CopiedClaim>> {
    let field = format!("{field}.copy_claims");
    if !section.copy_claims.is_empty() && section.federated.is_empty() {
        p.add(
            &field,
            "copies claims of an exchanged upstream token: the connector needs federated bindings",
        );
        return None;
    }
    let mut copied = Vec::new();
    for (attribute, from) in &section.copy_claims {
        if claims::is_reserved(attribute) {
            p.add(
                &field,
                format!(
                    "{attribute:?} would shadow a registered claim; reserved names: {}",
                    claims::RESERVED_CLAIMS.join(", ")
                ),
            );
            continue;
        }
        if section.attributes.contains_key(attribute) {
            p.add(
                &field,
                format!("{attribute:?} is also set in attributes: one value per attribute"),
            );
            continue;
        }
        if let Some(path) = claim_path(from, &field, p) {
            copied.push(CopiedClaim {
                attribute: attribute.clone(),
                from: from.clone(),
                path,
            });
        }
    }
    Some(copied)
}

/// Refuses bindings of two connectors that some token could match both:
/// the same upstream entry, subjects some `sub` matches both, and no claim
/// both bind with different values. `connectors` are paired with their
/// index in the file, for the message.
pub(super) fn ambiguous_bindings(connectors: &[(usize, ConnectorConfig)], p: &mut Problems) {
    for (position, (first_index, first)) in connectors.iter().enumerate() {
        for (second_index, second) in &connectors[position + 1..] {
            for (a_index, a) in first.federated.iter().enumerate() {
                for (b_index, b) in second.federated.iter().enumerate() {
                    if a.issuer != b.issuer || !subjects_overlap(a, b) || claims_differ(a, b) {
                        continue;
                    }
                    p.add(
                        format!("connectors[{second_index}].federated[{b_index}]"),
                        format!(
                            "could match the same upstream tokens as connectors[{first_index}].federated[{a_index}] \
                             (connector {:?}): both bind issuer {:?}, some sub matches both {:?} and {:?}, and no \
                             claim they both bind has different values. Exactly one connector may match a token: \
                             make the subjects disjoint, or bind a claim (an account, a tag) to different values",
                            first.id, a.issuer, a.subject, b.subject
                        ),
                    );
                }
            }
        }
    }
}

/// Whether some `sub` matches both bindings' subjects.
fn subjects_overlap(a: &FederatedBinding, b: &FederatedBinding) -> bool {
    if a.subject_glob.is_literal() && b.subject_glob.is_literal() {
        return a.subject == b.subject;
    }
    a.subject_glob.overlaps(&b.subject_glob)
}

/// Whether the bindings require one claim to have different values.
fn claims_differ(a: &FederatedBinding, b: &FederatedBinding) -> bool {
    a.claims.iter().any(|x| {
        b.claims
            .iter()
            .any(|y| x.path.segments() == y.path.segments() && x.value != y.value)
    })
}
