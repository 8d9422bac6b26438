//! The CloudFormation template grants the token service exactly the AWS
//! actions its code calls, and nothing broader.
//!
//! The code side is read from the sources: every AWS SDK operation the
//! workspace calls is listed below as either a service call (made by the
//! running token service with its role) or an operator call (made by
//! `oidc-server keys ...` with the operator's own credentials). A call in
//! neither list fails the test, so a new SDK call cannot go unnoticed.

use std::collections::BTreeSet;
use std::path::Path;

use e2e::tools::run_python;
use e2e::workspace_path;
use serde_json::Value;

/// SDK operations the running service makes, and the IAM action each needs.
const SERVICE_CALLS: [(&str, &str); 8] = [
    ("get_public_key", "kms:GetPublicKey"),
    ("sign", "kms:Sign"),
    ("decrypt", "kms:Decrypt"),
    ("describe_secret", "secretsmanager:DescribeSecret"),
    ("get_secret_value", "secretsmanager:GetSecretValue"),
    ("get_parameter", "ssm:GetParameter"),
    ("put_item", "dynamodb:PutItem"),
    ("describe_table", "dynamodb:DescribeTable"),
];

/// SDK operations only `oidc-server keys` makes (operator credentials).
const OPERATOR_CALLS: [(&str, &str); 5] = [
    ("encrypt", "kms:Encrypt"),
    ("create_secret", "secretsmanager:CreateSecret"),
    ("put_secret_value", "secretsmanager:PutSecretValue"),
    (
        "update_secret_version_stage",
        "secretsmanager:UpdateSecretVersionStage",
    ),
    ("list_secret_version_ids", "secretsmanager:ListSecretVersionIds"),
];

/// The AWS services whose clients the code may use; STS is absent on
/// purpose: the server forwards the connector's own signed request and calls
/// STS with no credentials of its own.
const SDK_CRATES: [&str; 4] = [
    "aws_sdk_kms",
    "aws_sdk_secretsmanager",
    "aws_sdk_ssm",
    "aws_sdk_dynamodb",
];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The IAM actions of the SDK operations called in the service code.
fn actions_in_code() -> BTreeSet<&'static str> {
    let mut files = Vec::new();
    rust_files(&workspace_path("oidc-core/src"), &mut files);
    rust_files(&workspace_path("oidc-server/src"), &mut files);
    let mut service = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if word.starts_with("aws_sdk_") {
                assert!(
                    SDK_CRATES.contains(&word),
                    "{} uses {word}: add its actions here and to the template",
                    file.display()
                );
            }
        }
        if !text.contains("aws_sdk_") {
            continue;
        }
        // SDK operations are called as `.operation()` (arguments go through
        // the builder), then `.send()`.
        for (op, action) in SERVICE_CALLS {
            if text.contains(&format!(".{op}()")) {
                service.insert(action);
            }
        }
        // Every `.send()` must belong to a listed operation before it.
        let listed: Vec<String> = SERVICE_CALLS
            .iter()
            .chain(OPERATOR_CALLS.iter())
            .map(|(op, _)| format!(".{op}()"))
            .collect();
        for (at, _) in text.match_indices(".send()") {
            let mut start = at.saturating_sub(600);
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &text[start..at];
            assert!(
                listed.iter().any(|call| before.contains(call.as_str())),
                "{}: an SDK call before byte {at} is in neither list of this test",
                file.display()
            );
        }
    }
    service
}

const DECODE: &str = r#"
import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
assert not errors, errors
print(json.dumps(template))
"#;

/// Every branch of `Fn::If`, flattened.
fn branches(value: &Value) -> Vec<&Value> {
    match value.get("Fn::If").and_then(Value::as_array) {
        Some(parts) if parts.len() == 3 => parts[1..].iter().flat_map(branches).collect(),
        _ => vec![value],
    }
}

fn as_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Actions the template grants to the service role: its own policies and the
/// key-policy statements naming it.
fn granted(template: &Value) -> (BTreeSet<String>, Vec<Value>) {
    let resources = template["Resources"].as_object().unwrap();
    let mut actions = BTreeSet::new();
    let mut statements = Vec::new();
    for policy in resources["ServiceRole"]["Properties"]["Policies"]
        .as_array()
        .unwrap()
    {
        for policy in branches(policy) {
            if let Some(list) = policy["PolicyDocument"]["Statement"].as_array() {
                statements.extend(list.iter().cloned());
            }
        }
    }
    for resource in resources.values() {
        if resource["Type"] == "AWS::KMS::Key" {
            for statement in resource["Properties"]["KeyPolicy"]["Statement"]
                .as_array()
                .unwrap()
            {
                if statement["Principal"]["AWS"]["Fn::GetAtt"][0] == "ServiceRole" {
                    statements.push(statement.clone());
                }
            }
        }
    }
    for statement in &statements {
        assert_eq!(statement["Effect"], "Allow");
        actions.extend(as_list(&statement["Action"]));
    }
    (actions, statements)
}

#[tokio::test]
async fn template_grants_exactly_what_the_service_calls() {
    let code = actions_in_code();
    assert!(
        code.contains("kms:Sign") && code.contains("kms:Decrypt"),
        "the scan found the SDK calls: {code:?}"
    );

    let path = workspace_path("deploy/cloudformation/token-service.yaml");
    let out = run_python(DECODE, &[path.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let template: Value = serde_json::from_str(&out.stdout).unwrap();
    let (granted, statements) = granted(&template);

    let aws_granted: BTreeSet<&str> = granted
        .iter()
        .map(String::as_str)
        .filter(|a| {
            a.starts_with("kms:")
                || a.starts_with("secretsmanager:")
                || a.starts_with("ssm:")
                || a.starts_with("sts:")
                || a.starts_with("dynamodb:")
        })
        .collect();
    assert_eq!(aws_granted, code, "template grants vs service calls");
    for action in &granted {
        assert!(
            !action.contains('*'),
            "wildcard action {action} granted to the service"
        );
        assert!(
            !OPERATOR_CALLS.iter().any(|(_, a)| a == action),
            "operator-only action {action} granted to the service"
        );
    }
    // Role statements are scoped to resources (key policies are on the key itself).
    for statement in statements.iter().filter(|s| s.get("Principal").is_none()) {
        assert_ne!(statement["Resource"], "*", "unscoped statement {statement}");
    }
    // Nothing else in the template can call STS, KMS or Secrets Manager for the service.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("sts:GetCallerIdentity"),
        "the service needs no STS permission"
    );
}

/// The replay table is the one the server checks for at start (`pk` String
/// partition key, TTL on `expires_at`, on demand), the role may write to that
/// table only, and both platforms' configurations record uses there: a fleet
/// never keeps one-time use in memory.
#[tokio::test]
async fn the_replay_table_serves_both_platforms() {
    let path = workspace_path("deploy/cloudformation/token-service.yaml");
    let out = run_python(DECODE, &[path.to_str().unwrap()]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let template: Value = serde_json::from_str(&out.stdout).unwrap();
    let resources = &template["Resources"];
    let table = &resources["ReplayTable"];
    assert_eq!(table["Type"], "AWS::DynamoDB::Table");
    let props = &table["Properties"];
    assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        props["KeySchema"],
        serde_json::json!([{"AttributeName": oidc_server::replay::PARTITION_KEY, "KeyType": "HASH"}])
    );
    assert_eq!(
        props["AttributeDefinitions"],
        serde_json::json!([{"AttributeName": oidc_server::replay::PARTITION_KEY, "AttributeType": "S"}])
    );
    assert_eq!(
        props["TimeToLiveSpecification"],
        serde_json::json!({"AttributeName": oidc_server::replay::EXPIRES_AT, "Enabled": true})
    );

    let (_, statements) = granted(&template);
    let replay: Vec<&Value> = statements
        .iter()
        .filter(|s| as_list(&s["Action"]).iter().any(|a| a.starts_with("dynamodb:")))
        .collect();
    assert_eq!(replay.len(), 1, "{replay:?}");
    assert_eq!(
        replay[0]["Resource"],
        serde_json::json!({"Fn::GetAtt": ["ReplayTable", "Arn"]})
    );

    let text = std::fs::read_to_string(&path).unwrap();
    let configs = text.matches("OIDC_SERVER_CONFIG_TOML").count();
    let dynamodb = text
        .matches(
            "[replay]\n                  store = \"dynamodb\"\n                  table = \"${ReplayTable}\"",
        )
        .count();
    assert_eq!(configs, 2, "the Lambda and the ECS configuration");
    assert_eq!(dynamodb, configs, "each records one-time uses in the table");
}
