//! The CloudFormation template (`deploy/cloudformation/token-service.yaml`)
//! as one deployment of it would be: decoded with cfn-lint's own decoder
//! (the virtualenv's Python), its parameters given or at their defaults and
//! checked against their constraints, its rules and conditions decided, its
//! intrinsic functions (`Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::If`, ...)
//! evaluated. What a deployment's resources resolve to (a table's name, a
//! key's ARN) is whatever the caller says ([`Deployment::resolve`]), so a
//! test can point them at what it created in the emulator; any other
//! resolves to a made-up but well-formed name, or, for a test that reads the
//! template rather than runs it, to a placeholder naming the resource
//! ([`Deployment::placeholders`]).
//!
//! [`Deployment::service_config`] and [`Deployment::rotation_template`] are
//! the texts the stack hands the token service and the rotation function:
//! tests run those, not a hand-written twin, so a change of the template
//! that breaks serving breaks them.

use std::collections::BTreeMap;
use std::time::Duration;

use oidc_server::keyset::document::Timings;
use serde_json::{json, Value};

use crate::tools::run_python;
use crate::workspace_path;

/// The account every deployment is in (moto's default account).
pub const ACCOUNT: &str = "123456789012";

/// The template's path in the workspace.
pub const TEMPLATE: &str = "deploy/cloudformation/token-service.yaml";

/// The key set's rules in a stack deployed with the template's defaults
/// (15-minute tokens, a 5-minute JWKS max-age, a 30 s poll, a minute's
/// leeway, the default rotation window; `deploy.rs` checks them against the
/// rendered template): for tests that need a valid set and no timings of
/// their own.
pub const DEFAULT_TIMINGS: Timings = Timings {
    max_token_lifetime: Duration::from_secs(900),
    jwks_max_age: Duration::from_secs(300),
    poll_interval: Duration::from_secs(30),
    leeway: Duration::from_secs(60),
    rotation_window: Timings::DEFAULT_ROTATION_WINDOW,
};

const DECODE: &str = r#"
import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
assert not errors, errors
print(json.dumps(template))
"#;

const PATTERNS: &str = r#"
import json, re, sys
for name, pattern, value in json.loads(sys.argv[1]):
    if re.fullmatch(pattern, value) is None:
        print(f"parameter {name}: {value!r} does not match its AllowedPattern {pattern}")
"#;

/// The template, decoded as CloudFormation reads it (short-form tags become
/// `Ref` / `Fn::...` objects).
pub async fn template() -> Value {
    let path = workspace_path(TEMPLATE);
    let out = run_python(DECODE, &[path.to_str().expect("a UTF-8 path")]).await;
    assert_eq!(out.code, 0, "cfn-lint cannot decode {TEMPLATE}: {}", out.stderr);
    serde_json::from_str(&out.stdout).expect("the decoder prints JSON")
}

/// One deployment of the template: a stack name, a region, parameters.
#[derive(Debug, Clone)]
pub struct Deployment<'a> {
    template: &'a Value,
    stack: String,
    region: String,
    parameters: BTreeMap<String, String>,
    resolved: BTreeMap<String, String>,
    placeholders: bool,
}

impl<'a> Deployment<'a> {
    /// The stack `stack` in `region`, with `parameters` given and every
    /// other at its default. Panics on a parameter the template does not
    /// declare.
    pub fn new(template: &'a Value, stack: &str, region: &str, parameters: &[(&str, &str)]) -> Self {
        for (name, _) in parameters {
            assert!(
                template["Parameters"].get(*name).is_some(),
                "{TEMPLATE} declares no parameter {name}"
            );
        }
        Self {
            template,
            stack: stack.to_owned(),
            region: region.to_owned(),
            parameters: parameters
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            resolved: BTreeMap::new(),
            placeholders: false,
        }
    }

    /// `Ref name` (a resource's logical id) or `Fn::GetAtt` `name`
    /// (`Resource.Attribute`) resolves to `value`.
    pub fn resolve(mut self, name: &str, value: &str) -> Self {
        self.resolved.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Every reference not [resolved](Self::resolve) renders as `<Name>`
    /// (`Ref`) or `<Resource.Attribute>` (`Fn::GetAtt`) instead of a made-up
    /// name: a value that names a resource says which, and cannot pass for
    /// an ARN or a name anything real has.
    pub fn placeholders(mut self) -> Self {
        self.placeholders = true;
        self
    }

    /// The stack's name.
    pub fn stack_name(&self) -> &str {
        &self.stack
    }

    /// The value parameter `name` was given (`None`: it keeps its default).
    pub fn given(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// Checks what CloudFormation checks before creating the stack: every
    /// parameter has a value within its constraints (`AllowedValues`,
    /// `MinValue`/`MaxValue`, `AllowedPattern`), and every rule of the
    /// template holds.
    pub async fn check(&self) -> Result<(), String> {
        let mut patterns = Vec::new();
        for (name, declared) in self.template["Parameters"].as_object().expect("Parameters") {
            let value = self.param_text(name)?;
            if let Some(allowed) = declared["AllowedValues"].as_array() {
                if !allowed.iter().any(|a| scalar(a) == value) {
                    return Err(format!(
                        "parameter {name}: {value:?} is not among its AllowedValues"
                    ));
                }
            }
            if declared["Type"] == "Number" {
                let number: f64 = value
                    .parse()
                    .map_err(|_| format!("parameter {name}: {value:?} is not a number"))?;
                let bound = |key: &str| {
                    declared[key]
                        .as_f64()
                        .or_else(|| declared[key].as_str()?.parse().ok())
                };
                if bound("MinValue").is_some_and(|min| number < min)
                    || bound("MaxValue").is_some_and(|max| number > max)
                {
                    return Err(format!(
                        "parameter {name}: {value} is outside its MinValue/MaxValue"
                    ));
                }
            }
            if let Some(pattern) = declared["AllowedPattern"].as_str() {
                let items: Vec<String> = if declared["Type"] == "CommaDelimitedList" {
                    value.split(',').map(str::to_owned).collect()
                } else {
                    vec![value]
                };
                for item in items {
                    patterns.push(json!([name, pattern, item]));
                }
            }
        }
        let out = run_python(PATTERNS, &[&Value::Array(patterns).to_string()]).await;
        if out.code != 0 || !out.stdout.trim().is_empty() {
            return Err(format!("{}{}", out.stdout.trim(), out.stderr.trim()));
        }
        self.rules_hold()
    }

    /// Whether every rule of the template holds for this deployment (the
    /// rules alone: [`check`](Self::check) checks the parameters' constraints
    /// too).
    pub fn rules_hold(&self) -> Result<(), String> {
        for (name, rule) in self.template["Rules"].as_object().into_iter().flatten() {
            if rule.get("RuleCondition").is_some_and(|c| !self.truth(c)) {
                continue;
            }
            let assertions = rule["Assertions"]
                .as_array()
                .unwrap_or_else(|| panic!("rule {name} has no Assertions"));
            for assertion in assertions {
                if !self.truth(&assertion["Assert"]) {
                    return Err(format!("rule {name}: {}", assertion["AssertDescription"]));
                }
            }
        }
        Ok(())
    }

    fn param_text(&self, name: &str) -> Result<String, String> {
        match self.parameters.get(name) {
            Some(value) => Ok(value.clone()),
            None => match &self.template["Parameters"][name]["Default"] {
                Value::Null => Err(format!("parameter {name} has no value and no default")),
                other => Ok(scalar(other)),
            },
        }
    }

    /// The value of parameter `name` (a list for a `CommaDelimitedList`).
    pub fn param(&self, name: &str) -> Value {
        let text = self.param_text(name).unwrap_or_else(|e| panic!("{e}"));
        if self.template["Parameters"][name]["Type"] == "CommaDelimitedList" {
            return text.split(',').map(|s| json!(s)).collect();
        }
        Value::String(text)
    }

    /// Whether condition `name` holds for this deployment.
    pub fn condition(&self, name: &str) -> bool {
        let condition = &self.template["Conditions"][name];
        assert!(!condition.is_null(), "{TEMPLATE} has no condition {name}");
        self.truth(condition)
    }

    fn truth(&self, value: &Value) -> bool {
        let (function, args) = single(value).unwrap_or_else(|| panic!("not a condition: {value}"));
        let args_list = || args.as_array().expect("a list of arguments").iter();
        match function {
            "Condition" => self.condition(args.as_str().expect("a condition name")),
            "Fn::Equals" => {
                let values: Vec<Value> = args_list().map(|a| self.value(a)).collect();
                values[0] == values[1]
            }
            "Fn::And" => args_list().all(|a| self.truth(a)),
            "Fn::Or" => args_list().any(|a| self.truth(a)),
            "Fn::Not" => !self.truth(&args[0]),
            "Fn::Contains" => {
                let list = self.value(&args[0]);
                let item = self.value(&args[1]);
                list.as_array()
                    .unwrap_or_else(|| panic!("Fn::Contains of {list}, not a list"))
                    .contains(&item)
            }
            other => panic!("condition function {other} is not evaluated here"),
        }
    }

    /// What `Ref name`, `${name}` or `Fn::GetAtt` `name` (as
    /// `Resource.Attribute`) resolves to (`None` for `AWS::NoValue`).
    pub fn reference(&self, name: &str) -> Option<Value> {
        let pseudo = match name {
            "AWS::NoValue" => return None,
            "AWS::StackName" => Some(self.stack.clone()),
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(ACCOUNT.to_owned()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Some(Value::String(value));
        }
        if self.template["Parameters"].get(name).is_some() {
            return Some(self.param(name));
        }
        let resource = name.split('.').next().unwrap_or(name);
        assert!(
            self.resources().contains_key(resource),
            "{name} is not a resource of this deployment"
        );
        let value = match self.resolved.get(name) {
            Some(value) => value.clone(),
            None if self.placeholders => format!("<{name}>"),
            None => match name.split_once('.') {
                // Made up, in the shape of what CloudFormation would make.
                Some((id, "Arn")) if self.resource_type(id) == "AWS::IAM::Role" => {
                    format!("arn:aws:iam::{ACCOUNT}:role/{}-{id}-0123ABCD", self.stack)
                }
                Some((id, attribute)) => format!("{}-{id}-{attribute}", self.stack),
                None => format!("{}-{name}-0123ABCD", self.stack),
            },
        };
        Some(Value::String(value))
    }

    fn resource_type(&self, id: &str) -> &str {
        self.template["Resources"][id]["Type"]
            .as_str()
            .unwrap_or_default()
    }

    fn sub(&self, text: &str, vars: &serde_json::Map<String, Value>) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            out.push_str(&rest[..at]);
            let end = rest[at..].find('}').expect("a closed ${...}") + at;
            let name = &rest[at + 2..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else {
                let value = match vars.get(name) {
                    Some(value) => self.eval(value),
                    None => self.reference(name),
                };
                out.push_str(&scalar(
                    &value.unwrap_or_else(|| panic!("${{{name}}} has no value")),
                ));
            }
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// `value` evaluated where a value is required: `AWS::NoValue` there is
    /// a mistake of the template.
    fn value(&self, value: &Value) -> Value {
        self.eval(value)
            .unwrap_or_else(|| panic!("{value} is AWS::NoValue where a value is required"))
    }

    /// `value` evaluated; `None` for `AWS::NoValue`.
    pub fn eval(&self, value: &Value) -> Option<Value> {
        if let Some((function, args)) = single(value) {
            return match function {
                "Ref" => self.reference(args.as_str().expect("a name")),
                "Fn::GetAtt" => {
                    let name = match args {
                        Value::Array(parts) => format!("{}.{}", scalar(&parts[0]), scalar(&parts[1])),
                        other => scalar(other),
                    };
                    self.reference(&name)
                }
                "Fn::If" => {
                    let branch = if self.condition(args[0].as_str().expect("a condition name")) {
                        1
                    } else {
                        2
                    };
                    self.eval(&args[branch])
                }
                "Fn::Sub" => Some(Value::String(match args {
                    Value::String(text) => self.sub(text, &serde_json::Map::new()),
                    Value::Array(parts) => self.sub(
                        parts[0].as_str().expect("a text"),
                        parts[1].as_object().expect("variables"),
                    ),
                    other => panic!("Fn::Sub {other}"),
                })),
                "Fn::Join" => {
                    let items = self.value(&args[1]);
                    let items: Vec<String> = items
                        .as_array()
                        .unwrap_or_else(|| panic!("Fn::Join of {items}, not a list"))
                        .iter()
                        .map(scalar)
                        .collect();
                    Some(Value::String(items.join(args[0].as_str().expect("a separator"))))
                }
                "Fn::Split" => {
                    let text = scalar(&self.value(&args[1]));
                    Some(
                        text.split(args[0].as_str().expect("a separator"))
                            .map(|s| json!(s))
                            .collect(),
                    )
                }
                "Fn::Select" => {
                    let index: usize = scalar(&self.value(&args[0])).parse().expect("an index");
                    Some(self.value(&args[1])[index].clone())
                }
                "Condition" => Some(Value::Bool(
                    self.condition(args.as_str().expect("a condition name")),
                )),
                _ => Some(Value::Bool(self.truth(value))),
            };
        }
        match value {
            Value::Array(items) => Some(items.iter().filter_map(|v| self.eval(v)).collect()),
            Value::Object(map) => Some(Value::Object(
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), self.eval(v)?)))
                    .collect(),
            )),
            other => Some(other.clone()),
        }
    }

    /// The logical ids of the resources this deployment creates.
    pub fn resources(&self) -> BTreeMap<&'a str, &'a Value> {
        self.template["Resources"]
            .as_object()
            .expect("Resources")
            .iter()
            .filter(|(_, r)| r["Condition"].as_str().is_none_or(|c| self.condition(c)))
            .map(|(id, r)| (id.as_str(), r))
            .collect()
    }

    /// Resource `id` as deployed (its properties evaluated).
    pub fn resource(&self, id: &str) -> Value {
        let resource = self
            .resources()
            .get(id)
            .copied()
            .unwrap_or_else(|| panic!("this deployment has no resource {id}"));
        self.eval(resource).expect("a resource")
    }

    /// Whether the deployment creates resource `id`.
    pub fn has(&self, id: &str) -> bool {
        self.resources().contains_key(id)
    }

    /// The token service's configuration (`OIDC_SERVER_CONFIG_TOML`): the
    /// Lambda function's or the ECS task's, whichever the platform makes.
    pub fn service_config(&self) -> String {
        let mut found = Vec::new();
        if self.has("TokenFunction") {
            let function = self.resource("TokenFunction");
            found.push(function["Properties"]["Environment"]["Variables"]["OIDC_SERVER_CONFIG_TOML"].clone());
        }
        if self.has("TaskDefinition") {
            let task = self.resource("TaskDefinition");
            for container in task["Properties"]["ContainerDefinitions"]
                .as_array()
                .expect("ContainerDefinitions")
            {
                for variable in container["Environment"]
                    .as_array()
                    .expect("a container's Environment")
                {
                    if variable["Name"] == "OIDC_SERVER_CONFIG_TOML" {
                        found.push(variable["Value"].clone());
                    }
                }
            }
        }
        assert_eq!(found.len(), 1, "one server configuration: {found:?}");
        found[0].as_str().expect("a configuration text").to_owned()
    }

    /// The environment variable `name` of the rotation function.
    pub fn rotation_function_env(&self, name: &str) -> Option<String> {
        let function = self.resource("RotationFunction");
        function["Properties"]["Environment"]["Variables"][name]
            .as_str()
            .map(str::to_owned)
    }

    /// The key-set template the rotation function is given
    /// (`OIDC_SERVER_KEY_SET_TEMPLATE`).
    pub fn rotation_template(&self) -> String {
        self.rotation_function_env(oidc_server::lambda::rotation::TEMPLATE_ENV)
            .expect("the rotation function has a key-set template")
    }

    /// The rotation schedule's period (`AutomaticallyAfterDays`), in days.
    pub fn rotation_period_days(&self) -> u64 {
        let schedule = self.resource("KeySetRotationSchedule");
        let days = &schedule["Properties"]["RotationRules"]["AutomaticallyAfterDays"];
        scalar(days).parse().expect("a whole number of days")
    }

    /// Whether the schedule rotates when the stack is created or updated
    /// (`RotateImmediatelyOnUpdate`).
    pub fn rotates_at_creation(&self) -> bool {
        let schedule = self.resource("KeySetRotationSchedule");
        schedule["Properties"]["RotateImmediatelyOnUpdate"] == json!(true)
            || schedule["Properties"]["RotateImmediatelyOnUpdate"] == json!("true")
    }

    /// How many replicas the ECS service runs (`DesiredCount`); `None` on Lambda.
    pub fn desired_count(&self) -> Option<u64> {
        if !self.has("Service") {
            return None;
        }
        let service = self.resource("Service");
        Some(
            scalar(&service["Properties"]["DesiredCount"])
                .parse()
                .expect("a count"),
        )
    }
}

/// The one key of an object that is an intrinsic function, and its argument.
fn single(value: &Value) -> Option<(&str, &Value)> {
    let map = value.as_object()?;
    let (key, args) = map.iter().next()?;
    let function = map.len() == 1
        && (key == "Ref" || key.starts_with("Fn::") || (key == "Condition" && args.is_string()));
    function.then_some((key.as_str(), args))
}

/// A string, number or boolean as text (a number or boolean as JSON writes it).
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        other => panic!("not a scalar: {other}"),
    }
}

/// What IAM reads as a list (an `Action`, a `Resource`, a principal): one
/// scalar or a list of them; anything else (absent) is empty.
pub fn as_list(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(scalar).collect(),
        _ => Vec::new(),
    }
}
