//! The audit events are what docs/deploy.md says they are: the table of
//! fields in "Where the logs are" lists exactly the fields each event has
//! (besides the `timestamp`, `level` and `target` of every log line), so an
//! operator can trace a connector by its fields, and a field added or
//! dropped in the code without the guide fails here. The command lines and
//! configuration snippets of the docs are checked by the e2e package's
//! `docs` tests, which reach both command lines.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::edge::audited;
use crate::support::fixture::{SECRET, SECRET_CLIENT};
use crate::support::{basic, form_request, TestApp};

/// Fields of every log line, not of the event.
const LINE_FIELDS: [&str; 3] = ["timestamp", "level", "target"];

/// The documented fields of each event: the table whose header names the
/// events (`| field | \`token_issued\` | \`token_refused\` | ... |`), "yes"
/// where an event has the field.
fn documented_fields(markdown: &str) -> BTreeMap<String, BTreeSet<String>> {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_owned())
            .collect()
    };
    let lines: Vec<&str> = markdown.lines().collect();
    let header = lines
        .iter()
        .position(|l| {
            l.starts_with("| field |") && l.contains("`token_issued`") && l.contains("`token_refused`")
        })
        .expect(
            "docs/deploy.md has the audit field table (| field | `token_issued` | `token_refused` | ...)",
        );
    let events = cells(lines[header]);
    let mut fields: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in lines[header + 2..].iter().take_while(|l| l.starts_with('|')) {
        let row = cells(line);
        for (column, event) in events.iter().enumerate().skip(1) {
            if row.get(column).is_some_and(|c| c == "yes") {
                fields.entry(event.clone()).or_default().insert(row[0].clone());
            }
        }
    }
    fields
}

#[tokio::test(flavor = "current_thread")]
async fn every_audit_field_is_documented_and_every_documented_field_is_written() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md")).unwrap();
    let documented = documented_fields(&guide);

    let app = TestApp::new().await;
    let peer: SocketAddr = "198.51.100.23:40000".parse().unwrap();
    let grant = [("grant_type", "client_credentials")];
    let ((issued, refused), events) = audited(async {
        let issued = app
            .send_from(
                peer,
                form_request("/token", Some(&basic(SECRET_CLIENT, SECRET)), &grant),
            )
            .await;
        let refused = app
            .send_from(
                peer,
                form_request("/token", Some(&basic(SECRET_CLIENT, "wrong")), &grant),
            )
            .await;
        (issued, refused)
    })
    .await;
    assert_eq!((issued.status, refused.status), (200, 401));

    let mut written: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in &events {
        let object = event.as_object().unwrap();
        // Both events carry the peer (an operator tracing a connector needs
        // where it asked from, not only where it failed from).
        assert_eq!(event["peer"], "198.51.100.23", "{event}");
        written
            .entry(event["event"].as_str().unwrap().to_owned())
            .or_default()
            .extend(
                object
                    .keys()
                    .filter(|k| !LINE_FIELDS.contains(&k.as_str()))
                    .cloned(),
            );
    }
    assert_eq!(written.len(), 2, "{events:?}");
    assert_eq!(
        documented, written,
        "docs/deploy.md's audit field table (left) and the events written (right) differ"
    );
}

/// Every reason a refused DPoP proof is counted and audited under
/// (`DpopError::METRIC_REASONS`, and the endpoint's own `dpop_required` and
/// `dpop_several_headers`) is in docs/deploy.md's refusal tables: in the
/// `dpop_*` row without its prefix, or in a row of its own.
#[test]
fn every_dpop_refusal_reason_is_documented() {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md")).unwrap();
    let dpop_row = guide
        .lines()
        .find(|l| l.starts_with("| `dpop_*` |"))
        .expect("docs/deploy.md has the `dpop_*` row of the refusal table");
    let endpoint_reasons = ["dpop_required", "dpop_several_headers"];
    let undocumented: Vec<&str> = oidc_core::dpop::DpopError::METRIC_REASONS
        .iter()
        .chain(&endpoint_reasons)
        .copied()
        .filter(|name| {
            let suffix = name.strip_prefix("dpop_").unwrap();
            !dpop_row.contains(&format!("`{suffix}`")) && !guide.contains(&format!("\n| `{name}` |"))
        })
        .collect();
    assert!(
        undocumented.is_empty(),
        "DPoP refusal reasons missing from docs/deploy.md: {undocumented:?}"
    );
}
