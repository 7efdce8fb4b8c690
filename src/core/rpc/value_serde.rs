//! serde for XML-RPC [`Value`]s: any `Serialize` type becomes a `Value` and any `Deserialize` type is
//! read back from one, so service definitions use plain Rust structs and tuples.
//!
//! Mapping (both ways):
//! - integers → `Int` (an unsigned value above `i64::MAX`, or a negative value for an unsigned field,
//!   is an error, never a wrap-around); `bool` → `Bool`; `f32`/`f64` → `Double` (finite only);
//!   `char`/`&str`/`String` → `String`; bytes (`serde_bytes`-style, `Vec<u8>` via [`Bytes`]) → `Base64`;
//! - `None` and `()` → `Nil`; a struct member that is `None` is left out (absent and `nil` both read as
//!   `None`, which is what slixmpp and most XML-RPC peers send);
//! - structs and maps with string keys → `Struct` (member order kept); sequences and tuples → `Array`;
//! - unit enum variants → `String` (their name); other enum variants → `{name: content}` structs;
//! - [`DateTime`] ↔ `dateTime.iso8601`.
//!
//! A tuple also reads from exactly as many values: that is how method parameters (a list) become a
//! typed tuple in [`crate::core::services`], and why a wrong arity is an error, not a silent default.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};
use serde::Deserialize;

use super::xmlrpc::Value;

/// The serde name that marks a [`DateTime`] newtype, so the (de)serializer maps it to
/// `dateTime.iso8601` instead of a string.
const DATETIME_MARKER: &str = "$pmn::xmlrpc::DateTime";

/// Why a value did not convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

impl ser::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

impl de::Error for ValueError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        ValueError(msg.to_string())
    }
}

/// An XML-RPC `dateTime.iso8601`, kept as the text the peer wrote (`YYYYMMDDTHH:MM:SS`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DateTime(pub String);

impl Serialize for DateTime {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(DATETIME_MARKER, &self.0)
    }
}

impl<'de> Deserialize<'de> for DateTime {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DateTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dateTime.iso8601")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime, E> {
                Ok(DateTime(v.to_owned()))
            }
            fn visit_newtype_struct<D: de::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<DateTime, D::Error> {
                String::deserialize(d).map(DateTime)
            }
        }
        d.deserialize_newtype_struct(DATETIME_MARKER, V)
    }
}

/// Bytes that travel as `base64` (a plain `Vec<u8>` would be an array of ints).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("base64 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// Converts any serializable value into an XML-RPC [`Value`].
///
/// ```
/// use pmn::core::rpc::xmlrpc::{from_value, to_value, Value};
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Volume { level: u8, muted: bool }
/// let v = to_value(&Volume { level: 30, muted: false }).unwrap();
/// assert_eq!(v.get("level"), Some(&Value::Int(30)));
/// assert_eq!(from_value::<Volume>(v).unwrap(), Volume { level: 30, muted: false });
/// ```
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, ValueError> {
    value.serialize(ValueSerializer)
}

/// Reads a deserializable type from an XML-RPC [`Value`].
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, ValueError> {
    T::deserialize(value)
}

// ---- Serializer ------------------------------------------------------------------------------

struct ValueSerializer;

fn int<T: TryInto<i64> + fmt::Display + Copy>(v: T) -> Result<Value, ValueError> {
    v.try_into()
        .map(Value::Int)
        .map_err(|_| ValueError(format!("{v} does not fit a 64-bit XML-RPC integer")))
}

impl ser::Serializer for ValueSerializer {
    type Ok = Value;
    type Error = ValueError;
    type SerializeSeq = SeqSer;
    type SerializeTuple = SeqSer;
    type SerializeTupleStruct = SeqSer;
    type SerializeTupleVariant = VariantSer<SeqSer>;
    type SerializeMap = MapSer;
    type SerializeStruct = MapSer;
    type SerializeStructVariant = VariantSer<MapSer>;

    fn serialize_bool(self, v: bool) -> Result<Value, ValueError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Value, ValueError> {
        int(v)
    }
    fn serialize_f32(self, v: f32) -> Result<Value, ValueError> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, ValueError> {
        Value::double(v).map_err(|e| ValueError(e.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, ValueError> {
        Ok(Value::String(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, ValueError> {
        Ok(Value::Base64(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, ValueError> {
        Ok(Value::Nil)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Value, ValueError> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, ValueError> {
        Ok(Value::Nil)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Value, ValueError> {
        Ok(Value::Nil)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Value, ValueError> {
        Ok(Value::String(variant.to_owned()))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<Value, ValueError> {
        let inner = v.serialize(self)?;
        match (name, inner) {
            (DATETIME_MARKER, Value::String(s)) => Ok(Value::DateTime(s)),
            (_, inner) => Ok(inner),
        }
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<Value, ValueError> {
        Ok(Value::Struct(vec![(
            variant.to_owned(),
            v.serialize(self)?,
        )]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqSer, ValueError> {
        Ok(SeqSer(Vec::with_capacity(len.unwrap_or(0).min(1024))))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqSer, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqSer, ValueError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantSer<SeqSer>, ValueError> {
        Ok(VariantSer(variant, self.serialize_seq(Some(len))?))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapSer, ValueError> {
        Ok(MapSer(Vec::new(), None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapSer, ValueError> {
        self.serialize_map(None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<VariantSer<MapSer>, ValueError> {
        Ok(VariantSer(variant, self.serialize_map(None)?))
    }
}

#[doc(hidden)]
pub struct SeqSer(Vec<Value>);

impl ser::SerializeSeq for SeqSer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        self.0.push(v.serialize(ValueSerializer)?);
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Array(self.0))
    }
}

impl ser::SerializeTuple for SeqSer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for SeqSer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        ser::SerializeSeq::end(self)
    }
}

#[doc(hidden)]
pub struct MapSer(Vec<(String, Value)>, Option<String>);

impl ser::SerializeMap for MapSer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), ValueError> {
        match key.serialize(ValueSerializer)? {
            Value::String(k) => {
                self.1 = Some(k);
                Ok(())
            }
            other => Err(ValueError(format!(
                "struct member names must be strings, got {other:?}"
            ))),
        }
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        let key = self
            .1
            .take()
            .ok_or_else(|| ValueError("map value without a key".into()))?;
        self.0.push((key, v.serialize(ValueSerializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Struct(self.0))
    }
}

impl ser::SerializeStruct for MapSer {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        let value = v.serialize(ValueSerializer)?;
        // Absent rather than nil: peers that lack the nil extension still read the struct.
        if !value.is_nil() {
            self.0.push((key.to_owned(), value));
        }
        Ok(())
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Struct(self.0))
    }
}

#[doc(hidden)]
pub struct VariantSer<S>(&'static str, S);

impl ser::SerializeTupleVariant for VariantSer<SeqSer> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), ValueError> {
        ser::SerializeSeq::serialize_element(&mut self.1, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Struct(vec![(
            self.0.to_owned(),
            ser::SerializeSeq::end(self.1)?,
        )]))
    }
}

impl ser::SerializeStructVariant for VariantSer<MapSer> {
    type Ok = Value;
    type Error = ValueError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), ValueError> {
        ser::SerializeStruct::serialize_field(&mut self.1, key, v)
    }
    fn end(self) -> Result<Value, ValueError> {
        Ok(Value::Struct(vec![(
            self.0.to_owned(),
            ser::SerializeStruct::end(self.1)?,
        )]))
    }
}

// ---- Deserializer ----------------------------------------------------------------------------

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Int(_) => "int",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Double(_) => "double",
        Value::Base64(_) => "base64",
        Value::DateTime(_) => "dateTime.iso8601",
        Value::Struct(_) => "struct",
        Value::Array(_) => "array",
        Value::Nil => "nil",
    }
}

fn unexpected(v: &Value, wanted: &str) -> ValueError {
    ValueError(format!("expected {wanted}, got {}", kind(v)))
}

macro_rules! de_int {
    ($name:ident, $visit:ident, $t:ty) => {
        fn $name<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
            match self {
                Value::Int(i) => {
                    let v = <$t>::try_from(i).map_err(|_| {
                        ValueError(format!("{i} is out of range for {}", stringify!($t)))
                    })?;
                    visitor.$visit(v)
                }
                other => Err(unexpected(&other, "an int")),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for Value {
    type Error = ValueError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Int(i) => visitor.visit_i64(i),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::String(s) | Value::DateTime(s) => visitor.visit_string(s),
            Value::Double(d) => visitor.visit_f64(d),
            Value::Base64(b) => visitor.visit_byte_buf(b),
            Value::Nil => visitor.visit_unit(),
            Value::Array(items) => visitor.visit_seq(SeqDe(items.into_iter())),
            Value::Struct(members) => visitor.visit_map(MapDe(members.into_iter(), None)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Bool(b) => visitor.visit_bool(b),
            other => Err(unexpected(&other, "a boolean")),
        }
    }

    de_int!(deserialize_i8, visit_i8, i8);
    de_int!(deserialize_i16, visit_i16, i16);
    de_int!(deserialize_i32, visit_i32, i32);
    de_int!(deserialize_i64, visit_i64, i64);
    de_int!(deserialize_u8, visit_u8, u8);
    de_int!(deserialize_u16, visit_u16, u16);
    de_int!(deserialize_u32, visit_u32, u32);
    de_int!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Double(d) => visitor.visit_f64(d),
            // An integer is a fine double (slixmpp writes 3 for 3.0 when the app passed an int).
            Value::Int(i) => visitor.visit_f64(i as f64),
            other => Err(unexpected(&other, "a double")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::String(s) => visitor.visit_string(s),
            other => Err(unexpected(&other, "a string")),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_byte_buf(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Base64(b) => visitor.visit_byte_buf(b),
            other => Err(unexpected(&other, "base64")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Nil => visitor.visit_none(),
            other => visitor.visit_some(other),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Nil => visitor.visit_unit(),
            // No parameters at all: the unit of a method that takes none.
            Value::Array(items) if items.is_empty() => visitor.visit_unit(),
            other => Err(unexpected(&other, "nil")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match (name, self) {
            (DATETIME_MARKER, Value::DateTime(s)) => visitor.visit_string(s),
            (DATETIME_MARKER, other) => Err(unexpected(&other, "a dateTime.iso8601")),
            (_, other) => visitor.visit_newtype_struct(other),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Array(items) => visitor.visit_seq(SeqDe(items.into_iter())),
            other => Err(unexpected(&other, "an array")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::Array(items) if items.len() == len => {
                visitor.visit_seq(SeqDe(items.into_iter()))
            }
            Value::Array(items) => Err(ValueError(format!(
                "expected {len} value(s), got {}",
                items.len()
            ))),
            other => Err(unexpected(&other, "an array")),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        match self {
            Value::Struct(members) => visitor.visit_map(MapDe(members.into_iter(), None)),
            other => Err(unexpected(&other, "a struct")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        match self {
            Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            Value::Struct(mut members) if members.len() == 1 => {
                let (variant, value) = members.remove(0);
                visitor.visit_enum(EnumDe(variant, value))
            }
            other => Err(unexpected(&other, "an enum (string or one-member struct)")),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ValueError> {
        visitor.visit_unit()
    }
}

impl<'de> IntoDeserializer<'de, ValueError> for Value {
    type Deserializer = Value;
    fn into_deserializer(self) -> Value {
        self
    }
}

struct SeqDe(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for SeqDe {
    type Error = ValueError;
    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ValueError> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapDe(std::vec::IntoIter<(String, Value)>, Option<Value>);

impl<'de> de::MapAccess<'de> for MapDe {
    type Error = ValueError;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ValueError> {
        match self.0.next() {
            Some((k, v)) => {
                self.1 = Some(v);
                seed.deserialize(Value::String(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ValueError> {
        let v = self
            .1
            .take()
            .ok_or_else(|| ValueError("struct value without a name".into()))?;
        seed.deserialize(v)
    }
}

struct EnumDe(String, Value);

impl<'de> de::EnumAccess<'de> for EnumDe {
    type Error = ValueError;
    type Variant = Value;
    fn variant_seed<V: de::DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Value), ValueError> {
        Ok((seed.deserialize(Value::String(self.0))?, self.1))
    }
}

impl<'de> de::VariantAccess<'de> for Value {
    type Error = ValueError;
    fn unit_variant(self) -> Result<(), ValueError> {
        match self {
            Value::Nil => Ok(()),
            other => Err(unexpected(&other, "nil")),
        }
    }
    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, ValueError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ValueError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Kind {
        Video,
        Audio,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Item {
        id: String,
        kind: Kind,
        size: u64,
        rating: f64,
        ok: bool,
        title: Option<String>,
        thumb: Bytes,
        when: DateTime,
        tags: Vec<String>,
    }

    fn item() -> Item {
        Item {
            id: "v1".into(),
            kind: Kind::Video,
            size: 1 << 40,
            rating: 4.5,
            ok: true,
            title: None,
            thumb: Bytes(vec![0, 1, 255]),
            when: DateTime("20261125T21:00:00".into()),
            tags: vec!["a".into()],
        }
    }

    #[test]
    fn structs_round_trip_through_values_and_the_wire() {
        let v = to_value(&item()).expect("to value");
        assert_eq!(v.get("kind"), Some(&Value::String("video".into())));
        assert_eq!(v.get("thumb"), Some(&Value::Base64(vec![0, 1, 255])));
        assert_eq!(
            v.get("when"),
            Some(&Value::DateTime("20261125T21:00:00".into()))
        );
        assert!(v.get("title").is_none(), "None is left out");
        assert_eq!(from_value::<Item>(v.clone()).expect("back"), item());
        // Through XML and back.
        let call = super::super::xmlrpc::MethodCall::new("x.y", vec![v]);
        let el = super::super::xmlrpc::call_to_query(&call).expect("encodes");
        let parsed =
            super::super::xmlrpc::parse_query(&el, &super::super::xmlrpc::Limits::default())
                .expect("parse");
        let super::super::xmlrpc::RpcPayload::Call(mut back) = parsed else {
            panic!("not a call")
        };
        assert_eq!(
            from_value::<Item>(back.params.remove(0)).expect("typed"),
            item()
        );
    }

    #[test]
    fn tuples_check_their_arity_and_types() {
        let params = Value::Array(vec![Value::String("u".into()), Value::Int(3)]);
        assert_eq!(
            from_value::<(String, u32)>(params.clone()).expect("ok"),
            ("u".to_string(), 3)
        );
        assert!(from_value::<(String,)>(params.clone()).is_err());
        assert!(from_value::<(String, u32, bool)>(params.clone()).is_err());
        assert!(from_value::<(u32, String)>(params).is_err());
        assert_eq!(from_value::<()>(Value::Array(vec![])), Ok(()));
        assert!(from_value::<()>(Value::Array(vec![Value::Nil])).is_err());
        assert_eq!(to_value(&()), Ok(Value::Nil));
    }

    #[test]
    fn out_of_range_and_wrong_kinds_are_errors_not_wraps() {
        assert!(from_value::<u8>(Value::Int(256)).is_err());
        assert!(from_value::<u64>(Value::Int(-1)).is_err());
        assert!(to_value(&u64::MAX).is_err());
        assert!(to_value(&f64::NAN).is_err());
        assert!(from_value::<String>(Value::Int(1)).is_err());
        assert!(from_value::<bool>(Value::String("true".into())).is_err());
        assert!(from_value::<Kind>(Value::String("radio".into())).is_err());
        assert!(from_value::<DateTime>(Value::String("2026".into())).is_err());
        assert!(from_value::<Bytes>(Value::String("AAE=".into())).is_err());
        // A missing required member.
        let mut v = to_value(&item()).expect("to value");
        if let Value::Struct(members) = &mut v {
            members.retain(|(k, _)| k != "id");
        }
        assert!(from_value::<Item>(v).is_err());
        // Nil reads as None, and an int as a double.
        assert_eq!(from_value::<Option<u8>>(Value::Nil), Ok(None));
        assert_eq!(from_value::<f64>(Value::Int(2)), Ok(2.0));
    }
}
