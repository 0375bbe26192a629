//! Reads `AION_WEBHOOKS_*` variables into a serde struct: each variable is
//! one field (the name without the prefix, lower case), its text parsed
//! into the field's type, and a value that does not parse is refused with
//! the variable's name. An empty value counts as unset. Variables no field knows are returned, so the
//! caller can warn about a misspelt one.

use std::cell::RefCell;
use std::rc::Rc;

use serde::de::value::{Error, MapDeserializer, StringDeserializer};
use serde::de::{self, Error as _, IntoDeserializer, Visitor};

/// The prefix every variable of the engine's carries.
pub const PREFIX: &str = "AION_WEBHOOKS_";

/// `T` from the `AION_WEBHOOKS_*` variables among `vars`, and the names of
/// those no field of `T` took.
pub fn from_vars<T: de::DeserializeOwned>(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(T, Vec<String>), String> {
    let unknown = Rc::new(RefCell::new(Vec::new()));
    let pairs: Vec<(String, Value)> = vars
        .into_iter()
        .filter(|(_, text)| !text.trim().is_empty())
        .filter_map(|(name, text)| {
            let field = name.strip_prefix(PREFIX)?.to_ascii_lowercase();
            let value = Value {
                name,
                text,
                unknown: unknown.clone(),
            };
            Some((field, value))
        })
        .collect();
    let map = MapDeserializer::<_, Error>::new(pairs.into_iter());
    let parsed = T::deserialize(map).map_err(|e| e.to_string())?;
    let unknown = unknown.borrow().clone();
    Ok((parsed, unknown))
}

/// One variable's text, parsed as the field asks.
struct Value {
    name: String,
    text: String,
    unknown: Rc<RefCell<Vec<String>>>,
}

impl Value {
    fn refuse(&self, expected: &str) -> Error {
        Error::custom(format!(
            "{}={:?}: expected {expected}",
            self.name, self.text
        ))
    }

    fn parse<N: std::str::FromStr>(&self, expected: &str) -> Result<N, Error> {
        self.text.trim().parse().map_err(|_| self.refuse(expected))
    }
}

impl IntoDeserializer<'_, Error> for Value {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_string(self.text)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => visitor.visit_bool(true),
            "0" | "false" | "off" | "no" => visitor.visit_bool(false),
            _ => Err(self.refuse("on or off (also true/false, 1/0, yes/no)")),
        }
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u32(self.parse("a whole number")?)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_u64(self.parse("a whole number")?)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let text: StringDeserializer<Error> =
            self.text.trim().to_ascii_lowercase().into_deserializer();
        de::Deserializer::deserialize_enum(text, name, variants, visitor)
            .map_err(|_| self.refuse(&format!("one of {}", variants.join(", "))))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.unknown.borrow_mut().push(self.name);
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
    }
}
