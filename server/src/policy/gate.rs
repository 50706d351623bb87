//! The gate as every caller runs it (`check`, `plan`, `deploy`, the service): the stack's
//! input, what AWS can safely tell first, then the host's refusals and every policy, on
//! the stack's template and on each local nested template, each with its own file.

use serde_json::{Map, Value, json};
use stackgate_policy_sdk::{Input, Resolved, pointer};

use super::input::{EventInfo, InputOrigin, Lookups, PolicyInput, StackInfo};
use super::{Outcome, PolicyHost, Report, refusal};
use crate::cloud::Aws;
use crate::cloud::nested::{self, Child};
use crate::stack::{Stack, StackFiles};

/// One child is judged for at most this many combinations of the values its parent may
/// pass it (`Fn::If` branches); more is refused rather than judged in part.
pub const MAX_COMBINATIONS: usize = 16;
/// Evaluations of nested templates for one stack, all levels together.
const MAX_CHILD_EVALUATIONS: usize = 64;

/// Judges a loaded stack as CloudFormation would run it. With `aws`, values CloudFormation
/// would fetch at deploy time are looked up first where that is safe; whatever stays
/// unresolved is doubt, and the policies fail it closed.
pub async fn judge(
    host: &PolicyHost,
    stack: &Stack,
    files: &dyn StackFiles,
    region: &str,
    event: EventInfo,
    aws: Option<&Aws>,
    target: Option<&crate::config::targets::TargetConfig>,
) -> Report {
    let children = match nested::load(files, &stack.deployment.template_file_path, &stack.template)
    {
        Ok(c) => c,
        Err(e) => return Report::from_outcomes(vec![refusal::bad_input(e.to_string())]),
    };
    let mut input = PolicyInput::for_stack(stack, region, event).for_target(target);
    input.origin.local_children = children.iter().map(|c| c.resource.clone()).collect();
    if let Some(aws) = aws {
        input.resolved = super::lookup::resolve(aws, &input).await;
    }
    let mut outcomes = host
        .evaluate(&input, Some(&stack.template.doc))
        .await
        .outcomes;
    let mut budget = MAX_CHILD_EVALUATIONS;
    judge_children(host, &input, &children, aws, &mut budget, &mut outcomes).await;
    let mut report = Report::from_outcomes(outcomes);
    report.hidden = crate::policy::input::looked_up_no_echo(&input);
    report
}

async fn judge_children(
    host: &PolicyHost,
    parent: &PolicyInput,
    children: &[Child],
    aws: Option<&Aws>,
    budget: &mut usize,
    out: &mut Vec<Outcome>,
) {
    for child in children {
        let file = child.template.file.clone();
        let combinations = match child_parameters(parent, child) {
            Ok(c) => c,
            Err(e) => {
                out.push(refusal::bad_input(format!("{file}: {e}")));
                continue;
            }
        };
        for parameters in combinations {
            if *budget == 0 {
                out.push(refusal::bad_input(format!(
                    "{file}: more than {MAX_CHILD_EVALUATIONS} nested template evaluations; \
                     refusing rather than judging in part"
                )));
                return;
            }
            *budget -= 1;
            let mut input = PolicyInput {
                template: child.template.doc.value.clone(),
                parameters,
                capabilities: parent.capabilities.clone(),
                stack: StackInfo {
                    name: format!("{}-{}", parent.stack.name, child.resource),
                    region: parent.stack.region.clone(),
                },
                target: parent.target.clone(),
                event: parent.event.clone(),
                resolved: Lookups::default(),
                origin: InputOrigin {
                    file: file.clone(),
                    deployment: true,
                    filled_later: Vec::new(),
                    local_children: child.children.iter().map(|c| c.resource.clone()).collect(),
                    settings: parent.origin.settings.clone(),
                },
            };
            if let Some(aws) = aws {
                input.resolved = super::lookup::resolve(aws, &input).await;
            }
            let report = host.evaluate(&input, Some(&child.template.doc)).await;
            for mut o in report.outcomes {
                for f in &mut o.findings {
                    f.file = Some(file.clone());
                }
                out.push(o);
            }
            Box::pin(judge_children(
                host,
                &input,
                &child.children,
                aws,
                budget,
                out,
            ))
            .await;
        }
    }
}

/// Every combination of values the parent may pass the child. A value known only at
/// deploy time is passed as `{"deploy_time": what, "source": ...}`, so that the child's
/// policies keep its doubt.
fn child_parameters(
    parent: &PolicyInput,
    child: &Child,
) -> Result<Vec<Map<String, Value>>, String> {
    let json = serde_json::to_value(parent).map_err(|e| e.to_string())?;
    let parsed = Input::parse(&json)?;
    let resolver = parsed.resolver();
    let at = pointer::child(
        &pointer::child(&pointer::child("/Resources", &child.resource), "Properties"),
        "Parameters",
    );
    let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
    for (name, expr) in &child.parameters {
        let mut values: Vec<Value> = Vec::new();
        for p in resolver.resolve(expr, &pointer::child(&at, name))? {
            let v = match &p.value {
                Resolved::Str(s) => Value::String(s.clone()),
                Resolved::Absent => continue,
                other => json!({
                    "deploy_time": other.describe(),
                    "source": other.doubt().map(|d| d.source.as_str()),
                }),
            };
            if !values.contains(&v) {
                values.push(v);
            }
        }
        if values.is_empty() {
            continue;
        }
        if combos.len() * values.len() > MAX_COMBINATIONS {
            return Err(format!(
                "the parameters passed to nested stack `{}` may take more than \
                 {MAX_COMBINATIONS} combinations of values; refusing rather than judging in part",
                child.resource
            ));
        }
        combos = combos
            .iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(name.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    Ok(combos)
}
