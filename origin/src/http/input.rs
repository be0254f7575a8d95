//! Request-body validation producing the 422 `details` shape of origin-api.md §2.5
//! (`{field: [messages]}`, nested by index for lists, `"Unknown field."` for unknown keys).

use serde_json::{json, Map, Value};

use crate::error::AppError;

/// Collects field errors while extracting typed values from a JSON object.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Starts validating `value` as an object; keys outside `allowed` are reported as unknown.
    pub fn new(value: &'a Value, allowed: &[&str]) -> Result<Fields<'a>, AppError> {
        let Some(obj) = value.as_object() else {
            return Err(AppError::Validation(
                json!({"_schema": ["Invalid input type."]}),
            ));
        };
        let mut fields = Fields {
            obj,
            errors: Map::new(),
        };
        for key in obj.keys() {
            if !allowed.contains(&key.as_str()) {
                fields.error(key, "Unknown field.");
            }
        }
        Ok(fields)
    }

    /// Like [`Fields::new`] for one element of a list: a non-object fails with the errors to
    /// nest under its index (see [`Fields::nested`]) instead of a 422.
    pub fn item(value: &'a Value, allowed: &[&str]) -> Result<Fields<'a>, Map<String, Value>> {
        Fields::new(value, allowed).map_err(|_| {
            let mut m = Map::new();
            m.insert("_schema".into(), json!(["Invalid input type."]));
            m
        })
    }

    pub fn error(&mut self, field: &str, message: &str) {
        let entry = self
            .errors
            .entry(field.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = entry {
            list.push(Value::String(message.to_string()));
        }
    }

    /// Records nested errors (for example `results.0.provider`).
    pub fn nested(&mut self, field: &str, index: usize, errors: Map<String, Value>) {
        let entry = self
            .errors
            .entry(field.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = entry {
            map.insert(index.to_string(), Value::Object(errors));
        }
    }

    fn present(&mut self, name: &str, required: bool) -> Option<&'a Value> {
        match self.obj.get(name) {
            None => {
                if required {
                    self.error(name, "Missing data for required field.");
                }
                None
            }
            Some(Value::Null) => {
                if required {
                    self.error(name, "Field may not be null.");
                }
                None
            }
            Some(v) => Some(v),
        }
    }

    /// A string whose length in characters lies within `len` (when given).
    pub fn string(
        &mut self,
        name: &str,
        required: bool,
        len: Option<(usize, usize)>,
    ) -> Option<String> {
        let v = self.present(name, required)?;
        let Some(s) = v.as_str() else {
            self.error(name, "Not a valid string.");
            return None;
        };
        if let Some((min, max)) = len {
            let n = s.chars().count();
            if n < min || n > max {
                self.error(name, &format!("Length must be between {min} and {max}."));
                return None;
            }
        }
        Some(s.to_string())
    }

    pub fn one_of(&mut self, name: &str, required: bool, choices: &[&str]) -> Option<String> {
        let s = self.string(name, required, None)?;
        if choices.contains(&s.as_str()) {
            Some(s)
        } else {
            self.error(name, &format!("Must be one of: {}.", choices.join(", ")));
            None
        }
    }

    pub fn int(&mut self, name: &str, required: bool, min: Option<i64>) -> Option<i64> {
        let v = self.present(name, required)?;
        let n = match v {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            _ => None,
        };
        let Some(n) = n else {
            self.error(name, "Not a valid integer.");
            return None;
        };
        if let Some(min) = min {
            if n < min {
                self.error(name, &format!("Must be greater than or equal to {min}."));
                return None;
            }
        }
        Some(n)
    }

    pub fn number(&mut self, name: &str, required: bool) -> Option<f64> {
        let v = self.present(name, required)?;
        match v.as_f64() {
            Some(f) if v.is_number() => Some(f),
            _ => {
                self.error(name, "Not a valid number.");
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str, required: bool) -> Option<bool> {
        let v = self.present(name, required)?;
        match v.as_bool() {
            Some(b) => Some(b),
            None => {
                self.error(name, "Not a valid boolean.");
                None
            }
        }
    }

    pub fn array(&mut self, name: &str, required: bool) -> Option<&'a Vec<Value>> {
        let v = self.present(name, required)?;
        match v.as_array() {
            Some(a) => Some(a),
            None => {
                self.error(name, "Not a valid list.");
                None
            }
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The collected errors (for nesting into a parent).
    pub fn into_errors(self) -> Map<String, Value> {
        self.errors
    }

    /// `Err(422)` with every collected error, or `Ok`.
    pub fn finish(self) -> Result<(), AppError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(Value::Object(self.errors)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_all_errors() {
        let v = json!({"username": "ab", "password": 5, "extra": 1});
        let mut f = Fields::new(&v, &["username", "password", "token"]).unwrap();
        assert!(f.string("username", true, Some((3, 50))).is_none());
        assert!(f.string("password", true, None).is_none());
        assert!(f.string("token", false, None).is_none());
        let AppError::Validation(details) = f.finish().unwrap_err() else {
            panic!()
        };
        assert_eq!(details["extra"], json!(["Unknown field."]));
        assert_eq!(
            details["username"],
            json!(["Length must be between 3 and 50."])
        );
        assert_eq!(details["password"], json!(["Not a valid string."]));
        assert!(details.get("token").is_none());
    }
}
