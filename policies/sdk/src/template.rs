//! The template model: a CloudFormation template in JSON long form, its resources, and
//! the stack it is deployed as. The input and the resolver both build on it.

use serde_json::{Map, Value};

use crate::pointer;

/// The stack the template is deployed as (for `AWS::StackName`, `AWS::Region`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stack<'a> {
    pub name: Option<&'a str>,
    pub region: Option<&'a str>,
}

/// A CloudFormation template in JSON long form.
#[derive(Clone, Copy, Debug)]
pub struct Template<'a> {
    root: &'a Map<String, Value>,
    resources: &'a Map<String, Value>,
}

impl<'a> Template<'a> {
    /// Checks the shape CloudFormation itself insists on: a `Resources` object whose
    /// entries are objects with a string `Type` and, if present, object `Properties`.
    pub fn parse(value: &'a Value) -> Result<Self, String> {
        let root = value.as_object().ok_or("template must be a JSON object")?;
        let resources = root
            .get("Resources")
            .and_then(Value::as_object)
            .ok_or("template has no `Resources` object")?;
        for (id, res) in resources {
            let res = res
                .as_object()
                .ok_or_else(|| format!("resource `{id}` must be an object"))?;
            if !res.get("Type").is_some_and(Value::is_string) {
                return Err(format!("resource `{id}` has no string `Type`"));
            }
            if res.get("Properties").is_some_and(|p| !p.is_object()) {
                return Err(format!(
                    "resource `{id}` has `Properties` that is not an object"
                ));
            }
        }
        for section in ["Parameters", "Mappings", "Conditions"] {
            if root.get(section).is_some_and(|s| !s.is_object()) {
                return Err(format!("template `{section}` must be an object"));
            }
        }
        Ok(Template { root, resources })
    }

    pub fn root(&self) -> &'a Map<String, Value> {
        self.root
    }

    /// Resources in document order.
    pub fn resources(&self) -> impl Iterator<Item = Resource<'a>> + 'a {
        self.resources
            .iter()
            .filter_map(|(id, v)| Resource::new(id, v))
    }

    /// Resources of one type, in document order.
    pub fn resources_of_type(&self, kind: &'a str) -> impl Iterator<Item = Resource<'a>> + 'a {
        self.resources().filter(move |r| r.kind == kind)
    }

    pub fn resource(&self, id: &str) -> Option<Resource<'a>> {
        let (id, v) = self.resources.get_key_value(id)?;
        Resource::new(id, v)
    }

    /// The declaration of a template parameter.
    pub fn parameter(&self, name: &str) -> Option<&'a Map<String, Value>> {
        self.section("Parameters")?.get(name)?.as_object()
    }

    pub fn mappings(&self) -> Option<&'a Map<String, Value>> {
        self.section("Mappings")
    }

    fn section(&self, name: &str) -> Option<&'a Map<String, Value>> {
        self.root.get(name)?.as_object()
    }
}

/// One resource: logical id, type, properties, condition, and where it sits.
#[derive(Clone, Debug)]
pub struct Resource<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub properties: Option<&'a Map<String, Value>>,
    pub condition: Option<&'a str>,
    /// `/Resources/<id>`
    pub pointer: String,
}

impl<'a> Resource<'a> {
    fn new(id: &'a str, value: &'a Value) -> Option<Self> {
        let obj = value.as_object()?;
        Some(Resource {
            id,
            kind: obj.get("Type")?.as_str()?,
            properties: obj.get("Properties").and_then(Value::as_object),
            condition: obj.get("Condition").and_then(Value::as_str),
            pointer: pointer::child("/Resources", id),
        })
    }

    /// A property's raw value and its pointer, `/Resources/<id>/Properties/<name>`.
    pub fn property(&self, name: &str) -> Option<(&'a Value, String)> {
        let value = self.properties?.get(name)?;
        Some((value, self.property_pointer(name)))
    }

    pub fn property_pointer(&self, name: &str) -> String {
        pointer::child(&self.properties_pointer(), name)
    }

    pub fn properties_pointer(&self) -> String {
        pointer::child(&self.pointer, "Properties")
    }
}
