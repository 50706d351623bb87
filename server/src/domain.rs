//! domain: the typed names every stage shares. Each stored name has `as_str` and `FromStr`
//! for the SQL edge; an unknown value is an error, never a default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's id in the queue.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored name that is none of its type's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

/// An enum of stored names: `as_str`, `FromStr` (unknown names refused), `Display`.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName { what: $what, value: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // By hand: the derive does not see the serde names through the macro's tokens.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text),+]))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

names!(
    /// What a job does.
    Kind, "job kind" {
        /// Read a commit, find the stacks that changed, and enqueue their deploys.
        Sync = "sync",
        /// Policy, then plan and deploy (or remove) one stack.
        Deploy = "deploy",
        /// A pull request's dry run: policy and plans, never executed.
        Preview = "preview",
        /// Ask CloudFormation whether a deployed stack drifted, and judge its live state.
        Drift = "drift",
    }
);

names!(
    /// Where a job is in its life.
    JobState, "job state" {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Error = "error",
        Superseded = "superseded",
        /// Planned and passed, its change set created and kept until someone approves it.
        Held = "held",
        /// A held change set that was rejected, or whose approval expired: deleted.
        Rejected = "rejected",
    }
);

names!(
    /// Where a running deploy stands; written before each step AWS cannot undo.
    Phase, "job phase" {
        Checkout = "checkout",
        Policy = "policy",
        Planning = "planning",
        /// The change set waits for approval (`approval: required`); nothing executed.
        Held = "held",
        Executing = "executing",
        Removing = "removing",
        Done = "done",
    }
);

names!(
    /// What asked for a job.
    Trigger, "trigger" {
        Push = "push",
        Poll = "poll",
        PullRequest = "pull_request",
        Manual = "manual",
        /// The drift scheduler's periodic check.
        Schedule = "schedule",
        /// A drift check found a `drift: revert` stack drifted: redeploy what is deployed.
        Drift = "drift",
    }
);

names!(
    /// Who must agree before a passing change set executes. Ordered: a stack may ask for a
    /// stricter one than its target, never a looser one.
    Approval, "approval" {
        /// Executes as soon as the gate passes.
        None = "none",
        /// Held only when the change widens access (see `review`).
        OnBroadening = "on-broadening",
        /// Every change is held for an operator.
        Required = "required",
    }
);

impl Approval {
    fn rank(self) -> u8 {
        match self {
            Approval::None => 0,
            Approval::OnBroadening => 1,
            Approval::Required => 2,
        }
    }

    /// The stricter of two.
    pub fn max(self, other: Approval) -> Approval {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

names!(
    /// What became of a held change set.
    Decision, "decision" {
        /// An operator approved it: it executes, if the stack has not changed since.
        Approved = "approved",
        /// An operator rejected it: it is deleted.
        Rejected = "rejected",
        /// Nobody decided in time: it is deleted.
        Expired = "expired",
    }
);

names!(
    /// What a drift check found.
    DriftState, "drift state" {
        /// Every checked resource is as the template says.
        InSync = "in_sync",
        /// At least one resource was changed or deleted outside stackgate.
        Drifted = "drifted",
    }
);

names!(
    /// A commit status's state, as GitHub names it.
    StatusState, "status state" {
        Pending = "pending",
        Success = "success",
        Failure = "failure",
        Error = "error",
    }
);

names!(
    /// A check run's state as stackgate writes it: running, or done with GitHub's conclusion.
    CheckState, "check run state" {
        InProgress = "in_progress",
        Success = "success",
        Failure = "failure",
        /// The job ended without a verdict of its own (superseded by a newer head).
        Cancelled = "cancelled",
    }
);

impl CheckState {
    /// GitHub's conclusion, once the check run is done.
    pub fn conclusion(self) -> Option<&'static str> {
        (self != CheckState::InProgress).then(|| self.as_str())
    }
}

names!(
    /// How loud an annotation is, as GitHub names it.
    AnnotationLevel, "annotation level" {
        Notice = "notice",
        Warning = "warning",
        Failure = "failure",
    }
);

/// A finding at a file and line of the repository, as a check run shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// Repository-relative, e.g. `stacks/web/template.yaml`.
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub annotation_level: AnnotationLevel,
    pub title: String,
    pub message: String,
}

/// What stackgate's check runs carry as `external_id`: the pull request they preview, and
/// whether it comes from a fork, so that GitHub's "Re-run" asks for the same preview again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckRef {
    pub pr: u64,
    pub fork: bool,
}

impl fmt::Display for CheckRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pr/{}", self.pr)?;
        if self.fork {
            f.write_str("/fork")?;
        }
        Ok(())
    }
}

impl FromStr for CheckRef {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        let bad = || UnknownName {
            what: "check run reference",
            value: s.chars().take(40).collect(),
        };
        let rest = s.strip_prefix("pr/").ok_or_else(bad)?;
        let (number, fork) = match rest.strip_suffix("/fork") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if number.is_empty() || number.len() > 19 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let pr = number.parse().map_err(|_| bad())?;
        Ok(CheckRef { pr, fork })
    }
}

/// Jobs in one lane run one at a time, and a newer one supersedes the queued ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Lane(pub String);

impl Lane {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A commit status context: every `stackgate/…` name is built here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// `stackgate/policy`: the gate's verdict on a commit.
    Policy,
    /// `stackgate/<stack>`: one stack folder's deploy.
    Stack(String),
    /// `stackgate/plan/<stack>`: one stack folder's plan in a pull request.
    Plan(String),
    /// `stackgate/drift/<stack>`: whether the deployed commit is still the stack's truth.
    Drift(String),
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Policy => f.write_str("stackgate/policy"),
            Context::Stack(s) => write!(f, "stackgate/{s}"),
            Context::Plan(s) => write!(f, "stackgate/plan/{s}"),
            Context::Drift(s) => write!(f, "stackgate/drift/{s}"),
        }
    }
}

/// A stack as AWS knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StackIdentity {
    pub account: String,
    pub region: String,
    pub name: String,
}

impl fmt::Display for StackIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}/{})", self.name, self.account, self.region)
    }
}

/// A commit's short form, as statuses and pages show it.
pub fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_kind_is_refused_not_read_as_sync() {
        assert_eq!("deploy".parse::<Kind>(), Ok(Kind::Deploy));
        let e = "redeploy".parse::<Kind>().unwrap_err();
        assert_eq!(e.to_string(), "unknown job kind `redeploy`");
        assert!("".parse::<Kind>().is_err());
    }

    #[test]
    fn names_read_back_what_they_write() {
        for t in [
            Trigger::Push,
            Trigger::Poll,
            Trigger::PullRequest,
            Trigger::Manual,
            Trigger::Schedule,
            Trigger::Drift,
        ] {
            assert_eq!(t.as_str().parse::<Trigger>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!("Succeeded".parse::<JobState>().is_err());
        assert!("waiting".parse::<Phase>().is_err());
        assert!("ok".parse::<StatusState>().is_err());
    }

    #[test]
    fn a_stricter_approval_wins_whichever_side_asks() {
        use Approval::*;
        assert_eq!(None.max(Required), Required);
        assert_eq!(Required.max(None), Required);
        assert_eq!(OnBroadening.max(None), OnBroadening);
        assert_eq!(OnBroadening.max(Required), Required);
        assert_eq!("on-broadening".parse::<Approval>(), Ok(OnBroadening));
        assert!("always".parse::<Approval>().is_err());
    }

    #[test]
    fn a_check_ref_reads_back_what_it_writes_and_nothing_else() {
        for r in [
            CheckRef { pr: 7, fork: false },
            CheckRef { pr: 12, fork: true },
        ] {
            assert_eq!(r.to_string().parse::<CheckRef>(), Ok(r));
        }
        assert_eq!(CheckRef { pr: 12, fork: true }.to_string(), "pr/12/fork");
        for bad in [
            "",
            "pr/",
            "pr/x",
            "pr/7/",
            "pr/+7",
            "7",
            "pr/7/fork/fork",
            "pr/99999999999999999999",
        ] {
            assert!(bad.parse::<CheckRef>().is_err(), "{bad}");
        }
    }

    /// Whether `T: Default`, asked at compile time: the inherent const, where its bound
    /// holds, is chosen over the trait's.
    struct Probe<T>(std::marker::PhantomData<T>);
    trait NoDefault {
        const DEFAULT: bool = false;
    }
    impl<T> NoDefault for Probe<T> {}
    impl<T: Default> Probe<T> {
        #[allow(dead_code)]
        const DEFAULT: bool = true;
    }

    #[test]
    fn a_job_names_its_kind_and_trigger() {
        // A default would make a forgotten field a sync, or a push.
        let defaults = [
            ("Kind", Probe::<Kind>::DEFAULT),
            ("Trigger", Probe::<Trigger>::DEFAULT),
            ("NewJob", Probe::<crate::queue::NewJob>::DEFAULT),
            // The probe does see a Default.
            ("JobId", Probe::<JobId>::DEFAULT),
        ];
        assert_eq!(
            defaults,
            [
                ("Kind", false),
                ("Trigger", false),
                ("NewJob", false),
                ("JobId", true)
            ]
        );
    }

    #[test]
    fn contexts_are_the_stackgate_names() {
        assert_eq!(Context::Policy.to_string(), "stackgate/policy");
        assert_eq!(Context::Stack("web".into()).to_string(), "stackgate/web");
        assert_eq!(
            Context::Plan("web".into()).to_string(),
            "stackgate/plan/web"
        );
        assert_eq!(
            Context::Drift("web".into()).to_string(),
            "stackgate/drift/web"
        );
    }
}

/// What someone may do in stackgate, in order: each role may do what the one before it may.
/// `viewer` reads (runs, stacks, drift); `operator` also redeploys and checks drift; `admin`
/// is an operator on every repository it is given, and what comes later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
