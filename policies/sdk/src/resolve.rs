//! CloudFormation intrinsics resolved to the set of values they may take.
//!
//! A policy cannot run the deploy, so a property is not one value but a set of
//! possibilities: `Fn::If` yields both branches (a rule must hold on each), a parameter
//! yields its deployment value or Default, and what only AWS knows at deploy time
//! (`AWS::AccountId`, resource attributes) is [`Resolved::Unknown`]. What CloudFormation
//! fetches from elsewhere at deploy time (SSM parameters, dynamic references, imports) is
//! [`Resolved::Doubt`], unless the host looked it up first (input `resolved`): doubt fails
//! closed. Strings built by `Fn::Sub` / `Fn::Join` around unknown parts stay
//! [`Resolved::Partial`], so a rule can still see their literal text.

use serde_json::{Map, Value};

use crate::cidr;
use crate::pointer;
use crate::template::{Stack, Template};

/// Beyond this many possibilities for one value the resolver gives up with `Unknown`;
/// it stops `Fn::Join` over many `Fn::If`s from blowing up.
pub const MAX_POSSIBILITIES: usize = 64;

/// serde_json stops at 128 levels; intrinsics nest far less in practice.
const MAX_DEPTH: usize = 64;

/// Where CloudFormation fetches a value from at deploy time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A parameter of type `AWS::SSM::Parameter::Value<...>`.
    SsmParameter,
    /// `{{resolve:ssm|ssm-secure|secretsmanager:...}}`.
    DynamicReference,
    /// `Fn::ImportValue`: another stack's export.
    Import,
}

impl Source {
    /// The name used in the input (`"source"` of a parameter known only at deploy time).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::SsmParameter => "ssm-parameter",
            Source::DynamicReference => "dynamic-reference",
            Source::Import => "import",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Source::SsmParameter,
            Source::DynamicReference,
            Source::Import,
        ]
        .into_iter()
        .find(|src| src.as_str() == s)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Source::SsmParameter => "SSM Parameter Store",
            Source::DynamicReference => "a dynamic reference",
            Source::Import => "another stack's export",
        }
    }
}

/// A value CloudFormation resolves from elsewhere at deploy time: the policies cannot see
/// it, so a rule that depends on it fails closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doubt {
    pub source: Source,
    /// What it is, as written: `{{resolve:ssm:/net/cidr}}`, `parameter `AdminCidr``.
    pub what: String,
}

/// One piece of a partially known string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// Not known before deploy; the string says what it is, e.g. `AWS::AccountId`.
    Unknown(String),
    /// Fetched from elsewhere at deploy time.
    Doubt(Doubt),
}

/// One possible value of a template expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolved<'v> {
    /// `AWS::NoValue` (or JSON null): the property is absent.
    Absent,
    /// A known scalar. Numbers and booleans are rendered as CloudFormation does.
    Str(String),
    /// A string with literal text and at least one unknown part.
    Partial(Vec<Part>),
    /// Only known at deploy time; the string says why.
    Unknown(String),
    /// Fetched from elsewhere at deploy time (see [`Doubt`]).
    Doubt(Doubt),
    /// `Ref` to a resource (`attribute: None`) or `Fn::GetAtt`: a reference, not a literal.
    Resource {
        id: String,
        attribute: Option<String>,
    },
    /// A list produced by an intrinsic or a list parameter, elements already resolved.
    List(Vec<Resolved<'v>>),
    /// A literal JSON array from the template; use [`Resolver::elements`] to walk it.
    Array(&'v [Value]),
    /// A literal JSON object from the template (not an intrinsic).
    Object(&'v Map<String, Value>),
}

impl Resolved<'_> {
    /// The string, when fully known.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Resolved::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_absent(&self) -> bool {
        matches!(self, Resolved::Absent)
    }

    /// True for values that a rule cannot see through: `Unknown`, `Doubt` and `Partial`.
    pub fn is_unresolved(&self) -> bool {
        matches!(
            self,
            Resolved::Unknown(_) | Resolved::Doubt(_) | Resolved::Partial(_)
        )
    }

    /// True for values known only at deploy time, with no literal text: `Unknown`, `Doubt`.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Resolved::Unknown(_) | Resolved::Doubt(_))
    }

    /// The first part fetched from elsewhere at deploy time, if any.
    pub fn doubt(&self) -> Option<&Doubt> {
        match self {
            Resolved::Doubt(d) => Some(d),
            Resolved::Partial(parts) => parts.iter().find_map(|p| match p {
                Part::Doubt(d) => Some(d),
                _ => None,
            }),
            Resolved::List(items) => items.iter().find_map(Resolved::doubt),
            _ => None,
        }
    }

    /// A glob pattern covering every value this may take: unknown parts become `*`.
    /// `None` for references, lists and objects.
    pub fn glob_pattern(&self) -> Option<String> {
        match self {
            Resolved::Str(s) => Some(s.clone()),
            Resolved::Partial(parts) => Some(
                parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => t.as_str(),
                        Part::Unknown(_) | Part::Doubt(_) => "*",
                    })
                    .collect(),
            ),
            Resolved::Unknown(_) | Resolved::Doubt(_) => Some("*".to_string()),
            _ => None,
        }
    }

    /// A short human description for messages.
    pub fn describe(&self) -> String {
        match self {
            Resolved::Absent => "AWS::NoValue".to_string(),
            Resolved::Str(s) => format!("`{s}`"),
            Resolved::Partial(parts) => {
                let text: String = parts
                    .iter()
                    .map(|p| match p {
                        Part::Text(t) => t.clone(),
                        Part::Unknown(why) => format!("${{{why}}}"),
                        Part::Doubt(d) => d.what.clone(),
                    })
                    .collect();
                format!("`{text}` (partly known only at deploy time)")
            }
            Resolved::Unknown(why) => format!("a value known only at deploy time ({why})"),
            Resolved::Doubt(d) => format!(
                "{}, which CloudFormation fetches from {} at deploy time",
                d.what,
                d.source.describe()
            ),
            Resolved::Resource {
                id,
                attribute: None,
            } => format!("a Ref to resource `{id}`"),
            Resolved::Resource {
                id,
                attribute: Some(a),
            } => format!("`{id}.{a}`"),
            Resolved::List(_) | Resolved::Array(_) => "a list".to_string(),
            Resolved::Object(_) => "an object".to_string(),
        }
    }

    fn to_parts(&self) -> Vec<Part> {
        match self {
            Resolved::Absent => Vec::new(),
            Resolved::Str(s) => vec![Part::Text(s.clone())],
            Resolved::Partial(parts) => parts.clone(),
            Resolved::Unknown(why) => vec![Part::Unknown(why.clone())],
            Resolved::Doubt(d) => vec![Part::Doubt(d.clone())],
            Resolved::Resource { id, attribute } => vec![Part::Unknown(match attribute {
                Some(a) => format!("{id}.{a}"),
                None => id.clone(),
            })],
            Resolved::List(_) | Resolved::Array(_) | Resolved::Object(_) => {
                vec![Part::Unknown(
                    "a list or object where a string belongs".to_string(),
                )]
            }
        }
    }
}

/// Builds a value from pieces: `Str` when all known, `Partial` when some literal text
/// survives, `Unknown` when none does.
pub fn from_parts(parts: Vec<Part>) -> Resolved<'static> {
    let mut merged: Vec<Part> = Vec::with_capacity(parts.len());
    for part in parts {
        match (merged.last_mut(), part) {
            (Some(Part::Text(prev)), Part::Text(t)) => prev.push_str(&t),
            (_, Part::Text(t)) if t.is_empty() => {}
            (_, p) => merged.push(p),
        }
    }
    let unknown: Vec<&str> = merged
        .iter()
        .filter_map(|p| match p {
            Part::Unknown(why) => Some(why.as_str()),
            Part::Doubt(d) => Some(d.what.as_str()),
            Part::Text(_) => None,
        })
        .collect();
    if unknown.is_empty() {
        return Resolved::Str(match merged.pop() {
            Some(Part::Text(t)) => t,
            _ => String::new(),
        });
    }
    if unknown.len() == merged.len() {
        let doubt = merged.iter().find_map(|p| match p {
            Part::Doubt(d) => Some(d.clone()),
            _ => None,
        });
        return match doubt {
            Some(d) => Resolved::Doubt(d),
            None => Resolved::Unknown(unknown.join(", ")),
        };
    }
    Resolved::Partial(merged)
}

/// Values the host looked up before the policies ran (input `resolved`): plain SSM
/// parameters by name (`name` or `name:version`) and exports by name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Lookups<'a> {
    pub ssm: Option<&'a Map<String, Value>>,
    pub imports: Option<&'a Map<String, Value>>,
}

impl Lookups<'_> {
    fn ssm(&self, name: &str) -> Option<&str> {
        self.ssm?.get(name)?.as_str()
    }

    fn import(&self, name: &str) -> Option<&str> {
        self.imports?.get(name)?.as_str()
    }
}

/// A possible value and the template location it came from (an `Fn::If` branch points
/// into the branch, so a finding lands on the text to change).
#[derive(Clone, Debug, PartialEq)]
pub struct Possible<'v> {
    pub value: Resolved<'v>,
    pub pointer: String,
}

/// Resolves intrinsics against one template, its parameters and the stack.
#[derive(Clone, Copy, Debug)]
pub struct Resolver<'a> {
    template: Template<'a>,
    parameters: Option<&'a Map<String, Value>>,
    stack: Stack<'a>,
    lookups: Lookups<'a>,
}

impl<'a> Resolver<'a> {
    pub fn new(
        template: Template<'a>,
        parameters: Option<&'a Map<String, Value>>,
        stack: Stack<'a>,
    ) -> Self {
        Resolver {
            template,
            parameters,
            stack,
            lookups: Lookups::default(),
        }
    }

    /// The same resolver, using what the host looked up for SSM parameters and imports.
    pub fn with_lookups(self, lookups: Lookups<'a>) -> Self {
        Resolver { lookups, ..self }
    }

    /// A literal template string; a dynamic reference (`{{resolve:ssm:...}}`) is doubt,
    /// unless it is a plain SSM parameter the host looked up.
    fn literal(&self, s: &str) -> Resolved<'static> {
        if !s.contains("{{resolve:") {
            return Resolved::Str(s.to_string());
        }
        from_parts(self.literal_parts(s))
    }

    fn literal_parts(&self, s: &str) -> Vec<Part> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{resolve:") {
            parts.push(Part::Text(rest[..start].to_string()));
            let tail = &rest[start..];
            let end = tail.find("}}").map_or(tail.len(), |e| e + 2);
            let reference = &tail[..end];
            let looked_up = reference
                .strip_prefix("{{resolve:ssm:")
                .and_then(|r| r.strip_suffix("}}"))
                .and_then(|name| self.lookups.ssm(name));
            parts.push(match looked_up {
                Some(v) => Part::Text(v.to_string()),
                None => Part::Doubt(Doubt {
                    source: Source::DynamicReference,
                    what: format!("`{reference}`"),
                }),
            });
            rest = &tail[end..];
        }
        parts.push(Part::Text(rest.to_string()));
        parts
    }

    /// A value from the `Mappings` section: literals only, but possibly a list.
    fn mapping_value(&self, v: &Value) -> Resolved<'static> {
        match v {
            Value::String(s) => self.literal(s),
            Value::Array(items) => Resolved::List(items.iter().map(scalar).collect()),
            Value::Object(_) => Resolved::Unknown("a mapping entry that is an object".to_string()),
            other => scalar(other),
        }
    }

    pub fn template(&self) -> Template<'a> {
        self.template
    }

    /// Every value `value` (found at `ptr`) may take. `Err` only for intrinsics that are
    /// malformed, which CloudFormation would reject too.
    pub fn resolve<'v>(&self, value: &'v Value, ptr: &str) -> Result<Vec<Possible<'v>>, String> {
        self.walk(value, ptr, 0)
    }

    /// Every value property `key` of the object `props` (at `ptr`) may take, without
    /// pointers; `[Absent]` when the property is missing.
    pub fn property_values<'v>(
        &self,
        props: &'v Map<String, Value>,
        ptr: &str,
        key: &str,
    ) -> Result<Vec<Resolved<'v>>, String> {
        match props.get(key) {
            Some(v) => self.values(v, &pointer::child(ptr, key), 0),
            None => Ok(vec![Resolved::Absent]),
        }
    }

    /// Every element a list-valued property may hold, across all `Fn::If` branches, with
    /// `AWS::NoValue` elements dropped. A scalar where a list belongs counts as one
    /// element (IAM allows `"Action": "s3:GetObject"`).
    pub fn elements<'v>(&self, value: &'v Value, ptr: &str) -> Result<Vec<Possible<'v>>, String> {
        let mut out = Vec::new();
        for p in self.resolve(value, ptr)? {
            match p.value {
                Resolved::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let item_ptr = pointer::index(&p.pointer, i);
                        for q in self.walk(item, &item_ptr, 1)? {
                            if !q.value.is_absent() {
                                out.push(q);
                            }
                        }
                    }
                }
                Resolved::List(items) => {
                    for item in items {
                        if !item.is_absent() {
                            out.push(Possible {
                                value: item,
                                pointer: p.pointer.clone(),
                            });
                        }
                    }
                }
                Resolved::Absent => {}
                _ => out.push(p),
            }
        }
        Ok(out)
    }

    fn walk<'v>(
        &self,
        value: &'v Value,
        ptr: &str,
        depth: usize,
    ) -> Result<Vec<Possible<'v>>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("intrinsic functions nest too deeply at {ptr}"));
        }
        let resolved = match value {
            Value::Null => Resolved::Absent,
            Value::Bool(b) => Resolved::Str(b.to_string()),
            Value::Number(n) => Resolved::Str(n.to_string()),
            Value::String(s) => self.literal(s),
            Value::Array(a) => Resolved::Array(a.as_slice()),
            Value::Object(m) => match intrinsic(m) {
                Some((name, arg)) => return self.intrinsic(name, arg, ptr, depth),
                None => Resolved::Object(m),
            },
        };
        Ok(vec![Possible {
            value: resolved,
            pointer: ptr.to_string(),
        }])
    }

    /// The possible values without their pointers.
    fn values<'v>(
        &self,
        value: &'v Value,
        ptr: &str,
        depth: usize,
    ) -> Result<Vec<Resolved<'v>>, String> {
        Ok(self
            .walk(value, ptr, depth)?
            .into_iter()
            .map(|p| p.value)
            .collect())
    }

    fn intrinsic<'v>(
        &self,
        name: &str,
        arg: &'v Value,
        ptr: &str,
        depth: usize,
    ) -> Result<Vec<Possible<'v>>, String> {
        let fn_ptr = pointer::child(ptr, name);
        let depth = depth + 1;
        let values: Vec<Resolved<'v>> = match name {
            "Ref" => {
                let target = arg
                    .as_str()
                    .ok_or_else(|| format!("Ref at {ptr} must name a parameter or resource"))?;
                vec![self.reference(target)]
            }
            "Fn::If" => {
                let args = array_of(arg, 3, name, ptr)?;
                let mut out = self.walk(&args[1], &pointer::index(&fn_ptr, 1), depth)?;
                out.extend(self.walk(&args[2], &pointer::index(&fn_ptr, 2), depth)?);
                return Ok(dedup_possible(out));
            }
            "Fn::Select" => return self.select(arg, ptr, &fn_ptr, depth),
            "Fn::GetAtt" => vec![self.get_att(arg, ptr, &fn_ptr, depth)?],
            "Fn::Sub" => self.sub(arg, ptr, &fn_ptr, depth)?,
            "Fn::Join" => self.join(arg, ptr, &fn_ptr, depth)?,
            "Fn::Split" => self.split(arg, ptr, &fn_ptr, depth)?,
            "Fn::FindInMap" => self.find_in_map(arg, ptr, &fn_ptr, depth)?,
            "Fn::Cidr" => self.cidr(arg, ptr, &fn_ptr, depth)?,
            "Fn::ImportValue" => {
                let names = self.values(arg, &fn_ptr, depth)?;
                names
                    .iter()
                    .map(|n| match n.as_str().and_then(|n| self.lookups.import(n)) {
                        Some(v) => Resolved::Str(v.to_string()),
                        None => Resolved::Doubt(Doubt {
                            source: Source::Import,
                            what: format!("`Fn::ImportValue` of {}", n.describe()),
                        }),
                    })
                    .collect()
            }
            other => vec![Resolved::Unknown(format!(
                "{other} is not evaluated by policies"
            ))],
        };
        Ok(values
            .into_iter()
            .map(|value| Possible {
                value,
                pointer: ptr.to_string(),
            })
            .collect())
    }

    /// `Ref` to a pseudo parameter, parameter or resource.
    pub fn reference(&self, name: &str) -> Resolved<'static> {
        let region = self.stack.region;
        match name {
            "AWS::NoValue" => Resolved::Absent,
            "AWS::Region" => region.map_or_else(
                || Resolved::Unknown("AWS::Region (the input names no region)".to_string()),
                |r| Resolved::Str(r.to_string()),
            ),
            "AWS::StackName" => self.stack.name.map_or_else(
                || Resolved::Unknown("AWS::StackName (the input names no stack)".to_string()),
                |n| Resolved::Str(n.to_string()),
            ),
            "AWS::Partition" => Resolved::Str(partition(region).to_string()),
            "AWS::URLSuffix" => Resolved::Str(url_suffix(region).to_string()),
            _ if name.starts_with("AWS::") => Resolved::Unknown(name.to_string()),
            _ if self.template.parameter(name).is_some()
                || self.parameters.is_some_and(|p| p.contains_key(name)) =>
            {
                self.parameter(name)
            }
            _ if self.template.resource(name).is_some() => Resolved::Resource {
                id: name.to_string(),
                attribute: None,
            },
            _ => Resolved::Unknown(format!(
                "Ref to `{name}`, which is neither a parameter nor a resource"
            )),
        }
    }

    /// A parameter's value: the deployment value, else the template Default.
    fn parameter(&self, name: &str) -> Resolved<'static> {
        let decl = self.template.parameter(name);
        let kind = decl
            .and_then(|d| d.get("Type"))
            .and_then(Value::as_str)
            .unwrap_or("String");
        let given = self
            .parameters
            .and_then(|p| p.get(name))
            .filter(|v| !v.is_null());
        // A value the host knows only as an expression of a parent stack's: unknown, or
        // doubt when the parent fetches it from elsewhere.
        if let Some(Value::Object(o)) = given
            && let Some(what) = o.get("deploy_time").and_then(Value::as_str)
        {
            let what = format!("parameter `{name}` ({what})");
            return match o
                .get("source")
                .and_then(Value::as_str)
                .and_then(Source::parse)
            {
                Some(source) => Resolved::Doubt(Doubt { source, what }),
                None => Resolved::Unknown(what),
            };
        }
        let value = given.or_else(|| decl.and_then(|d| d.get("Default")));
        if let Some(inner) = kind
            .strip_prefix("AWS::SSM::Parameter::Value<")
            .and_then(|k| k.strip_suffix('>'))
        {
            // The value is the SSM parameter's name; CloudFormation reads the parameter.
            let ssm_name = value.and_then(Value::as_str);
            let Some(found) = ssm_name.and_then(|n| self.lookups.ssm(n)) else {
                return Resolved::Doubt(Doubt {
                    source: Source::SsmParameter,
                    what: format!(
                        "parameter `{name}` (SSM parameter {})",
                        ssm_name.map_or_else(|| "with no name".to_string(), |n| format!("`{n}`"))
                    ),
                });
            };
            return if inner == "CommaDelimitedList" || inner.starts_with("List<") {
                Resolved::List(
                    found
                        .split(',')
                        .filter(|_| !found.is_empty())
                        .map(|item| Resolved::Str(item.trim().to_string()))
                        .collect(),
                )
            } else {
                Resolved::Str(found.to_string())
            };
        }
        let Some(value) = value else {
            return Resolved::Unknown(format!("parameter `{name}` has no value and no Default"));
        };
        let is_list = kind == "CommaDelimitedList" || kind.starts_with("List<");
        match value {
            Value::String(s) if is_list => Resolved::List(
                s.split(',')
                    .filter(|_| !s.is_empty())
                    .map(|item| Resolved::Str(item.trim().to_string()))
                    .collect(),
            ),
            Value::Array(items) => {
                let items: Vec<Resolved<'static>> = items.iter().map(scalar).collect();
                if is_list {
                    Resolved::List(items)
                } else {
                    from_parts(join_parts(
                        items.iter().map(|i| i.to_parts()).collect(),
                        ",",
                    ))
                }
            }
            other => scalar(other),
        }
    }

    fn get_att(
        &self,
        arg: &Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Resolved<'static>, String> {
        let malformed = || {
            format!("Fn::GetAtt at {ptr} must be [resource, attribute] or \"resource.attribute\"")
        };
        let (id, attribute) = match arg {
            Value::String(s) => {
                let (id, attr) = s.split_once('.').ok_or_else(malformed)?;
                (id.to_string(), attr.to_string())
            }
            Value::Array(a) if a.len() == 2 => {
                let id = a[0].as_str().ok_or_else(malformed)?.to_string();
                let attr = match self
                    .values(&a[1], &pointer::index(fn_ptr, 1), depth)?
                    .as_slice()
                {
                    [Resolved::Str(s)] => s.clone(),
                    _ => "?".to_string(),
                };
                (id, attr)
            }
            _ => return Err(malformed()),
        };
        Ok(Resolved::Resource {
            id,
            attribute: Some(attribute),
        })
    }

    fn sub<'v>(
        &self,
        arg: &'v Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Vec<Resolved<'v>>, String> {
        let malformed = || format!("Fn::Sub at {ptr} must be a string or [string, {{variables}}]");
        let (text, vars) = match arg {
            Value::String(s) => (s.as_str(), None),
            Value::Array(a) if a.len() == 2 => (
                a[0].as_str().ok_or_else(malformed)?,
                Some(a[1].as_object().ok_or_else(malformed)?),
            ),
            _ => return Err(malformed()),
        };
        let vars_ptr = pointer::index(fn_ptr, 1);
        let pieces = parse_sub(text);
        let mut alternatives: Vec<Vec<Vec<Part>>> = Vec::with_capacity(pieces.len());
        for piece in &pieces {
            match piece {
                SubPiece::Text(t) => alternatives.push(vec![self.literal_parts(t)]),
                SubPiece::Var(name) => {
                    let values = match vars.and_then(|m| m.get(name.as_str())) {
                        Some(v) => self.values(v, &pointer::child(&vars_ptr, name), depth)?,
                        None => vec![match name.split_once('.') {
                            Some((id, attr)) => Resolved::Resource {
                                id: id.to_string(),
                                attribute: Some(attr.to_string()),
                            },
                            None => self.reference(name),
                        }],
                    };
                    // `!Sub "${Sg}"` is just a reference; keep it one.
                    if pieces.len() == 1 {
                        return Ok(values);
                    }
                    alternatives.push(values.iter().map(Resolved::to_parts).collect());
                }
            }
        }
        Ok(concat(alternatives))
    }

    fn join<'v>(
        &self,
        arg: &'v Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Vec<Resolved<'v>>, String> {
        let args = array_of(arg, 2, "Fn::Join", ptr)?;
        let delim = args[0]
            .as_str()
            .ok_or_else(|| format!("Fn::Join at {ptr} must have a string delimiter"))?;
        let list_ptr = pointer::index(fn_ptr, 1);
        let mut out = Vec::new();
        for list in self.walk(&args[1], &list_ptr, depth)? {
            match list.value {
                Resolved::Array(items) => {
                    let mut alternatives = Vec::with_capacity(items.len());
                    for (i, item) in items.iter().enumerate() {
                        let values = self.values(item, &pointer::index(&list.pointer, i), depth)?;
                        alternatives.push(
                            values
                                .iter()
                                .map(|v| (!v.is_absent()).then(|| v.to_parts()))
                                .collect(),
                        );
                    }
                    out.extend(join_alternatives(alternatives, delim));
                }
                Resolved::List(items) => {
                    let parts = items.iter().map(Resolved::to_parts).collect();
                    out.push(from_parts(join_parts(parts, delim)));
                }
                other => out.push(Resolved::Unknown(format!(
                    "Fn::Join over {}",
                    other.describe()
                ))),
            }
        }
        Ok(dedup(out))
    }

    fn select<'v>(
        &self,
        arg: &'v Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Vec<Possible<'v>>, String> {
        let args = array_of(arg, 2, "Fn::Select", ptr)?;
        let indexes = self.values(&args[0], &pointer::index(fn_ptr, 0), depth)?;
        let lists = self.walk(&args[1], &pointer::index(fn_ptr, 1), depth)?;
        let mut out = Vec::new();
        let here = |value| Possible {
            value,
            pointer: ptr.to_string(),
        };
        for index in &indexes {
            let Some(i) = index.as_str().and_then(|s| s.trim().parse::<usize>().ok()) else {
                out.push(here(Resolved::Unknown(format!(
                    "Fn::Select index {}",
                    index.describe()
                ))));
                continue;
            };
            for list in &lists {
                match &list.value {
                    Resolved::Array(items) => match items.get(i) {
                        Some(item) => {
                            out.extend(self.walk(item, &pointer::index(&list.pointer, i), depth)?)
                        }
                        None => out.push(here(out_of_range(i))),
                    },
                    Resolved::List(items) => out.push(here(
                        items.get(i).cloned().unwrap_or_else(|| out_of_range(i)),
                    )),
                    other => out.push(here(Resolved::Unknown(format!(
                        "Fn::Select from {}",
                        other.describe()
                    )))),
                }
            }
        }
        Ok(dedup_possible(out))
    }

    fn split<'v>(
        &self,
        arg: &'v Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Vec<Resolved<'v>>, String> {
        let args = array_of(arg, 2, "Fn::Split", ptr)?;
        let delim = args[0]
            .as_str()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| format!("Fn::Split at {ptr} must have a non-empty string delimiter"))?;
        let sources = self.values(&args[1], &pointer::index(fn_ptr, 1), depth)?;
        Ok(dedup(
            sources
                .into_iter()
                .map(|s| match s {
                    Resolved::Str(s) => Resolved::List(
                        s.split(delim)
                            .map(|p| Resolved::Str(p.to_string()))
                            .collect(),
                    ),
                    other => Resolved::Unknown(format!("Fn::Split of {}", other.describe())),
                })
                .collect(),
        ))
    }

    fn find_in_map<'v>(
        &self,
        arg: &'v Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Vec<Resolved<'v>>, String> {
        let args = arg
            .as_array()
            .filter(|a| a.len() == 3 || a.len() == 4)
            .ok_or_else(|| {
                format!("Fn::FindInMap at {ptr} must be [map, key, key] (+ optional default)")
            })?;
        let mut keys = Vec::with_capacity(3);
        for (i, k) in args.iter().take(3).enumerate() {
            keys.push(self.values(k, &pointer::index(fn_ptr, i), depth)?);
        }
        let default = match args.get(3) {
            Some(d) => {
                let d = d
                    .as_object()
                    .and_then(|o| o.get("DefaultValue"))
                    .ok_or_else(|| format!("Fn::FindInMap at {ptr}: the 4th argument must be {{\"DefaultValue\": ...}}"))?;
                Some(self.values(
                    d,
                    &pointer::child(&pointer::index(fn_ptr, 3), "DefaultValue"),
                    depth,
                )?)
            }
            None => None,
        };
        let empty = Map::new();
        let maps = self.template.mappings().unwrap_or(&empty);
        // An unknown key could pick any entry, so every entry at that level is possible.
        let mut level: Vec<Option<&Value>> = vec![None];
        let mut out: Vec<Resolved<'v>> = Vec::new();
        for (depth_i, key_values) in keys.iter().enumerate() {
            let mut next = Vec::new();
            for node in &level {
                let obj = match node {
                    None if depth_i == 0 => Some(maps),
                    Some(Value::Object(o)) => Some(o),
                    _ => None,
                };
                let Some(obj) = obj else { continue };
                for key in key_values {
                    match key {
                        Resolved::Str(k) => match obj.get(k.as_str()) {
                            Some(v) => next.push(Some(v)),
                            None => match &default {
                                Some(d) => out.extend(d.iter().cloned()),
                                None => out.push(Resolved::Unknown(format!(
                                    "Fn::FindInMap has no entry `{k}` at {ptr}"
                                ))),
                            },
                        },
                        _ => next.extend(obj.values().map(Some)),
                    }
                }
            }
            if next.len() > MAX_POSSIBILITIES {
                return Ok(vec![too_many()]);
            }
            level = next;
        }
        out.extend(
            level
                .into_iter()
                .flatten()
                .map(|v| -> Resolved<'v> { self.mapping_value(v) }),
        );
        Ok(dedup(out))
    }

    fn cidr<'v>(
        &self,
        arg: &'v Value,
        ptr: &str,
        fn_ptr: &str,
        depth: usize,
    ) -> Result<Vec<Resolved<'v>>, String> {
        let args = array_of(arg, 3, "Fn::Cidr", ptr)?;
        let blocks = self.values(&args[0], &pointer::index(fn_ptr, 0), depth)?;
        let counts = self.values(&args[1], &pointer::index(fn_ptr, 1), depth)?;
        let bits = self.values(&args[2], &pointer::index(fn_ptr, 2), depth)?;
        let mut out = Vec::new();
        for b in &blocks {
            for c in &counts {
                for n in &bits {
                    let known = (
                        b.as_str(),
                        c.as_str().and_then(|s| s.trim().parse::<usize>().ok()),
                        n.as_str().and_then(|s| s.trim().parse::<u8>().ok()),
                    );
                    out.push(match known {
                        (Some(block), Some(count), Some(bits)) => {
                            match cidr::subnets(block, count, bits) {
                                Ok(list) => {
                                    Resolved::List(list.into_iter().map(Resolved::Str).collect())
                                }
                                Err(e) => Resolved::Unknown(format!("Fn::Cidr: {e}")),
                            }
                        }
                        _ => Resolved::Unknown(
                            "Fn::Cidr over values known only at deploy time".to_string(),
                        ),
                    });
                }
            }
        }
        Ok(dedup(out))
    }
}

fn intrinsic(m: &Map<String, Value>) -> Option<(&str, &Value)> {
    if m.len() != 1 {
        return None;
    }
    let (k, v) = m.iter().next()?;
    (k == "Ref" || k.starts_with("Fn::")).then_some((k.as_str(), v))
}

fn array_of<'v>(arg: &'v Value, n: usize, name: &str, ptr: &str) -> Result<&'v [Value], String> {
    arg.as_array()
        .filter(|a| a.len() == n)
        .map(Vec::as_slice)
        .ok_or_else(|| format!("{name} at {ptr} must be a list of {n} arguments"))
}

fn scalar(v: &Value) -> Resolved<'static> {
    match v {
        Value::String(s) => Resolved::Str(s.clone()),
        Value::Number(n) => Resolved::Str(n.to_string()),
        Value::Bool(b) => Resolved::Str(b.to_string()),
        Value::Null => Resolved::Absent,
        _ => Resolved::Unknown("a parameter value that is not a string".to_string()),
    }
}

fn partition(region: Option<&str>) -> &'static str {
    match region {
        Some(r) if r.starts_with("cn-") => "aws-cn",
        Some(r) if r.starts_with("us-gov-") => "aws-us-gov",
        _ => "aws",
    }
}

fn url_suffix(region: Option<&str>) -> &'static str {
    match region {
        Some(r) if r.starts_with("cn-") => "amazonaws.com.cn",
        _ => "amazonaws.com",
    }
}

fn too_many() -> Resolved<'static> {
    Resolved::Unknown(format!("more than {MAX_POSSIBILITIES} possible values"))
}

fn out_of_range(i: usize) -> Resolved<'static> {
    Resolved::Unknown(format!("Fn::Select index {i} is out of range"))
}

enum SubPiece {
    Text(String),
    Var(String),
}

/// Splits an `Fn::Sub` string into text and `${Var}`s; `${!Literal}` stays text.
fn parse_sub(s: &str) -> Vec<SubPiece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        text.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        if let Some(lit) = after.strip_prefix('!') {
            text.push_str("${");
            rest = lit;
            continue;
        }
        match after.find('}') {
            Some(end) => {
                if !text.is_empty() {
                    pieces.push(SubPiece::Text(std::mem::take(&mut text)));
                }
                pieces.push(SubPiece::Var(after[..end].trim().to_string()));
                rest = &after[end + 1..];
            }
            None => {
                text.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(SubPiece::Text(text));
    }
    pieces
}

/// Every concatenation choosing one alternative per position.
fn concat(alternatives: Vec<Vec<Vec<Part>>>) -> Vec<Resolved<'static>> {
    let mut acc: Vec<Vec<Part>> = vec![Vec::new()];
    for alts in alternatives {
        if acc.len() * alts.len().max(1) > MAX_POSSIBILITIES {
            return vec![too_many()];
        }
        acc = acc
            .iter()
            .flat_map(|prefix| {
                alts.iter().map(move |alt| {
                    let mut v = prefix.clone();
                    v.extend(alt.iter().cloned());
                    v
                })
            })
            .collect();
    }
    dedup(acc.into_iter().map(from_parts).collect())
}

/// Every join choosing one alternative per element; `None` means the element is
/// `AWS::NoValue` and drops out of the list.
fn join_alternatives(
    alternatives: Vec<Vec<Option<Vec<Part>>>>,
    delim: &str,
) -> Vec<Resolved<'static>> {
    let mut acc: Vec<Vec<Vec<Part>>> = vec![Vec::new()];
    for alts in alternatives {
        if acc.len() * alts.len().max(1) > MAX_POSSIBILITIES {
            return vec![too_many()];
        }
        acc = acc
            .iter()
            .flat_map(|chosen| {
                alts.iter().map(move |alt| {
                    let mut v = chosen.clone();
                    if let Some(parts) = alt {
                        v.push(parts.clone());
                    }
                    v
                })
            })
            .collect();
    }
    dedup(
        acc.into_iter()
            .map(|c| from_parts(join_parts(c, delim)))
            .collect(),
    )
}

fn join_parts(items: Vec<Vec<Part>>, delim: &str) -> Vec<Part> {
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(Part::Text(delim.to_string()));
        }
        out.extend(item);
    }
    out
}

fn dedup(values: Vec<Resolved<'_>>) -> Vec<Resolved<'_>> {
    let mut out: Vec<Resolved<'_>> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn dedup_possible(values: Vec<Possible<'_>>) -> Vec<Possible<'_>> {
    let mut out: Vec<Possible<'_>> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Input;
    use serde_json::json;

    fn input(template: Value, parameters: Value) -> Value {
        json!({
            "template": template,
            "parameters": parameters,
            "stack": {"name": "hybrid-alb", "region": "us-east-1"}
        })
    }

    /// Resolves `expr` inside a template with a few parameters, resources and mappings.
    fn resolve_in(expr: Value, parameters: Value) -> Vec<Resolved<'static>> {
        resolve_with(expr, parameters, json!({}))
    }

    /// [`resolve_in`] with the host's look-ups (input `resolved`).
    fn resolve_with(expr: Value, parameters: Value, resolved: Value) -> Vec<Resolved<'static>> {
        let mut doc = input(
            json!({
                "Parameters": {
                    "Cidr": {"Type": "String", "Default": "10.0.0.0/8"},
                    "NoDefault": {"Type": "String"},
                    "Ports": {"Type": "CommaDelimitedList", "Default": "80, 443"},
                    "Subnets": {"Type": "List<AWS::EC2::Subnet::Id>"},
                    "Ssm": {"Type": "AWS::SSM::Parameter::Value<String>", "Default": "/x/y"},
                    "Env": {"Type": "String", "Default": "prod"}
                },
                "Mappings": {
                    "Net": {
                        "prod": {"Cidr": "0.0.0.0/0", "List": ["a", "b"]},
                        "dev": {"Cidr": "10.0.0.0/8"}
                    }
                },
                "Resources": {
                    "Sg": {"Type": "AWS::EC2::SecurityGroup"},
                    "Bucket": {"Type": "AWS::S3::Bucket"},
                    "Probe": {"Type": "Test::Probe", "Properties": {"X": expr}}
                }
            }),
            parameters,
        );
        doc["resolved"] = resolved;
        let parsed = Input::parse(&doc).unwrap();
        let r = parsed.resolver();
        let probe = parsed.template.resource("Probe").unwrap();
        let (v, p) = probe.property("X").unwrap();
        r.resolve(v, &p)
            .unwrap()
            .into_iter()
            .map(|p| owned(p.value))
            .collect()
    }

    /// Test helper: literal arrays/objects are compared by their JSON.
    fn owned(r: Resolved<'_>) -> Resolved<'static> {
        match r {
            Resolved::Absent => Resolved::Absent,
            Resolved::Str(s) => Resolved::Str(s),
            Resolved::Partial(p) => Resolved::Partial(p),
            Resolved::Unknown(u) => Resolved::Unknown(u),
            Resolved::Doubt(d) => Resolved::Doubt(d),
            Resolved::Resource { id, attribute } => Resolved::Resource { id, attribute },
            Resolved::List(l) => Resolved::List(l.into_iter().map(owned).collect()),
            Resolved::Array(a) => Resolved::Str(serde_json::to_string(a).unwrap()),
            Resolved::Object(o) => Resolved::Str(serde_json::to_string(o).unwrap()),
        }
    }

    fn s(v: &str) -> Resolved<'static> {
        Resolved::Str(v.to_string())
    }

    #[test]
    fn literals() {
        assert_eq!(resolve_in(json!("x"), json!({})), vec![s("x")]);
        assert_eq!(resolve_in(json!(22), json!({})), vec![s("22")]);
        assert_eq!(resolve_in(json!(true), json!({})), vec![s("true")]);
    }

    #[test]
    fn ref_parameter_default_and_override() {
        assert_eq!(
            resolve_in(json!({"Ref": "Cidr"}), json!({})),
            vec![s("10.0.0.0/8")]
        );
        assert_eq!(
            resolve_in(json!({"Ref": "Cidr"}), json!({"Cidr": "0.0.0.0/0"})),
            vec![s("0.0.0.0/0")]
        );
        assert!(matches!(
            resolve_in(json!({"Ref": "NoDefault"}), json!({}))[0],
            Resolved::Unknown(_)
        ));
        assert!(matches!(
            &resolve_in(json!({"Ref": "Ssm"}), json!({}))[0],
            Resolved::Doubt(Doubt { source: Source::SsmParameter, what }) if what.contains("/x/y")
        ));
    }

    #[test]
    fn list_parameters_split_on_commas() {
        assert_eq!(
            resolve_in(json!({"Ref": "Ports"}), json!({})),
            vec![Resolved::List(vec![s("80"), s("443")])]
        );
        assert_eq!(
            resolve_in(json!({"Ref": "Subnets"}), json!({"Subnets": "a,b"})),
            vec![Resolved::List(vec![s("a"), s("b")])]
        );
    }

    #[test]
    fn pseudo_parameters() {
        assert_eq!(
            resolve_in(json!({"Ref": "AWS::Region"}), json!({})),
            vec![s("us-east-1")]
        );
        assert_eq!(
            resolve_in(json!({"Ref": "AWS::StackName"}), json!({})),
            vec![s("hybrid-alb")]
        );
        assert_eq!(
            resolve_in(json!({"Ref": "AWS::Partition"}), json!({})),
            vec![s("aws")]
        );
        assert_eq!(
            resolve_in(json!({"Ref": "AWS::URLSuffix"}), json!({})),
            vec![s("amazonaws.com")]
        );
        assert_eq!(
            resolve_in(json!({"Ref": "AWS::NoValue"}), json!({})),
            vec![Resolved::Absent]
        );
        assert!(matches!(
            resolve_in(json!({"Ref": "AWS::AccountId"}), json!({}))[0],
            Resolved::Unknown(_)
        ));
    }

    #[test]
    fn resource_references() {
        let sg = Resolved::Resource {
            id: "Sg".into(),
            attribute: None,
        };
        let sg_id = Resolved::Resource {
            id: "Sg".into(),
            attribute: Some("GroupId".into()),
        };
        assert_eq!(
            resolve_in(json!({"Ref": "Sg"}), json!({})),
            vec![sg.clone()]
        );
        assert_eq!(
            resolve_in(json!({"Fn::GetAtt": ["Sg", "GroupId"]}), json!({})),
            vec![sg_id.clone()]
        );
        assert_eq!(
            resolve_in(json!({"Fn::GetAtt": "Sg.GroupId"}), json!({})),
            vec![sg_id.clone()]
        );
        assert_eq!(resolve_in(json!({"Fn::Sub": "${Sg}"}), json!({})), vec![sg]);
        assert_eq!(
            resolve_in(json!({"Fn::Sub": "${Sg.GroupId}"}), json!({})),
            vec![sg_id]
        );
    }

    #[test]
    fn if_yields_every_branch() {
        let v = resolve_in(
            json!({"Fn::If": ["C", "0.0.0.0/0", {"Ref": "Cidr"}]}),
            json!({}),
        );
        assert_eq!(v, vec![s("0.0.0.0/0"), s("10.0.0.0/8")]);
        let v = resolve_in(
            json!({"Fn::If": ["C", "x", {"Ref": "AWS::NoValue"}]}),
            json!({}),
        );
        assert_eq!(v, vec![s("x"), Resolved::Absent]);
    }

    #[test]
    fn if_branches_point_into_the_branch() {
        let doc = input(
            json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Fn::If": ["C", "a", "b"]}}}}}),
            json!({}),
        );
        let parsed = Input::parse(&doc).unwrap();
        let a = parsed.template.resource("A").unwrap();
        let (v, p) = a.property("X").unwrap();
        let got = parsed.resolver().resolve(v, &p).unwrap();
        assert_eq!(got[1].pointer, "/Resources/A/Properties/X/Fn::If/2");
        assert_eq!(doc["template"].pointer(&got[1].pointer), Some(&json!("b")));
    }

    #[test]
    fn sub_and_join() {
        assert_eq!(
            resolve_in(
                json!({"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/X"}),
                json!({})
            ),
            vec![s("arn:aws:iam::aws:policy/X")]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::Sub": ["${A}/${B}", {"A": "x", "B": {"Ref": "Env"}}]}),
                json!({})
            ),
            vec![s("x/prod")]
        );
        assert_eq!(
            resolve_in(json!({"Fn::Sub": "a${!Literal}"}), json!({})),
            vec![s("a${Literal}")]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::Sub": "arn:aws:s3:::${AWS::AccountId}-logs"}),
                json!({})
            ),
            vec![Resolved::Partial(vec![
                Part::Text("arn:aws:s3:::".into()),
                Part::Unknown("AWS::AccountId".into()),
                Part::Text("-logs".into()),
            ])]
        );
        assert!(matches!(
            resolve_in(json!({"Fn::Sub": "${AWS::AccountId}"}), json!({}))[0],
            Resolved::Unknown(_)
        ));
        assert_eq!(
            resolve_in(json!({"Fn::Join": ["", ["0.0.0.0", "/", "0"]]}), json!({})),
            vec![s("0.0.0.0/0")]
        );
        assert_eq!(
            resolve_in(json!({"Fn::Join": [",", {"Ref": "Ports"}]}), json!({})),
            vec![s("80,443")]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::Join": ["-", ["a", {"Fn::If": ["C", "b", {"Ref": "AWS::NoValue"}]}]]}),
                json!({})
            ),
            vec![s("a-b"), s("a")]
        );
    }

    #[test]
    fn select_split_find_in_map() {
        assert_eq!(
            resolve_in(json!({"Fn::Select": [1, ["a", "b"]]}), json!({})),
            vec![s("b")]
        );
        assert_eq!(
            resolve_in(json!({"Fn::Select": ["0", {"Ref": "Ports"}]}), json!({})),
            vec![s("80")]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::Select": [2, {"Fn::Split": [",", "a,b,c"]}]}),
                json!({})
            ),
            vec![s("c")]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::FindInMap": ["Net", {"Ref": "Env"}, "Cidr"]}),
                json!({})
            ),
            vec![s("0.0.0.0/0")]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::FindInMap": ["Net", {"Ref": "NoDefault"}, "Cidr"]}),
                json!({})
            ),
            vec![s("0.0.0.0/0"), s("10.0.0.0/8")]
        );
        assert_eq!(
            resolve_in(json!({"Fn::FindInMap": ["Net", "prod", "List"]}), json!({})),
            vec![Resolved::List(vec![s("a"), s("b")])]
        );
        assert_eq!(
            resolve_in(
                json!({"Fn::FindInMap": ["Net", "test", "Cidr", {"DefaultValue": "1.2.3.4/32"}]}),
                json!({})
            ),
            vec![s("1.2.3.4/32")]
        );
    }

    #[test]
    fn unknowns() {
        assert!(matches!(
            resolve_in(json!({"Fn::GetAZs": ""}), json!({}))[0],
            Resolved::Unknown(_)
        ));
        assert!(
            resolve_in(json!({"Fn::Sub": "arn:${AWS::AccountId}"}), json!({}))[0]
                .doubt()
                .is_none()
        );
    }

    #[test]
    fn values_from_elsewhere_are_doubt() {
        let doubt = |v: &Resolved<'_>| v.doubt().map(|d| d.source);
        let v = resolve_in(json!({"Fn::ImportValue": "shared-cidr"}), json!({}));
        assert!(matches!(v[0], Resolved::Doubt(_)));
        assert_eq!(doubt(&v[0]), Some(Source::Import));
        for r in [
            "{{resolve:ssm:/net/cidr}}",
            "{{resolve:ssm-secure:/db/pw:1}}",
            "{{resolve:secretsmanager:db:SecretString:password}}",
        ] {
            let v = resolve_in(json!(r), json!({}));
            assert!(matches!(v[0], Resolved::Doubt(_)), "{r}: {v:?}");
            assert_eq!(doubt(&v[0]), Some(Source::DynamicReference));
        }
        // Inside a longer string, through Sub, and through a parameter: still doubt.
        let v = resolve_in(json!("10.{{resolve:ssm:/net/octet}}.0.0/16"), json!({}));
        assert!(matches!(v[0], Resolved::Partial(_)));
        assert_eq!(doubt(&v[0]), Some(Source::DynamicReference));
        let v = resolve_in(json!({"Fn::Sub": "${Ssm}/32"}), json!({}));
        assert_eq!(doubt(&v[0]), Some(Source::SsmParameter));
        let v = resolve_in(
            json!({"Fn::Join": ["", [{"Fn::ImportValue": "a"}, {"Ref": "AWS::AccountId"}]]}),
            json!({}),
        );
        assert_eq!(doubt(&v[0]), Some(Source::Import));
    }

    #[test]
    fn parameters_from_a_parent_stack_keep_their_doubt() {
        let v = resolve_in(
            json!({"Ref": "Cidr"}),
            json!({"Cidr": {"deploy_time": "`Fn::ImportValue` of `x` in the parent", "source": "import"}}),
        );
        assert!(
            matches!(
                &v[0],
                Resolved::Doubt(Doubt {
                    source: Source::Import,
                    ..
                })
            ),
            "{v:?}"
        );
        let v = resolve_in(
            json!({"Ref": "Cidr"}),
            json!({"Cidr": {"deploy_time": "`Vpc.CidrBlock`"}}),
        );
        assert!(matches!(v[0], Resolved::Unknown(_)), "{v:?}");
    }

    #[test]
    fn looked_up_values_are_judged() {
        let lookups = json!({
            "ssm": {"/x/y": "0.0.0.0/0", "/net/cidr": "10.0.0.0/8", "/net/cidr:3": "1.2.3.4/32"},
            "imports": {"shared-cidr": "192.168.0.0/16"}
        });
        let with = |expr: Value| resolve_with(expr, json!({}), lookups.clone());
        assert_eq!(with(json!({"Ref": "Ssm"})), vec![s("0.0.0.0/0")]);
        assert_eq!(
            with(json!({"Fn::ImportValue": "shared-cidr"})),
            vec![s("192.168.0.0/16")]
        );
        assert_eq!(
            with(json!("{{resolve:ssm:/net/cidr}}")),
            vec![s("10.0.0.0/8")]
        );
        assert_eq!(
            with(json!("{{resolve:ssm:/net/cidr:3}}")),
            vec![s("1.2.3.4/32")]
        );
        // Never looked up: secure strings, secrets, names the host did not find.
        assert!(matches!(
            with(json!("{{resolve:ssm-secure:/net/cidr}}"))[0],
            Resolved::Doubt(_)
        ));
        assert!(matches!(
            with(json!({"Fn::ImportValue": "other"}))[0],
            Resolved::Doubt(_)
        ));
    }

    #[test]
    fn cidr_function() {
        assert_eq!(
            resolve_in(
                json!({"Fn::Select": [1, {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}]}),
                json!({})
            ),
            vec![s("10.0.1.0/24")]
        );
    }

    #[test]
    fn malformed_intrinsics_are_errors() {
        let doc = input(
            json!({"Resources": {"A": {"Type": "T", "Properties": {"X": {"Fn::If": ["C", "a"]}}}}}),
            json!({}),
        );
        let parsed = Input::parse(&doc).unwrap();
        let a = parsed.template.resource("A").unwrap();
        let (v, p) = a.property("X").unwrap();
        assert!(parsed.resolver().resolve(v, &p).is_err());
    }

    #[test]
    fn elements_flatten_branches() {
        let doc = input(
            json!({"Resources": {"A": {"Type": "T", "Properties": {"X": [
                "a",
                {"Fn::If": ["C", "b", {"Ref": "AWS::NoValue"}]},
                {"Ref": "AWS::NoValue"}
            ], "Y": "solo"}}}}),
            json!({}),
        );
        let parsed = Input::parse(&doc).unwrap();
        let r = parsed.resolver();
        let a = parsed.template.resource("A").unwrap();
        let (v, p) = a.property("X").unwrap();
        let got = r.elements(v, &p).unwrap();
        let values: Vec<_> = got.iter().map(|p| p.value.clone()).collect();
        assert_eq!(values, vec![s("a"), s("b")]);
        assert_eq!(got[1].pointer, "/Resources/A/Properties/X/1/Fn::If/1");
        let (v, p) = a.property("Y").unwrap();
        assert_eq!(r.elements(v, &p).unwrap()[0].value, s("solo"));
    }

    #[test]
    fn combinations_are_capped() {
        let many: Vec<Value> = (0..8).map(|_| json!({"Fn::If": ["C", "a", "b"]})).collect();
        let v = resolve_in(json!({"Fn::Join": ["", many]}), json!({}));
        assert!(matches!(v.as_slice(), [Resolved::Unknown(_)]));
    }

    #[test]
    fn glob_patterns() {
        let p = Resolved::Partial(vec![Part::Text("s3:".into()), Part::Unknown("x".into())]);
        assert_eq!(p.glob_pattern().as_deref(), Some("s3:*"));
    }
}
