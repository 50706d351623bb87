//! YAML (and JSON, which YAML 1.2 contains) to JSON values, keeping the line of every
//! node so that errors and policy findings can point at `file:line`.
//!
//! CloudFormation short tags (`!Ref`, `!GetAtt a.b`, `!Sub` …) become the JSON long form
//! (`{"Ref": …}`, `{"Fn::GetAtt": [a, b]}`, `{"Fn::Sub": …}`), which is what CloudFormation
//! itself evaluates and what policies see.
//!
//! Parsing is bounded: the text, the nesting depth of the JSON value (aliases included),
//! and what the document expands to (aliases copy their anchor) all have limits, so a few
//! hundred hostile bytes cannot take gigabytes or the stack.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// The largest document parsed. CloudFormation's own limit is 1 MB per template.
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// The deepest JSON value (arrays and objects, a short tag's `{"Fn::…": …}` counting as
/// one), aliases included. Real templates stay under 30; every later walk (policy input,
/// policies, JSON encoding) may rely on it.
pub const MAX_DEPTH: usize = 64;
/// What a document may expand to, aliases copied out: nodes (scalars, arrays, objects)…
pub const MAX_NODES: usize = 1_000_000;
/// …and bytes of text (scalars and keys).
pub const MAX_BYTES: usize = 8 << 20;

/// A parsed document: the value and, for every JSON pointer, the 1-based line it starts on.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    lines: Lines,
}

impl Document {
    /// The line of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        let mut found = *self.lines.line.first()?;
        if pointer.is_empty() {
            return Some(found);
        }
        let mut node = 0;
        for token in pointer.strip_prefix('/')?.split('/') {
            match self.lines.children.get(&(node, token.into())) {
                Some(&child) => {
                    node = child;
                    found = self.lines.line[child];
                }
                None => break,
            }
        }
        Some(found)
    }
}

/// The line of each node as a tree of pointer tokens, not a map of whole pointers: memory
/// stays proportional to the nodes, however long the keys above them.
#[derive(Debug, Clone, Default)]
struct Lines {
    /// The line of each node; node 0 is the root.
    line: Vec<usize>,
    /// (parent node, escaped pointer token) → child node.
    children: HashMap<(usize, Box<str>), usize>,
}

impl Lines {
    fn add(&mut self, parent: Option<(usize, String)>, line: usize) -> usize {
        let id = self.line.len();
        self.line.push(line);
        if let Some((p, token)) = parent {
            self.children.insert((p, token.into()), id);
        }
        id
    }
}

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Short tags that map to `Fn::<Name>`.
const FN_TAGS: &[&str] = &[
    "Base64",
    "Cidr",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Join",
    "Select",
    "Split",
    "Sub",
    "Transform",
    "And",
    "Equals",
    "If",
    "Not",
    "Or",
    "Length",
    "ToJsonString",
];

pub fn parse(text: &str) -> Result<Document, YamlError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(YamlError {
            line: 1,
            column: 1,
            message: format!(
                "larger than {MAX_TEXT_BYTES} bytes; CloudFormation's own limit is 1 MB"
            ),
        });
    }
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    // Pull events one at a time: `Parser::load` recurses once per nesting level.
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        })?;
        if ev == Event::StreamEnd {
            break;
        }
        builder.on_event(ev, mark);
        if let Some(err) = builder.error.take() {
            return Err(err);
        }
    }
    Ok(Document {
        value: builder.root.unwrap_or(Value::Null),
        lines: builder.lines,
    })
}

pub(crate) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// What a value costs: nodes and bytes of text once expanded, and its JSON height.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
    height: usize,
}

enum Body {
    Seq(Vec<Value>),
    Map {
        map: Map<String, Value>,
        key: Option<(String, usize)>,
    },
}

/// A sequence or mapping still open.
struct Frame {
    body: Body,
    tag: Option<Tag>,
    anchor: usize,
    /// Its node in [`Lines`].
    node: usize,
    line: usize,
    /// Its JSON depth: 1 for the root, plus one for a short tag's wrapper.
    depth: usize,
    /// Itself and its children so far; the height is that of the tallest child.
    size: Size,
}

struct Builder<'a> {
    text: &'a str,
    stack: Vec<Frame>,
    root: Option<Value>,
    lines: Lines,
    anchors: HashMap<usize, (Value, Size)>,
    /// Everything built so far, anchor copies and aliases included.
    total: Size,
    error: Option<YamlError>,
}

/// A short tag (`!Ref` …) wraps its value in a one-key object: one level more.
fn wrapper(tag: &Option<Tag>) -> usize {
    usize::from(tag.as_ref().is_some_and(|t| t.handle == "!"))
}

/// The name after `*` at `mark`, for errors (the parser keeps only an id).
fn alias_name(text: &str, mark: Marker) -> String {
    text.chars()
        .skip(mark.index() + 1)
        .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
        .take(64)
        .collect()
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Self {
            text,
            stack: Vec::new(),
            root: None,
            lines: Lines::default(),
            anchors: HashMap::new(),
            total: Size::default(),
            error: None,
        }
    }

    fn fail(&mut self, mark: Marker, message: String) {
        self.fail_at(mark.line(), mark.col() + 1, message);
    }

    fn fail_at(&mut self, line: usize, column: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                line,
                column,
                message,
            });
        }
    }

    fn depth(&self) -> usize {
        self.stack.last().map_or(0, |f| f.depth)
    }

    /// Adds to the running total; false (and an error naming `what`) past a limit.
    fn charge(&mut self, size: Size, mark: Marker, what: &dyn Fn() -> String) -> bool {
        self.total.nodes += size.nodes;
        self.total.bytes += size.bytes;
        let over = if self.total.nodes > MAX_NODES {
            format!("{MAX_NODES} nodes")
        } else if self.total.bytes > MAX_BYTES {
            format!("{MAX_BYTES} bytes of text")
        } else {
            return true;
        };
        let message = format!(
            "{} expands the document past {over}; the limit keeps hostile anchors and aliases from multiplying it",
            what()
        );
        self.fail(mark, message);
        false
    }

    /// Records the line of the next child of the innermost frame; its node and line.
    /// `None` when the next scalar is a mapping key rather than a value.
    fn slot(&mut self, mark: Marker) -> Option<(usize, usize)> {
        let (parent, line) = match self.stack.last() {
            None => (None, mark.line()),
            Some(f) => match &f.body {
                Body::Seq(items) => (Some((f.node, items.len().to_string())), mark.line()),
                Body::Map { key, .. } => {
                    let (k, line) = key.as_ref()?;
                    (Some((f.node, escape_pointer(k))), *line)
                }
            },
        };
        Some((self.lines.add(parent, line), line))
    }

    fn push_value(&mut self, value: Value, size: Size, anchor: usize, mark: Marker) {
        if anchor != 0 {
            // The anchor keeps a copy of its value: that costs as much again.
            if !self.charge(size, mark, &|| "an anchor".to_string()) {
                return;
            }
            self.anchors.insert(anchor, (value.clone(), size));
        }
        let Some(frame) = self.stack.last_mut() else {
            self.root = Some(value);
            return;
        };
        frame.size.nodes += size.nodes;
        frame.size.bytes += size.bytes;
        frame.size.height = frame.size.height.max(size.height);
        match &mut frame.body {
            Body::Seq(items) => items.push(value),
            Body::Map { map, key } => match key.take() {
                Some((k, line)) => {
                    if map.contains_key(&k) {
                        return self.fail_at(line, 1, format!("duplicate key `{k}`"));
                    }
                    map.insert(k, value);
                }
                None => self.fail(mark, "a mapping key must be a plain scalar".into()),
            },
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Frame {
                body: Body::Map { key: None, .. },
                ..
            })
        )
    }
}

fn plain_scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    // Keep leading zeros and the like as strings: `0123` is an id, not a number.
    let numeric = s
        .trim_start_matches(['-', '+'])
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit());
    if numeric {
        if let Ok(i) = s.parse::<i64>()
            && (i.to_string() == s || format!("+{i}") == s)
        {
            return Value::Number(i.into());
        }
        if s.contains('.')
            && !s.ends_with('.')
            && let Ok(f) = s.parse::<f64>()
            && let Some(n) = Number::from_f64(f)
            && (!s.starts_with('0') || s.starts_with("0."))
        {
            return Value::Number(n);
        }
    }
    Value::String(s.to_string())
}

/// Applies a CloudFormation short tag to a value.
fn apply_tag(tag: &Tag, value: Value) -> Result<Value, String> {
    if tag.handle == "!!" {
        return Ok(match (tag.suffix.as_str(), value) {
            ("str", Value::Null) => Value::String(String::new()),
            ("str", Value::Bool(b)) => Value::String(b.to_string()),
            ("str", Value::Number(n)) => Value::String(n.to_string()),
            (_, v) => v,
        });
    }
    if tag.handle != "!" {
        return Err(format!("unknown tag `{}{}`", tag.handle, tag.suffix));
    }
    let name = tag.suffix.as_str();
    let mut out = Map::new();
    match name {
        "Ref" => {
            out.insert("Ref".into(), value);
        }
        "Condition" => {
            out.insert("Condition".into(), value);
        }
        "GetAtt" => {
            let v = match value {
                Value::String(s) => match s.split_once('.') {
                    Some((res, attr)) => Value::Array(vec![res.into(), attr.into()]),
                    None => return Err(format!("`!GetAtt {s}` needs the form Resource.Attribute")),
                },
                other => other,
            };
            out.insert("Fn::GetAtt".into(), v);
        }
        _ if FN_TAGS.contains(&name) => {
            out.insert(format!("Fn::{name}"), value);
        }
        _ => return Err(format!("unknown CloudFormation tag `!{name}`")),
    }
    Ok(Value::Object(out))
}

impl Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => self.scalar(text, style, anchor, tag, mark),
            Event::SequenceStart(anchor, tag) => self.open(mark, anchor, tag, true),
            Event::MappingStart(anchor, tag) => self.open(mark, anchor, tag, false),
            Event::SequenceEnd | Event::MappingEnd => self.close(mark),
            Event::Alias(id) => self.alias(id, mark),
            Event::DocumentStart if self.root.is_some() => {
                self.fail(mark, "only one YAML document is allowed".into())
            }
            _ => {}
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        tag: Option<Tag>,
        mark: Marker,
    ) {
        if self.expecting_key() {
            if tag.is_some() {
                return self.fail(mark, "a mapping key cannot carry a tag".into());
            }
            let key = Size {
                bytes: text.len(),
                ..Size::default()
            };
            if !self.charge(key, mark, &|| "a key".to_string()) {
                return;
            }
            if let Some(Frame {
                body: Body::Map { key, .. },
                size,
                ..
            }) = self.stack.last_mut()
            {
                size.bytes += text.len();
                *key = Some((text, mark.line()));
            }
            return;
        }
        let wrap = wrapper(&tag);
        if self.depth() + wrap > MAX_DEPTH {
            return self.fail(mark, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let size = Size {
            nodes: 1 + wrap,
            bytes: text.len(),
            height: wrap,
        };
        if !self.charge(size, mark, &|| "this value".to_string()) {
            return;
        }
        if self.slot(mark).is_none() {
            return;
        }
        let mut value = if style == TScalarStyle::Plain {
            plain_scalar(&text)
        } else {
            Value::String(text)
        };
        if let Some(tag) = tag {
            // `!GetAZs ''` and friends: an empty plain scalar under a tag is "".
            if value.is_null() && tag.handle == "!" {
                value = Value::String(String::new());
            }
            match apply_tag(&tag, value) {
                Ok(v) => value = v,
                Err(e) => return self.fail(mark, e),
            }
        }
        self.push_value(value, size, anchor, mark);
    }

    fn alias(&mut self, id: usize, mark: Marker) {
        if self.expecting_key() {
            return self.fail(mark, "an alias cannot be a mapping key".into());
        }
        let Some(size) = self.anchors.get(&id).map(|(_, s)| *s) else {
            return self.fail(mark, "alias to an unknown anchor".into());
        };
        let text = self.text;
        let name = || format!("alias `*{}`", alias_name(text, mark));
        if self.depth() + size.height > MAX_DEPTH {
            let message = format!(
                "{} nests the document deeper than {MAX_DEPTH} levels",
                name()
            );
            return self.fail(mark, message);
        }
        if !self.charge(size, mark, &name) {
            return;
        }
        self.slot(mark);
        if let Some((value, _)) = self.anchors.get(&id) {
            let value = value.clone();
            self.push_value(value, size, 0, mark);
        }
    }

    fn open(&mut self, mark: Marker, anchor: usize, tag: Option<Tag>, seq: bool) {
        if self.expecting_key() {
            return self.fail(mark, "a mapping key must be a plain scalar".into());
        }
        let wrap = wrapper(&tag);
        let depth = self.depth() + 1 + wrap;
        if depth > MAX_DEPTH {
            return self.fail(mark, format!("nested deeper than {MAX_DEPTH} levels"));
        }
        let size = Size {
            nodes: 1 + wrap,
            ..Size::default()
        };
        if !self.charge(size, mark, &|| "this value".to_string()) {
            return;
        }
        let Some((node, line)) = self.slot(mark) else {
            return;
        };
        let body = if seq {
            Body::Seq(Vec::new())
        } else {
            Body::Map {
                map: Map::new(),
                key: None,
            }
        };
        self.stack.push(Frame {
            body,
            tag,
            anchor,
            node,
            line,
            depth,
            size,
        });
    }

    fn close(&mut self, mark: Marker) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let value = match frame.body {
            Body::Seq(items) => Value::Array(items),
            Body::Map { map, .. } => Value::Object(map),
        };
        let size = Size {
            height: frame.size.height + 1 + wrapper(&frame.tag),
            ..frame.size
        };
        let value = match frame.tag {
            Some(tag) => match apply_tag(&tag, value) {
                Ok(v) => v,
                Err(e) => return self.fail_at(frame.line, 1, e),
            },
            None => value,
        };
        self.push_value(value, size, frame.anchor, mark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_tags_become_long_form() {
        let doc = parse(
            "A: !Ref Foo\nB: !GetAtt Alb.DNSName\nC: !Sub 'http://${X}'\nD: !Select [0, !GetAZs '']\n\
             E: !If [Cond, !Ref AWS::NoValue, x]\nF: !Condition IsProd\nG: !GetAtt [R, Arn]\nH: !GetAZs\n",
        )
        .unwrap();
        assert_eq!(
            doc.value,
            json!({
                "A": {"Ref": "Foo"},
                "B": {"Fn::GetAtt": ["Alb", "DNSName"]},
                "C": {"Fn::Sub": "http://${X}"},
                "D": {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
                "E": {"Fn::If": ["Cond", {"Ref": "AWS::NoValue"}, "x"]},
                "F": {"Condition": "IsProd"},
                "G": {"Fn::GetAtt": ["R", "Arn"]},
                "H": {"Fn::GetAZs": ""},
            })
        );
    }

    #[test]
    fn scalars_follow_yaml_core_schema_but_keep_ids() {
        let doc = parse("a: 80\nb: '80'\nc: true\nd: 0123\ne: 1.5\nf: ~\ng: 10.0.0.0/16\nh: -1\n")
            .unwrap();
        assert_eq!(
            doc.value,
            json!({"a": 80, "b": "80", "c": true, "d": "0123", "e": 1.5, "f": null,
                   "g": "10.0.0.0/16", "h": -1})
        );
    }

    #[test]
    fn lines_are_recorded_per_pointer() {
        let text = "Resources:\n  Sg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      SecurityGroupIngress:\n        - CidrIp: 0.0.0.0/0\n          FromPort: 22\n";
        let doc = parse(text).unwrap();
        assert_eq!(doc.line_of("/Resources/Sg"), Some(2));
        assert_eq!(doc.line_of("/Resources/Sg/Type"), Some(3));
        assert_eq!(
            doc.line_of("/Resources/Sg/Properties/SecurityGroupIngress/0"),
            Some(6)
        );
        assert_eq!(
            doc.line_of("/Resources/Sg/Properties/SecurityGroupIngress/0/FromPort"),
            Some(7)
        );
        // Unknown children fall back to the nearest known ancestor.
        assert_eq!(doc.line_of("/Resources/Sg/Properties/Nope"), Some(4));
    }

    #[test]
    fn json_is_yaml_too() {
        let doc = parse("{\n  \"a\": [1, {\"Ref\": \"X\"}]\n}\n").unwrap();
        assert_eq!(doc.value, json!({"a": [1, {"Ref": "X"}]}));
        assert_eq!(doc.line_of("/a"), Some(2));
    }

    #[test]
    fn errors_carry_the_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let err = parse("a: 1\nb: !Bogus x\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("!Bogus"));
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((err.line, err.message.as_str()), (3, "duplicate key `a`"));
        let err = parse("x: !GetAtt NoDot\n").unwrap_err();
        assert!(err.message.contains("Resource.Attribute"));
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let doc = parse("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(doc.value, json!({"a": {"k": "v"}, "b": {"k": "v"}}));
    }

    /// The 596-byte bomb: nine levels of ten aliases each, 10^9 scalars expanded.
    fn alias_bomb() -> String {
        let mut t = String::from("Resources:\n  B:\n    Type: AWS::S3::Bucket\nMetadata:\n");
        t.push_str(&format!("  a0: &a0 [{}]\n", ["x"; 10].join(",")));
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            t.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
        }
        t
    }

    #[test]
    fn an_alias_bomb_is_refused_naming_the_alias_and_its_line() {
        let text = alias_bomb();
        assert!(text.len() < 700, "{}", text.len());
        let started = std::time::Instant::now();
        let err = parse(&text).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // a5 holds 1.1 million nodes: the budget runs out on its line, at one of its aliases.
        assert_eq!(err.line, 10, "{err:?}");
        assert!(
            err.message
                .starts_with("alias `*a4` expands the document past 1000000 nodes"),
            "{err:?}"
        );
        // Long text repeated by aliases counts too.
        let big = "y".repeat(100_000);
        let text = format!("a: &s {big}\nb: [{}]\n", vec!["*s"; 100].join(", "));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("bytes of text"), "{err:?}");
        // What real templates do with anchors stays well inside.
        parse(&format!(
            "a: &t {{Key: team, Value: x}}\nb: [{}]\n",
            vec!["*t"; 1000].join(", ")
        ))
        .unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_at_the_limit() {
        // The 40 KB template: 20,000 compact nested block sequences.
        let text = format!("{}x\n", "- ".repeat(20_000));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(
            err.message.contains("nested deeper than 64 levels"),
            "{err:?}"
        );
        // Flow and block nesting alike; exactly the limit is fine.
        let flow = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert_eq!(
            parse(&flow(MAX_DEPTH)).unwrap().value.to_string(),
            flow(MAX_DEPTH)
        );
        assert!(parse(&flow(MAX_DEPTH + 1)).is_err());
        let block = |n: usize| {
            (0..n)
                .map(|i| format!("{}k:\n", " ".repeat(i)))
                .collect::<String>()
        };
        assert!(parse(&block(MAX_DEPTH)).is_ok());
        let err = parse(&block(MAX_DEPTH + 1)).unwrap_err();
        assert_eq!(err.line, MAX_DEPTH + 1, "{err:?}");
        // A short tag wraps its value in an object: that is a level too.
        assert!(
            parse(&format!(
                "{}!Ref x{}",
                "[".repeat(MAX_DEPTH - 1),
                "]".repeat(MAX_DEPTH - 1)
            ))
            .is_ok()
        );
        assert!(
            parse(&format!(
                "{}!Ref x{}",
                "[".repeat(MAX_DEPTH),
                "]".repeat(MAX_DEPTH)
            ))
            .is_err()
        );
    }

    #[test]
    fn aliases_count_their_depth() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let text = format!(
            "a: &d {}\nb: {}*d{}\n",
            deep(40),
            "[".repeat(30),
            "]".repeat(30)
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(
            err.message
                .contains("alias `*d` nests the document deeper than 64 levels"),
            "{err:?}"
        );
        assert!(
            parse(&format!(
                "a: &d {}\nb: {}*d{}\n",
                deep(40),
                "[".repeat(23),
                "]".repeat(23)
            ))
            .is_ok()
        );
    }

    #[test]
    fn the_deepest_document_encodes_and_drops_on_a_small_stack() {
        // A tokio blocking thread has 2 MiB; every walk of a parsed value must fit in it.
        let text = format!(
            "{}!Ref x{}",
            "{a: ".repeat(MAX_DEPTH - 1),
            "}".repeat(MAX_DEPTH - 1)
        );
        let doc = parse(&text).unwrap();
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let copy = doc.value.clone();
                let json = serde_json::to_string(&json!({"template": copy})).unwrap();
                let back: Value = serde_json::from_str(&json).unwrap();
                assert_eq!(back["template"], doc.value);
                drop(back);
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn long_keys_do_not_multiply_the_line_map() {
        // Each of 40,000 children sits under a 400 KB key: whole pointers would be 16 GB.
        let key = "k".repeat(400_000);
        let children: String = (0..40_000).map(|i| format!(" c{i}: 1\n")).collect();
        // An explicit key: an implicit one may not pass 1024 characters.
        let text = format!("? {key}\n:\n{children}");
        assert!(text.len() < MAX_TEXT_BYTES);
        let doc = parse(&text).unwrap();
        assert_eq!(doc.line_of(&format!("/{key}/c39999")), Some(40_002));
        assert_eq!(doc.line_of(&format!("/{key}/nope")), Some(1));
    }

    #[test]
    fn text_past_the_limit_is_refused() {
        let text = format!("a: {}\n", "x".repeat(MAX_TEXT_BYTES));
        let err = parse(&text).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("larger than 1048576 bytes"), "{err:?}");
    }

    #[test]
    fn a_second_document_is_refused() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(
            (err.line, err.message.as_str()),
            (2, "only one YAML document is allowed")
        );
    }
}
