//! YAML (and JSON, which YAML 1.2 contains) to JSON values, keeping the line of every
//! node so that errors and policy findings can point at `file:line`.
//!
//! CloudFormation short tags (`!Ref`, `!GetAtt a.b`, `!Sub` …) become the JSON long form
//! (`{"Ref": …}`, `{"Fn::GetAtt": [a, b]}`, `{"Fn::Sub": …}`), which is what CloudFormation
//! itself evaluates and what policies see.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A parsed document: the value and, for every JSON pointer, the 1-based line it starts on.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    lines: HashMap<String, usize>,
}

impl Document {
    /// The line of the node at `pointer`, or of its nearest ancestor that has one.
    pub fn line_of(&self, pointer: &str) -> Option<usize> {
        let mut p = pointer;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
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
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| YamlError {
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_string(),
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    Ok(Document {
        value: builder.root.unwrap_or(Value::Null),
        lines: builder.lines,
    })
}

pub(crate) fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

enum Frame {
    Seq {
        items: Vec<Value>,
        tag: Option<Tag>,
        anchor: usize,
        pointer: String,
        line: usize,
    },
    Map {
        map: Map<String, Value>,
        key: Option<(String, usize)>,
        tag: Option<Tag>,
        anchor: usize,
        pointer: String,
        line: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    lines: HashMap<String, usize>,
    anchors: HashMap<usize, Value>,
    error: Option<YamlError>,
}

impl Builder {
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

    /// Pointer and line for the next child of the innermost frame. `None` when the next
    /// scalar is a mapping key rather than a value.
    fn child_slot(&self, mark: Marker) -> Option<(String, usize)> {
        match self.stack.last() {
            None => Some((String::new(), mark.line())),
            Some(Frame::Seq { items, pointer, .. }) => {
                Some((format!("{pointer}/{}", items.len()), mark.line()))
            }
            Some(Frame::Map { key, pointer, .. }) => key
                .as_ref()
                .map(|(k, line)| (format!("{pointer}/{}", escape_pointer(k)), *line)),
        }
    }

    fn push_value(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => match key.take() {
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
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
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

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    if tag.is_some() {
                        self.fail(mark, "a mapping key cannot carry a tag".into());
                    } else if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some((text, mark.line()));
                    }
                    return;
                }
                let Some((pointer, line)) = self.child_slot(mark) else {
                    return;
                };
                self.lines.insert(pointer, line);
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
                self.push_value(value, anchor, mark);
            }
            Event::SequenceStart(anchor, tag) => self.open(mark, anchor, tag, true),
            Event::MappingStart(anchor, tag) => self.open(mark, anchor, tag, false),
            Event::SequenceEnd | Event::MappingEnd => self.close(mark),
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(value) => {
                    if self.expecting_key() {
                        return self.fail(mark, "an alias cannot be a mapping key".into());
                    }
                    if let Some((pointer, line)) = self.child_slot(mark) {
                        self.lines.insert(pointer, line);
                    }
                    self.push_value(value, 0, mark);
                }
                None => self.fail(mark, "alias to an unknown anchor".into()),
            },
            Event::DocumentStart if self.root.is_some() => {
                self.fail(mark, "only one YAML document is allowed".into())
            }
            _ => {}
        }
    }
}

impl Builder {
    fn open(&mut self, mark: Marker, anchor: usize, tag: Option<Tag>, seq: bool) {
        if self.expecting_key() {
            return self.fail(mark, "a mapping key must be a plain scalar".into());
        }
        let Some((pointer, line)) = self.child_slot(mark) else {
            return;
        };
        self.lines.insert(pointer.clone(), line);
        self.stack.push(if seq {
            Frame::Seq {
                items: Vec::new(),
                tag,
                anchor,
                pointer,
                line,
            }
        } else {
            Frame::Map {
                map: Map::new(),
                key: None,
                tag,
                anchor,
                pointer,
                line,
            }
        });
    }

    fn close(&mut self, mark: Marker) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        let (value, tag, anchor, line) = match frame {
            Frame::Seq {
                items,
                tag,
                anchor,
                line,
                ..
            } => (Value::Array(items), tag, anchor, line),
            Frame::Map {
                map,
                tag,
                anchor,
                line,
                ..
            } => (Value::Object(map), tag, anchor, line),
        };
        let value = match tag {
            Some(tag) => match apply_tag(&tag, value) {
                Ok(v) => v,
                Err(e) => return self.fail_at(line, 1, e),
            },
            None => value,
        };
        self.push_value(value, anchor, mark);
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
}
