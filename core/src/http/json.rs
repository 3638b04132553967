//! JSON request bodies that hold clients to the document's types.
//!
//! poem-openapi's `Json` reads a number or a boolean sent for a string field as its text
//! (`"name": false` becomes the name "false"), and takes `null` for a field with a default
//! as if the field were absent, though the document does not say it may be null.
//! [`JsonBody`] refuses both with a 400 naming the field, and otherwise parses exactly as
//! `Json` does; the document is the same.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

/// A JSON request body whose string fields must be JSON strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonBody<T>(pub T);

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for JsonBody<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        <poem_openapi::payload::Json<T> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON + 'static> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|err| ParseRequestPayloadError {
                reason: err.to_string(),
            })?
        };
        if let Some((field, wanted)) = shape_of::<T>().mistyped(&value, String::new()) {
            return Err(ParseRequestPayloadError {
                reason: format!("`{field}` must be {wanted}"),
            }
            .into());
        }
        let value = T::parse_from_json(Some(value)).map_err(|err| ParseRequestPayloadError {
            reason: err.into_message(),
        })?;
        Ok(Self(value))
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON + 'static);

/// Where a body's strings are, as far as they can be told from the schema.
#[derive(Debug)]
enum Shape {
    Text,
    List(Box<Shape>),
    /// Each field, and whether the document lets it be `null`.
    Fields(Vec<(&'static str, Shape, bool)>),
    /// Anything else: numbers, booleans, free-form objects, unions. poem-openapi checks
    /// those itself.
    Other,
}

/// The shape of `T`'s schema, worked out once per type.
fn shape_of<T: Type + 'static>() -> Arc<Shape> {
    static SHAPES: OnceLock<RwLock<HashMap<TypeId, Arc<Shape>>>> = OnceLock::new();
    let shapes = SHAPES.get_or_init(Default::default);
    let id = TypeId::of::<T>();
    if let Some(shape) = shapes.read().ok().and_then(|s| s.get(&id).cloned()) {
        return shape;
    }
    let mut registry = Registry::new();
    T::register(&mut registry);
    let shape = Arc::new(Shape::of_ref(&T::schema_ref(), &registry, 0));
    if let Ok(mut shapes) = shapes.write() {
        shapes.insert(id, shape.clone());
    }
    shape
}

impl Shape {
    /// Deep enough for any body Harmony takes; a recursive schema stops here.
    const MAX_DEPTH: usize = 12;

    fn of_ref(schema: &MetaSchemaRef, registry: &Registry, depth: usize) -> Shape {
        match schema {
            MetaSchemaRef::Inline(schema) => Shape::of(schema, registry, depth),
            MetaSchemaRef::Reference(name) => match registry.schemas.get(name) {
                Some(schema) => Shape::of(schema, registry, depth),
                None => Shape::Other,
            },
        }
    }

    fn of(schema: &MetaSchema, registry: &Registry, depth: usize) -> Shape {
        if depth > Self::MAX_DEPTH {
            return Shape::Other;
        }
        // A field's `allOf` wraps the referenced schema with its description and
        // nullability, which say nothing of its shape.
        if !schema.all_of.is_empty() {
            return schema
                .all_of
                .iter()
                .map(|member| Shape::of_ref(member, registry, depth + 1))
                .find(|shape| !matches!(shape, Shape::Other))
                .unwrap_or(Shape::Other);
        }
        match schema.ty {
            "string" => Shape::Text,
            "array" => match &schema.items {
                Some(items) => Shape::List(Box::new(Shape::of_ref(items, registry, depth + 1))),
                None => Shape::Other,
            },
            "object" if !schema.properties.is_empty() => Shape::Fields(
                schema
                    .properties
                    .iter()
                    .map(|(name, field)| {
                        let shape = Shape::of_ref(field, registry, depth + 1);
                        (*name, shape, nullable(field))
                    })
                    .collect(),
            ),
            _ => Shape::Other,
        }
    }

    /// The path of the first number or boolean sent where a string belongs, or of the
    /// first `null` where none may be, with what belongs there.
    fn mistyped(&self, value: &Value, at: String) -> Option<(String, &'static str)> {
        match (self, value) {
            (Shape::Text, Value::Number(_) | Value::Bool(_)) => Some((at, "a JSON string")),
            (Shape::List(item), Value::Array(values)) => values
                .iter()
                .enumerate()
                .find_map(|(i, v)| item.mistyped(v, format!("{at}[{i}]"))),
            (Shape::Fields(fields), Value::Object(object)) => {
                fields.iter().find_map(|(name, shape, nullable)| {
                    let path = if at.is_empty() {
                        (*name).to_owned()
                    } else {
                        format!("{at}.{name}")
                    };
                    match object.get(*name) {
                        Some(Value::Null) if !nullable => {
                            Some((path, "a value, not null (leave it out for the default)"))
                        }
                        Some(v) => shape.mistyped(v, path),
                        None => None,
                    }
                })
            }
            _ => None,
        }
    }
}

/// Whether a field's schema allows `null`: set on the field's own schema, or on the
/// member of its `allOf` that carries the field's description.
fn nullable(field: &MetaSchemaRef) -> bool {
    match field {
        MetaSchemaRef::Inline(schema) => {
            schema.nullable
                || schema
                    .all_of
                    .iter()
                    .any(|member| matches!(member, MetaSchemaRef::Inline(patch) if patch.nullable))
        }
        MetaSchemaRef::Reference(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::Object;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Object)]
    struct Inner {
        label: String,
        weight: i32,
    }

    #[derive(Debug, Object)]
    struct Outer {
        name: String,
        #[oai(default)]
        tags: Vec<String>,
        #[oai(nullable)]
        inner: Option<Inner>,
        #[oai(nullable)]
        count: Option<i64>,
    }

    #[test]
    fn mistyped_strings_and_forbidden_nulls_are_found_by_path() {
        let shape = shape_of::<Outer>();
        let found = |v: Value| shape.mistyped(&v, String::new()).map(|(at, _)| at);
        let ok = json!({"name": "Ana", "tags": ["a"], "count": 3});
        assert_eq!(found(ok), None);
        assert_eq!(found(json!({"name": false})).as_deref(), Some("name"));
        let item = json!({"name": "x", "tags": ["a", 7]});
        assert_eq!(found(item).as_deref(), Some("tags[1]"));
        let nested = json!({"name": "x", "inner": {"label": 1.5, "weight": 2}});
        assert_eq!(found(nested).as_deref(), Some("inner.label"));
        // `null` only where the document allows it.
        assert_eq!(
            found(json!({"name": "x", "inner": null, "count": null})),
            None
        );
        assert_eq!(found(json!({"name": null})).as_deref(), Some("name"));
        assert_eq!(
            found(json!({"name": "x", "tags": null})).as_deref(),
            Some("tags")
        );
        // Other mistakes are poem-openapi's to report.
        let number = json!({"name": "x", "inner": {"label": "y", "weight": "2"}});
        assert_eq!(found(number), None);
    }
}
