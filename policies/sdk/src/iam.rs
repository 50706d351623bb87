//! IAM policy documents normalised to statements.
//!
//! IAM is lenient about shape and policies must not be: `Statement` may be one object or a
//! list; `Action`, `NotAction`, `Resource`, `NotResource` may be a string or a list;
//! `Principal` may be `"*"` or a map of kind → string or list; and a whole document may be
//! a JSON string. Every value is resolved through intrinsics, so a field holds every value
//! it may take.

use serde_json::{Map, Value};

use crate::pointer;
use crate::resolve::{Doubt, Possible, Resolved, Resolver};

/// One policy document, borrowed from the template or parsed from a JSON string.
#[derive(Debug)]
pub struct Document<'v> {
    root: Root<'v>,
    /// Where the document sits. For a JSON-string document this is the string itself.
    pub pointer: String,
    /// True when parsed from a JSON string: pointers cannot go inside it.
    pub from_string: bool,
}

#[derive(Debug)]
enum Root<'v> {
    Borrowed(&'v Map<String, Value>),
    Parsed(Map<String, Value>),
}

/// A document that cannot be read before deploy.
#[derive(Clone, Debug, PartialEq)]
pub struct Unreadable {
    pub pointer: String,
    pub reason: String,
    /// Set when CloudFormation fetches it from elsewhere at deploy time.
    pub doubt: Option<Doubt>,
}

/// Loads the document(s) a property may hold (an `Fn::If` may choose between two).
pub fn documents<'v>(
    resolver: &Resolver<'_>,
    value: &'v Value,
    ptr: &str,
) -> Result<(Vec<Document<'v>>, Vec<Unreadable>), String> {
    let mut docs = Vec::new();
    let mut unreadable = Vec::new();
    for p in resolver.resolve(value, ptr)? {
        match p.value {
            Resolved::Object(m) => docs.push(Document {
                root: Root::Borrowed(m),
                pointer: p.pointer,
                from_string: false,
            }),
            Resolved::Str(s) => {
                let parsed: Value = serde_json::from_str(&s).map_err(|e| {
                    format!("policy document at {} is not valid JSON: {e}", p.pointer)
                })?;
                let Value::Object(m) = parsed else {
                    return Err(format!(
                        "policy document at {} is not a JSON object",
                        p.pointer
                    ));
                };
                docs.push(Document {
                    root: Root::Parsed(m),
                    pointer: p.pointer,
                    from_string: true,
                });
            }
            Resolved::Absent => {}
            other if other.is_unresolved() => unreadable.push(Unreadable {
                pointer: p.pointer,
                reason: other.describe(),
                doubt: other.doubt().cloned(),
            }),
            other => {
                return Err(format!(
                    "policy document at {} must be an object or JSON string, not {}",
                    p.pointer,
                    other.describe()
                ));
            }
        }
    }
    Ok((docs, unreadable))
}

/// The effect of a statement, across all values it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
    /// Unresolved or different per `Fn::If` branch: treat as a possible Allow.
    Unknown,
}

/// A field that may hold one value or a list, e.g. `Action`.
#[derive(Clone, Debug)]
pub struct Field<'d> {
    /// Pointer to the field itself, e.g. `.../Statement/0/Action`.
    pub pointer: String,
    /// Every element it may hold.
    pub values: Vec<Possible<'d>>,
}

impl Field<'_> {
    /// True when some element is exactly `*`.
    pub fn has_star(&self) -> bool {
        self.values.iter().any(|p| p.value.as_str() == Some("*"))
    }
}

/// One principal entry: `kind` is `None` for the bare `"Principal": "*"` form.
#[derive(Clone, Debug)]
pub struct PrincipalEntry<'d> {
    pub kind: Option<String>,
    pub value: Possible<'d>,
}

/// One normalised statement.
#[derive(Clone, Debug)]
pub struct Statement<'d> {
    pub pointer: String,
    pub sid: Option<String>,
    pub effect: Effect,
    pub action: Option<Field<'d>>,
    pub not_action: Option<Field<'d>>,
    pub resource: Option<Field<'d>>,
    pub not_resource: Option<Field<'d>>,
    pub principal: Option<Vec<PrincipalEntry<'d>>>,
    pub not_principal: Option<Vec<PrincipalEntry<'d>>>,
    pub has_condition: bool,
}

impl Statement<'_> {
    /// Allow, or possibly Allow. Only these statements can grant too much.
    pub fn may_allow(&self) -> bool {
        self.effect != Effect::Deny
    }

    /// `Principal: "*"` or `{"AWS": "*"}` (alone or in a list).
    pub fn has_public_principal(&self) -> bool {
        self.principal.as_ref().is_some_and(|entries| {
            entries.iter().any(|e| {
                e.value.value.as_str() == Some("*")
                    && e.kind
                        .as_deref()
                        .is_none_or(|k| k.eq_ignore_ascii_case("AWS"))
            })
        })
    }
}

/// Statements of a document, plus the ones that cannot be read before deploy.
#[derive(Debug, Default)]
pub struct Statements<'d> {
    pub statements: Vec<Statement<'d>>,
    pub unreadable: Vec<Unreadable>,
}

impl<'v> Document<'v> {
    fn root(&self) -> &Map<String, Value> {
        match &self.root {
            Root::Borrowed(m) => m,
            Root::Parsed(m) => m,
        }
    }

    /// Pointer for a location inside the document; a JSON-string document has no inside.
    fn inner(&self, base: &str, key: &str) -> String {
        if self.from_string {
            self.pointer.clone()
        } else {
            pointer::child(base, key)
        }
    }

    pub fn statements<'d>(&'d self, resolver: &Resolver<'_>) -> Result<Statements<'d>, String> {
        let root = self.root();
        let stmt_value = root
            .get("Statement")
            .ok_or_else(|| format!("policy document at {} has no Statement", self.pointer))?;
        let stmt_ptr = self.inner(&self.pointer, "Statement");
        let mut out = Statements::default();
        for p in resolver.elements(stmt_value, &stmt_ptr)? {
            let p_ptr = if self.from_string {
                self.pointer.clone()
            } else {
                p.pointer.clone()
            };
            match p.value {
                Resolved::Object(m) => out.statements.push(self.statement(resolver, m, p_ptr)?),
                other if other.is_unresolved() => out.unreadable.push(Unreadable {
                    pointer: p_ptr,
                    reason: other.describe(),
                    doubt: other.doubt().cloned(),
                }),
                other => {
                    return Err(format!(
                        "statement at {p_ptr} must be an object, not {}",
                        other.describe()
                    ));
                }
            }
        }
        Ok(out)
    }

    fn statement<'d>(
        &'d self,
        resolver: &Resolver<'_>,
        m: &'d Map<String, Value>,
        ptr: String,
    ) -> Result<Statement<'d>, String> {
        let field = |key: &str| -> Result<Option<Field<'d>>, String> {
            let Some(v) = m.get(key) else { return Ok(None) };
            let fptr = self.inner(&ptr, key);
            let mut values = resolver.elements(v, &fptr)?;
            if self.from_string {
                for p in &mut values {
                    p.pointer = self.pointer.clone();
                }
            }
            Ok(Some(Field {
                pointer: fptr,
                values,
            }))
        };
        let effect = match m.get("Effect") {
            None => Effect::Unknown,
            Some(v) => {
                let values = resolver.resolve(v, &self.inner(&ptr, "Effect"))?;
                let is = |want: &str| {
                    values.iter().all(|p| {
                        p.value
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(want))
                    })
                };
                if is("Allow") {
                    Effect::Allow
                } else if is("Deny") {
                    Effect::Deny
                } else {
                    Effect::Unknown
                }
            }
        };
        Ok(Statement {
            sid: m.get("Sid").and_then(Value::as_str).map(str::to_string),
            effect,
            action: field("Action")?,
            not_action: field("NotAction")?,
            resource: field("Resource")?,
            not_resource: field("NotResource")?,
            principal: self.principal(resolver, m, &ptr, "Principal")?,
            not_principal: self.principal(resolver, m, &ptr, "NotPrincipal")?,
            has_condition: m.contains_key("Condition"),
            pointer: ptr,
        })
    }

    fn principal<'d>(
        &'d self,
        resolver: &Resolver<'_>,
        m: &'d Map<String, Value>,
        ptr: &str,
        key: &str,
    ) -> Result<Option<Vec<PrincipalEntry<'d>>>, String> {
        let Some(v) = m.get(key) else { return Ok(None) };
        let pptr = self.inner(ptr, key);
        let mut entries = Vec::new();
        for p in resolver.resolve(v, &pptr)? {
            match p.value {
                Resolved::Object(kinds) => {
                    for (kind, value) in kinds {
                        let kptr = self.inner(&p.pointer, kind);
                        for mut e in resolver.elements(value, &kptr)? {
                            if self.from_string {
                                e.pointer = self.pointer.clone();
                            }
                            entries.push(PrincipalEntry {
                                kind: Some(kind.clone()),
                                value: e,
                            });
                        }
                    }
                }
                Resolved::Absent => {}
                _ => {
                    let mut value = p;
                    if self.from_string {
                        value.pointer = self.pointer.clone();
                    }
                    entries.push(PrincipalEntry { kind: None, value });
                }
            }
        }
        Ok(Some(entries))
    }
}

/// Case-insensitive glob match as IAM does it: `*` any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Splits `service:action` (case preserved). `None` when there is no colon.
pub fn split_action(action: &str) -> Option<(&str, &str)> {
    action.split_once(':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Input;
    use serde_json::json;

    fn with_doc(doc: Value, check: impl Fn(&Statements<'_>, &[Unreadable])) {
        let input = json!({"template": {"Resources": {"P": {"Type": "AWS::IAM::Policy",
            "Properties": {"PolicyDocument": doc}}}}, "stack": {"region": "us-east-1"}});
        let parsed = Input::parse(&input).unwrap();
        let r = parsed.resolver();
        let res = parsed.template.resource("P").unwrap();
        let (v, p) = res.property("PolicyDocument").unwrap();
        let (docs, unreadable) = documents(&r, v, &p).unwrap();
        if docs.is_empty() {
            check(&Statements::default(), &unreadable);
        }
        for d in &docs {
            check(&d.statements(&r).unwrap(), &unreadable);
        }
    }

    fn strs(f: &Option<Field<'_>>) -> Vec<String> {
        f.as_ref()
            .map(|f| {
                f.values
                    .iter()
                    .filter_map(|p| p.value.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn single_statement_object_and_string_fields() {
        with_doc(
            json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}}),
            |s, _| {
                assert_eq!(s.statements.len(), 1);
                let st = &s.statements[0];
                assert_eq!(st.effect, Effect::Allow);
                assert_eq!(strs(&st.action), vec!["s3:GetObject"]);
                assert!(st.resource.as_ref().unwrap().has_star());
                assert_eq!(
                    st.pointer,
                    "/Resources/P/Properties/PolicyDocument/Statement"
                );
                assert_eq!(
                    st.action.as_ref().unwrap().values[0].pointer,
                    "/Resources/P/Properties/PolicyDocument/Statement/Action"
                );
            },
        );
    }

    #[test]
    fn statement_lists_and_action_lists() {
        with_doc(
            json!({"Statement": [
                {"Effect": "Deny", "Action": ["s3:*"], "Resource": ["*"]},
                {"Effect": "Allow", "NotAction": ["iam:*", "sts:*"], "NotResource": "arn:aws:s3:::b",
                 "Condition": {"Bool": {"aws:SecureTransport": "true"}}}
            ]}),
            |s, _| {
                assert_eq!(s.statements.len(), 2);
                assert!(!s.statements[0].may_allow());
                let st = &s.statements[1];
                assert!(st.may_allow());
                assert!(st.has_condition);
                assert_eq!(strs(&st.not_action), vec!["iam:*", "sts:*"]);
                assert_eq!(
                    st.not_action.as_ref().unwrap().values[1].pointer,
                    "/Resources/P/Properties/PolicyDocument/Statement/1/NotAction/1"
                );
            },
        );
    }

    #[test]
    fn json_string_document() {
        let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        with_doc(json!(doc), |s, _| {
            let st = &s.statements[0];
            assert_eq!(strs(&st.action), vec!["*"]);
            assert_eq!(st.pointer, "/Resources/P/Properties/PolicyDocument");
            assert_eq!(
                st.action.as_ref().unwrap().values[0].pointer,
                "/Resources/P/Properties/PolicyDocument"
            );
        });
    }

    #[test]
    fn principals() {
        with_doc(
            json!({"Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::1:root", "*"]}, "Action": "sts:AssumeRole"},
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ]}),
            |s, _| {
                assert!(s.statements[0].has_public_principal());
                assert!(s.statements[1].has_public_principal());
                assert!(!s.statements[2].has_public_principal());
            },
        );
    }

    #[test]
    fn unresolved_documents_and_effects() {
        with_doc(json!({"Fn::ImportValue": "doc"}), |s, u| {
            assert!(s.statements.is_empty());
            assert_eq!(u.len(), 1);
        });
        with_doc(
            json!({"Statement": [{"Effect": {"Fn::If": ["C", "Allow", "Deny"]}, "Action": "*", "Resource": "*"}]}),
            |s, _| assert_eq!(s.statements[0].effect, Effect::Unknown),
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("s3:Put*", "s3:PutObject"));
        assert!(glob_match("S3:put*", "s3:PutObject"));
        assert!(glob_match("ec2:*Instance*", "ec2:RunInstances"));
        assert!(glob_match("ec2:Describe?nstances", "ec2:DescribeInstances"));
        assert!(!glob_match("s3:Put*", "s3:GetObject"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a", ""));
        assert!(glob_match("*a*b", "xxaxxb"));
        assert!(!glob_match("*a*b", "xxaxxbc"));
    }
}
