//! The gate as every caller runs it (`check`, `plan`, `deploy`, the service): the stack's
//! input, what AWS can safely tell first, then the host's refusals and every policy.

use super::input::{EventInfo, PolicyInput};
use super::{PolicyHost, Report};
use crate::cloud::Aws;
use crate::stack::Stack;

/// Judges a loaded stack as CloudFormation would run it. With `aws`, values CloudFormation
/// would fetch at deploy time are looked up first where that is safe; whatever stays
/// unresolved is doubt, and the policies fail it closed.
pub async fn judge(
    host: &PolicyHost,
    stack: &Stack,
    region: &str,
    event: EventInfo,
    aws: Option<&Aws>,
) -> Report {
    let mut input = PolicyInput::for_stack(stack, region, event);
    if let Some(aws) = aws {
        input.resolved = super::lookup::resolve(aws, &input).await;
    }
    host.evaluate(&input, Some(&stack.template.doc)).await
}
