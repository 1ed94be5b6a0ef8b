//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into
//! the JSON object the same request would have carried as `application/json`.
//!
//! client-go typed clientsets (Helm 3/4 release storage, `kubectl create configmap|namespace|
//! secret`, typed deletes) send bodies in protobuf while accepting JSON answers. This module
//! turns such a body back into JSON so the rest of the server only ever handles JSON:
//!
//! - the envelope: the 4-byte magic `k8s\0` followed by a `runtime.Unknown` message
//!   (`typeMeta` = 1 with `apiVersion` = 1 and `kind` = 2, `raw` = 2, `contentEncoding` = 3,
//!   `contentType` = 4);
//! - the object in `raw`, chosen by `apiVersion`/`kind`: core/v1 `Secret`, `ConfigMap`,
//!   `Namespace`, `ServiceAccount`, and meta/v1 `DeleteOptions` (accepted under any
//!   `apiVersion`, because client-go tags it with the group version of the client that sends
//!   it: `v1`, `meta.k8s.io/v1`, `apps/v1`, ...), together with the meta/v1 types they embed
//!   (`ObjectMeta`, `OwnerReference`, `ManagedFieldsEntry`, `FieldsV1`, `Time`,
//!   `Preconditions`) and core/v1 `ObjectReference`, `LocalObjectReference`, `NamespaceSpec`,
//!   `NamespaceStatus`, `NamespaceCondition`.
//!
//! The JSON is shaped as `encoding/json` would shape the same Go object: camelCase field names,
//! `apiVersion` and `kind` from the envelope, `[]byte` as standard base64 with padding,
//! `metav1.Time` as RFC 3339 UTC to the second (`2025-01-01T00:00:00Z`; nanoseconds dropped
//! exactly as apimachinery drops them when unmarshalling protobuf), a zero `Time` omitted,
//! int64 as JSON numbers, maps as objects, `FieldsV1` as the JSON document it carries. Absent
//! fields, empty strings, empty byte strings and zero value-type numbers are omitted;
//! fields that are pointers in Go (`gracePeriodSeconds`, `immutable`, `orphanDependents`, ...)
//! are emitted whenever present on the wire, zero and `false` included; embedded messages
//! present on the wire are emitted even when empty (`"spec": {}`), as Go's JSON does.
//! Strings that are not valid UTF-8 get U+FFFD replacements, as Go's JSON encoder does.
//!
//! Each message is a small descriptor table (field number, JSON name, `Kind`); supporting
//! another kind is one more table plus one line in `KINDS`. Every field number was checked
//! against `k8s.io/api/core/v1/generated.proto`,
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/runtime/generated.proto`. Unknown fields of any wire type,
//! including groups, are skipped.
//!
//! Deliberately not done: encoding (the server answers in JSON), any kind not listed above
//! (they fail with [`ProtobufError::UnsupportedKind`]), lists, watch events, a non-empty
//! `contentEncoding`, and a `raw` whose `contentType` is anything but protobuf. No input
//! panics: malformed or truncated bodies return an error.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

/// The media type client-go uses for protobuf bodies.
pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: [u8; 4] = *b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with the `k8s\0` magic prefix.
    #[error("body is not Kubernetes protobuf: it does not start with the magic prefix k8s\\0")]
    NotKubernetesProtobuf,
    /// The body ends in the middle of a value.
    #[error("truncated Kubernetes protobuf body: {reason}")]
    Truncated {
        /// What was being read when the input ran out.
        reason: String,
    },
    /// The body is not a valid encoding of the object it announces.
    #[error("malformed Kubernetes protobuf body: {reason}")]
    Malformed {
        /// What is wrong, with the message and field it was found in.
        reason: String,
    },
    /// The envelope names an object this decoder has no table for.
    #[error("protobuf bodies of kind {kind:?} in apiVersion {api_version:?} are not supported")]
    UnsupportedKind {
        /// `apiVersion` from the envelope's `typeMeta`.
        api_version: String,
        /// `kind` from the envelope's `typeMeta`.
        kind: String,
    },
}

/// Decodes a Kubernetes protobuf body into its JSON form.
///
/// # Errors
///
/// [`ProtobufError::NotKubernetesProtobuf`] without the magic prefix,
/// [`ProtobufError::UnsupportedKind`] for a kind this module has no table for, and
/// [`ProtobufError::Truncated`] or [`ProtobufError::Malformed`] for a body that is not a valid
/// encoding.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(&MAGIC[..])
        .ok_or(ProtobufError::NotKubernetesProtobuf)?;
    let unknown = Unknown::parse(envelope)?;
    if !unknown.content_encoding.is_empty() {
        return Err(malformed(format!(
            "unsupported contentEncoding {:?}",
            unknown.content_encoding
        )));
    }
    if !unknown.content_type.is_empty() && unknown.content_type != CONTENT_TYPE {
        return Err(malformed(format!(
            "unsupported contentType {:?} for raw",
            unknown.content_type
        )));
    }
    let message = KINDS
        .iter()
        .find(|entry| {
            entry.kind == unknown.kind
                && (entry.api_versions.is_empty()
                    || entry.api_versions.contains(&unknown.api_version.as_str()))
        })
        .map(|entry| entry.message)
        .ok_or_else(|| ProtobufError::UnsupportedKind {
            api_version: unknown.api_version.clone(),
            kind: unknown.kind.clone(),
        })?;
    let mut object = decode_message(message, unknown.raw)?;
    object.insert("apiVersion".to_owned(), Value::String(unknown.api_version));
    object.insert("kind".to_owned(), Value::String(unknown.kind));
    Ok(Value::Object(object))
}

// ---------------------------------------------------------------------------------------------
// Descriptor tables.

/// How one field is encoded on the wire and rendered in JSON.
// `Bytes`, `Int32` and `Bool` are only used by the tests' table today; they are here so the next
// kind is a table entry and not a decoder change.
#[allow(dead_code)]
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `string`; omitted when empty (unless repeated).
    String,
    /// `bytes`, rendered as standard base64; omitted when empty (unless repeated).
    Bytes,
    /// `int64` of a Go value field: omitted when zero (unless repeated).
    Int64,
    /// `int64` of a Go pointer field: emitted whenever present, zero included.
    OptionalInt64,
    /// `int32` of a Go value field: omitted when zero (unless repeated).
    Int32,
    /// `bool` of a Go value field: omitted when false (unless repeated).
    Bool,
    /// `bool` of a Go pointer field: emitted whenever present, `false` included.
    OptionalBool,
    /// `metav1.Time` (`seconds` = 1, `nanos` = 2) as RFC 3339 UTC; zero time omitted.
    Time,
    /// An embedded message, rendered as an object.
    Message(&'static Message),
    /// `map<string, string>`: repeated entries with `key` = 1, `value` = 2.
    StringMap,
    /// `map<string, bytes>`: like [`Kind::StringMap`], values in base64.
    BytesMap,
    /// A message whose field 1 holds a JSON document (`metav1.FieldsV1`), rendered as that
    /// document; omitted when empty.
    RawJson,
}

/// One field of a message.
#[derive(Debug)]
struct Field {
    number: u64,
    json: &'static str,
    kind: Kind,
    repeated: bool,
}

/// A message: its proto name (for error messages) and its fields.
#[derive(Debug)]
struct Message {
    name: &'static str,
    fields: &'static [Field],
}

/// A top-level object this module decodes.
#[derive(Debug)]
struct KindEntry {
    /// Accepted `apiVersion`s; empty means any.
    api_versions: &'static [&'static str],
    kind: &'static str,
    message: &'static Message,
}

const fn one(number: u64, json: &'static str, kind: Kind) -> Field {
    Field {
        number,
        json,
        kind,
        repeated: false,
    }
}

const fn many(number: u64, json: &'static str, kind: Kind) -> Field {
    Field {
        number,
        json,
        kind,
        repeated: true,
    }
}

/// Objects decodable from a body's `raw`.
static KINDS: &[KindEntry] = &[
    KindEntry {
        api_versions: &["v1"],
        kind: "Secret",
        message: &SECRET,
    },
    KindEntry {
        api_versions: &["v1"],
        kind: "ConfigMap",
        message: &CONFIG_MAP,
    },
    KindEntry {
        api_versions: &["v1"],
        kind: "Namespace",
        message: &NAMESPACE,
    },
    KindEntry {
        api_versions: &["v1"],
        kind: "ServiceAccount",
        message: &SERVICE_ACCOUNT,
    },
    KindEntry {
        api_versions: &[],
        kind: "DeleteOptions",
        message: &DELETE_OPTIONS,
    },
];

// meta/v1 (k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto).

static OBJECT_META: Message = Message {
    name: "ObjectMeta",
    fields: &[
        one(1, "name", Kind::String),
        one(2, "generateName", Kind::String),
        one(3, "namespace", Kind::String),
        one(4, "selfLink", Kind::String),
        one(5, "uid", Kind::String),
        one(6, "resourceVersion", Kind::String),
        one(7, "generation", Kind::Int64),
        one(8, "creationTimestamp", Kind::Time),
        one(9, "deletionTimestamp", Kind::Time),
        one(10, "deletionGracePeriodSeconds", Kind::OptionalInt64),
        one(11, "labels", Kind::StringMap),
        one(12, "annotations", Kind::StringMap),
        many(13, "ownerReferences", Kind::Message(&OWNER_REFERENCE)),
        many(14, "finalizers", Kind::String),
        many(17, "managedFields", Kind::Message(&MANAGED_FIELDS_ENTRY)),
    ],
};

static OWNER_REFERENCE: Message = Message {
    name: "OwnerReference",
    fields: &[
        one(1, "kind", Kind::String),
        one(3, "name", Kind::String),
        one(4, "uid", Kind::String),
        one(5, "apiVersion", Kind::String),
        one(6, "controller", Kind::OptionalBool),
        one(7, "blockOwnerDeletion", Kind::OptionalBool),
    ],
};

static MANAGED_FIELDS_ENTRY: Message = Message {
    name: "ManagedFieldsEntry",
    fields: &[
        one(1, "manager", Kind::String),
        one(2, "operation", Kind::String),
        one(3, "apiVersion", Kind::String),
        one(4, "time", Kind::Time),
        one(6, "fieldsType", Kind::String),
        one(7, "fieldsV1", Kind::RawJson),
        one(8, "subresource", Kind::String),
    ],
};

static DELETE_OPTIONS: Message = Message {
    name: "DeleteOptions",
    fields: &[
        one(1, "gracePeriodSeconds", Kind::OptionalInt64),
        one(2, "preconditions", Kind::Message(&PRECONDITIONS)),
        one(3, "orphanDependents", Kind::OptionalBool),
        one(4, "propagationPolicy", Kind::String),
        many(5, "dryRun", Kind::String),
    ],
};

static PRECONDITIONS: Message = Message {
    name: "Preconditions",
    fields: &[
        one(1, "uid", Kind::String),
        one(2, "resourceVersion", Kind::String),
    ],
};

// core/v1 (k8s.io/api/core/v1/generated.proto).

static SECRET: Message = Message {
    name: "Secret",
    fields: &[
        one(1, "metadata", Kind::Message(&OBJECT_META)),
        one(2, "data", Kind::BytesMap),
        one(3, "type", Kind::String),
        one(4, "stringData", Kind::StringMap),
        one(5, "immutable", Kind::OptionalBool),
    ],
};

static CONFIG_MAP: Message = Message {
    name: "ConfigMap",
    fields: &[
        one(1, "metadata", Kind::Message(&OBJECT_META)),
        one(2, "data", Kind::StringMap),
        one(3, "binaryData", Kind::BytesMap),
        one(4, "immutable", Kind::OptionalBool),
    ],
};

static NAMESPACE: Message = Message {
    name: "Namespace",
    fields: &[
        one(1, "metadata", Kind::Message(&OBJECT_META)),
        one(2, "spec", Kind::Message(&NAMESPACE_SPEC)),
        one(3, "status", Kind::Message(&NAMESPACE_STATUS)),
    ],
};

static NAMESPACE_SPEC: Message = Message {
    name: "NamespaceSpec",
    fields: &[many(1, "finalizers", Kind::String)],
};

static NAMESPACE_STATUS: Message = Message {
    name: "NamespaceStatus",
    fields: &[
        one(1, "phase", Kind::String),
        many(2, "conditions", Kind::Message(&NAMESPACE_CONDITION)),
    ],
};

static NAMESPACE_CONDITION: Message = Message {
    name: "NamespaceCondition",
    fields: &[
        one(1, "type", Kind::String),
        one(2, "status", Kind::String),
        one(4, "lastTransitionTime", Kind::Time),
        one(5, "reason", Kind::String),
        one(6, "message", Kind::String),
    ],
};

static SERVICE_ACCOUNT: Message = Message {
    name: "ServiceAccount",
    fields: &[
        one(1, "metadata", Kind::Message(&OBJECT_META)),
        many(2, "secrets", Kind::Message(&OBJECT_REFERENCE)),
        many(
            3,
            "imagePullSecrets",
            Kind::Message(&LOCAL_OBJECT_REFERENCE),
        ),
        one(4, "automountServiceAccountToken", Kind::OptionalBool),
    ],
};

static OBJECT_REFERENCE: Message = Message {
    name: "ObjectReference",
    fields: &[
        one(1, "kind", Kind::String),
        one(2, "namespace", Kind::String),
        one(3, "name", Kind::String),
        one(4, "uid", Kind::String),
        one(5, "apiVersion", Kind::String),
        one(6, "resourceVersion", Kind::String),
        one(7, "fieldPath", Kind::String),
    ],
};

static LOCAL_OBJECT_REFERENCE: Message = Message {
    name: "LocalObjectReference",
    fields: &[one(1, "name", Kind::String)],
};

// ---------------------------------------------------------------------------------------------
// Wire format.

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

/// Deepest nesting of groups skipped as unknown fields.
const MAX_GROUP_DEPTH: usize = 64;

/// Largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range RFC 3339 can express.
#[cfg(test)]
const MIN_RFC3339_SECONDS: i64 = -62_167_219_200;
#[cfg(test)]
const MAX_RFC3339_SECONDS: i64 = 253_402_300_799;

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which JSON renders as null.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

fn truncated(reason: impl Into<String>) -> ProtobufError {
    ProtobufError::Truncated {
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> ProtobufError {
    ProtobufError::Malformed {
        reason: reason.into(),
    }
}

/// A cursor over one message's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(truncated("input ends inside a varint"));
            };
            self.pos += 1;
            if index == 9 && byte > 1 {
                return Err(malformed("varint longer than 64 bits"));
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], ProtobufError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| truncated(format!("input ends inside {what}")))?;
        let slice = self.bytes.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(slice)
    }

    fn length_delimited(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = self.varint()?;
        let len = usize::try_from(len)
            .map_err(|_| truncated("length-delimited field longer than the input"))?;
        self.take(len, "a length-delimited field")
    }

    /// Reads a tag: `(field number, wire type)`.
    fn tag(&mut self) -> Result<(u64, u8), ProtobufError> {
        let tag = self.varint()?;
        let number = tag >> 3;
        let wire_type = (tag & 7) as u8;
        if number == 0 || number > MAX_FIELD_NUMBER {
            return Err(malformed(format!("invalid field number {number}")));
        }
        Ok((number, wire_type))
    }

    /// Skips the value of a field nobody asked for.
    fn skip(&mut self, number: u64, wire_type: u8) -> Result<(), ProtobufError> {
        match wire_type {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8, "a fixed64 field").map(drop),
            WIRE_LEN => self.length_delimited().map(drop),
            WIRE_FIXED32 => self.take(4, "a fixed32 field").map(drop),
            WIRE_START_GROUP => self.skip_group(number),
            WIRE_END_GROUP => Err(malformed(format!(
                "end-group tag for field {number} without a matching start"
            ))),
            other => Err(malformed(format!(
                "invalid wire type {other} for field {number}"
            ))),
        }
    }

    /// Skips a group whose start tag (for field `number`) has just been read.
    fn skip_group(&mut self, number: u64) -> Result<(), ProtobufError> {
        let mut open = vec![number];
        while let Some(&innermost) = open.last() {
            if self.is_empty() {
                return Err(truncated("input ends inside a group"));
            }
            let (field, wire_type) = self.tag()?;
            match wire_type {
                WIRE_START_GROUP => {
                    if open.len() >= MAX_GROUP_DEPTH {
                        return Err(malformed("groups nested too deeply"));
                    }
                    open.push(field);
                }
                WIRE_END_GROUP => {
                    if field != innermost {
                        return Err(malformed(format!(
                            "end-group tag for field {field} closes group {innermost}"
                        )));
                    }
                    open.pop();
                }
                _ => self.skip(field, wire_type)?,
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The envelope.

/// `runtime.Unknown` with its `typeMeta` flattened.
struct Unknown<'a> {
    api_version: String,
    kind: String,
    raw: &'a [u8],
    content_encoding: String,
    content_type: String,
}

impl<'a> Unknown<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, ProtobufError> {
        let mut unknown = Unknown {
            api_version: String::new(),
            kind: String::new(),
            raw: &[],
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            let (number, wire_type) = reader.tag()?;
            match (number, wire_type) {
                (1, WIRE_LEN) => {
                    let mut type_meta = Reader::new(reader.length_delimited()?);
                    while !type_meta.is_empty() {
                        match type_meta.tag()? {
                            (1, WIRE_LEN) => {
                                unknown.api_version = text(type_meta.length_delimited()?);
                            }
                            (2, WIRE_LEN) => unknown.kind = text(type_meta.length_delimited()?),
                            (1 | 2, other) => return Err(wrong_wire_type("TypeMeta", other)),
                            (field, other) => type_meta.skip(field, other)?,
                        }
                    }
                }
                (2, WIRE_LEN) => unknown.raw = reader.length_delimited()?,
                (3, WIRE_LEN) => unknown.content_encoding = text(reader.length_delimited()?),
                (4, WIRE_LEN) => unknown.content_type = text(reader.length_delimited()?),
                (1..=4, other) => return Err(wrong_wire_type("Unknown", other)),
                (field, other) => reader.skip(field, other)?,
            }
        }
        Ok(unknown)
    }
}

fn wrong_wire_type(message: &str, wire_type: u8) -> ProtobufError {
    malformed(format!("unexpected wire type {wire_type} in {message}"))
}

// ---------------------------------------------------------------------------------------------
// Messages to JSON.

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn decode_message(message: &Message, bytes: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut object = Map::new();
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        let (number, wire_type) = reader.tag()?;
        match message.fields.iter().find(|field| field.number == number) {
            Some(field) => decode_field(message, field, wire_type, &mut reader, &mut object)?,
            None => reader.skip(number, wire_type)?,
        }
    }
    Ok(object)
}

fn decode_field(
    message: &Message,
    field: &Field,
    wire_type: u8,
    reader: &mut Reader<'_>,
    object: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    let wrong = || {
        malformed(format!(
            "unexpected wire type {wire_type} for {}.{} (field {})",
            message.name, field.json, field.number
        ))
    };
    let scalar = matches!(
        field.kind,
        Kind::Int64 | Kind::OptionalInt64 | Kind::Int32 | Kind::Bool | Kind::OptionalBool
    );
    if scalar {
        match wire_type {
            WIRE_VARINT => {
                let value = reader.varint()?;
                store(object, field, varint_json(field.kind, value));
            }
            // Packed repeated scalars.
            WIRE_LEN if field.repeated => {
                let mut packed = Reader::new(reader.length_delimited()?);
                while !packed.is_empty() {
                    let value = packed.varint()?;
                    store(object, field, varint_json(field.kind, value));
                }
            }
            _ => return Err(wrong()),
        }
        return Ok(());
    }
    if wire_type != WIRE_LEN {
        return Err(wrong());
    }
    let bytes = reader.length_delimited()?;
    match field.kind {
        Kind::String => {
            let value = text(bytes);
            store(
                object,
                field,
                (field.repeated || !value.is_empty()).then_some(value.into()),
            );
        }
        Kind::Bytes => {
            let keep = field.repeated || !bytes.is_empty();
            store(object, field, keep.then(|| STANDARD.encode(bytes).into()));
        }
        Kind::Time => {
            let value = decode_time(bytes)?;
            store(object, field, value.map(Value::String));
        }
        Kind::Message(inner) => {
            let value = decode_message(inner, bytes)?;
            if field.repeated {
                store(object, field, Some(Value::Object(value)));
            } else if let Some(Value::Object(existing)) = object.get_mut(field.json) {
                // Repeated occurrences of a singular message merge.
                existing.extend(value);
            } else {
                object.insert(field.json.to_owned(), Value::Object(value));
            }
        }
        Kind::StringMap | Kind::BytesMap => {
            let (key, value) = decode_map_entry(message, field, bytes)?;
            let value = if matches!(field.kind, Kind::BytesMap) {
                STANDARD.encode(value)
            } else {
                text(value)
            };
            let entry = object
                .entry(field.json)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(map) = entry {
                map.insert(key, Value::String(value));
            }
        }
        Kind::RawJson => {
            let value = decode_raw_json(message, field, bytes)?;
            store(object, field, value);
        }
        Kind::Int64 | Kind::OptionalInt64 | Kind::Int32 | Kind::Bool | Kind::OptionalBool => {
            return Err(wrong());
        }
    }
    Ok(())
}

/// The JSON value of a varint for a scalar kind, or `None` when it is omitted.
fn varint_json(kind: Kind, value: u64) -> Option<Value> {
    // Two's complement reinterpretation is how protobuf encodes negative int64 and int32.
    let signed = value as i64;
    match kind {
        Kind::Int64 => (signed != 0).then(|| signed.into()),
        Kind::OptionalInt64 => Some(signed.into()),
        Kind::Int32 => {
            let narrow = signed as i32;
            (narrow != 0).then(|| narrow.into())
        }
        Kind::Bool => (value != 0).then_some(Value::Bool(true)),
        Kind::OptionalBool => Some(Value::Bool(value != 0)),
        _ => None,
    }
}

/// Records one decoded value: appended for repeated fields, last-one-wins otherwise (an omitted
/// value then removes an earlier one).
fn store(object: &mut Map<String, Value>, field: &Field, value: Option<Value>) {
    if field.repeated {
        if let Some(value) = value {
            let entry = object
                .entry(field.json)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(items) = entry {
                items.push(value);
            }
        }
    } else {
        match value {
            Some(value) => {
                object.insert(field.json.to_owned(), value);
            }
            None => {
                object.remove(field.json);
            }
        }
    }
}

/// A map entry: `key` = 1 (string), `value` = 2 (string or bytes, returned raw).
fn decode_map_entry<'a>(
    message: &Message,
    field: &Field,
    bytes: &'a [u8],
) -> Result<(String, &'a [u8]), ProtobufError> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.tag()? {
            (1, WIRE_LEN) => key = text(reader.length_delimited()?),
            (2, WIRE_LEN) => value = reader.length_delimited()?,
            (1 | 2, other) => {
                return Err(malformed(format!(
                    "unexpected wire type {other} in a map entry of {}.{}",
                    message.name, field.json
                )));
            }
            (number, other) => reader.skip(number, other)?,
        }
    }
    Ok((key, value))
}

/// `FieldsV1`: field 1 holds a JSON document, rendered as that document.
fn decode_raw_json(
    message: &Message,
    field: &Field,
    bytes: &[u8],
) -> Result<Option<Value>, ProtobufError> {
    let mut raw: &[u8] = &[];
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.tag()? {
            (1, WIRE_LEN) => raw = reader.length_delimited()?,
            (1, other) => {
                return Err(malformed(format!(
                    "unexpected wire type {other} in {}.{}",
                    message.name, field.json
                )));
            }
            (number, other) => reader.skip(number, other)?,
        }
    }
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(raw).map(Some).map_err(|error| {
        malformed(format!(
            "{}.{} does not hold JSON: {error}",
            message.name, field.json
        ))
    })
}

/// `metav1.Time`: `seconds` = 1, `nanos` = 2 (ignored, as apimachinery ignores it). An empty
/// message is Go's zero time, which JSON renders as null, so it is omitted.
fn decode_time(bytes: &[u8]) -> Result<Option<String>, ProtobufError> {
    let mut seconds: i64 = 0;
    let mut reader = Reader::new(bytes);
    while !reader.is_empty() {
        match reader.tag()? {
            (1, WIRE_VARINT) => seconds = reader.varint()? as i64,
            (1 | 2, other) if other != WIRE_VARINT => {
                return Err(malformed(format!("unexpected wire type {other} in Time")));
            }
            (number, other) => reader.skip(number, other)?,
        }
    }
    if bytes.is_empty() || seconds == GO_ZERO_TIME_SECONDS {
        return Ok(None);
    }
    format_rfc3339(seconds).map(Some)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
fn format_rfc3339(seconds: i64) -> Result<String, ProtobufError> {
    crate::time::format_rfc3339_signed(seconds).ok_or_else(|| {
        malformed(format!(
            "Time of {seconds} seconds is outside the years 0000-9999"
        ))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.
mod tests {
    use super::*;
    use serde_json::json;

    // A tiny protobuf encoder for building bodies.

    fn varint(out: &mut Vec<u8>, mut value: u64) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn tag(out: &mut Vec<u8>, number: u64, wire_type: u8) {
        varint(out, (number << 3) | u64::from(wire_type));
    }

    #[derive(Default)]
    struct Msg(Vec<u8>);

    impl Msg {
        fn bytes(mut self, number: u64, value: &[u8]) -> Self {
            tag(&mut self.0, number, WIRE_LEN);
            varint(&mut self.0, value.len() as u64);
            self.0.extend_from_slice(value);
            self
        }
        fn string(self, number: u64, value: &str) -> Self {
            self.bytes(number, value.as_bytes())
        }
        fn msg(self, number: u64, value: Msg) -> Self {
            self.bytes(number, &value.0)
        }
        fn uint(mut self, number: u64, value: u64) -> Self {
            tag(&mut self.0, number, WIRE_VARINT);
            varint(&mut self.0, value);
            self
        }
        fn int(self, number: u64, value: i64) -> Self {
            self.uint(number, value as u64)
        }
        fn fixed32(mut self, number: u64, value: u32) -> Self {
            tag(&mut self.0, number, WIRE_FIXED32);
            self.0.extend_from_slice(&value.to_le_bytes());
            self
        }
        fn fixed64(mut self, number: u64, value: u64) -> Self {
            tag(&mut self.0, number, WIRE_FIXED64);
            self.0.extend_from_slice(&value.to_le_bytes());
            self
        }
        fn entry(self, number: u64, key: &str, value: &[u8]) -> Self {
            self.msg(number, Msg::default().string(1, key).bytes(2, value))
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: Msg) -> Vec<u8> {
        let unknown = Msg::default()
            .msg(1, Msg::default().string(1, api_version).string(2, kind))
            .bytes(2, &raw.0)
            .string(3, "")
            .string(4, "");
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&unknown.0);
        body
    }

    /// Go's zero `metav1.Time` encodes as an empty message.
    fn zero_time() -> Msg {
        Msg::default()
    }

    fn helm_release_secret() -> Vec<u8> {
        // As client-go writes it: every value-type field present, zero ones included.
        let metadata = Msg::default()
            .string(1, "sh.helm.release.v1.r1.v1")
            .string(2, "")
            .string(3, "apps")
            .string(4, "")
            .string(5, "")
            .string(6, "")
            .uint(7, 0)
            .msg(8, zero_time())
            .entry(11, "name", b"r1")
            .entry(11, "owner", b"helm")
            .entry(11, "status", b"deployed")
            .entry(11, "version", b"1");
        let secret = Msg::default()
            .msg(1, metadata)
            .entry(2, "release", b"H4sI\x00\xffrelease-bytes")
            .string(3, "helm.sh/release.v1");
        envelope("v1", "Secret", secret)
    }

    #[test]
    fn helm_release_secret_decodes_like_its_json() {
        let decoded = decode(&helm_release_secret()).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "sh.helm.release.v1.r1.v1",
                    "namespace": "apps",
                    "labels": {"name": "r1", "owner": "helm", "status": "deployed", "version": "1"}
                },
                "data": {"release": STANDARD.encode(b"H4sI\x00\xffrelease-bytes")},
                "type": "helm.sh/release.v1"
            })
        );
    }

    #[test]
    fn config_map_with_data_binary_data_and_immutable() {
        let config_map = Msg::default()
            .msg(1, Msg::default().string(1, "settings").string(3, "default"))
            .entry(2, "a.txt", b"hello")
            .entry(2, "empty", b"")
            .entry(3, "blob", &[0, 1, 2, 255])
            .uint(4, 0);
        let decoded = decode(&envelope("v1", "ConfigMap", config_map)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "default"},
                "data": {"a.txt": "hello", "empty": ""},
                "binaryData": {"blob": "AAEC/w=="},
                "immutable": false
            })
        );
    }

    #[test]
    fn namespace_with_labels_spec_and_status() {
        let namespace = Msg::default()
            .msg(
                1,
                Msg::default()
                    .string(1, "team-a")
                    .entry(11, "team", b"a")
                    .entry(12, "note", b"x"),
            )
            .msg(2, Msg::default())
            .msg(3, Msg::default().string(1, "Active"));
        let decoded = decode(&envelope("v1", "Namespace", namespace)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": "team-a", "labels": {"team": "a"}, "annotations": {"note": "x"}},
                "spec": {},
                "status": {"phase": "Active"}
            })
        );
    }

    #[test]
    fn namespace_spec_finalizers_are_an_array() {
        let namespace = Msg::default()
            .msg(1, Msg::default().string(1, "ns"))
            .msg(2, Msg::default().string(1, "kubernetes").string(1, "other"));
        let decoded = decode(&envelope("v1", "Namespace", namespace)).unwrap();
        assert_eq!(
            decoded["spec"],
            json!({"finalizers": ["kubernetes", "other"]})
        );
    }

    #[test]
    fn service_account_references() {
        let service_account = Msg::default()
            .msg(1, Msg::default().string(1, "deployer").string(3, "ci"))
            .msg(2, Msg::default().string(1, "Secret").string(3, "token"))
            .msg(3, Msg::default().string(1, "registry"))
            .uint(4, 1);
        let decoded = decode(&envelope("v1", "ServiceAccount", service_account)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "deployer", "namespace": "ci"},
                "secrets": [{"kind": "Secret", "name": "token"}],
                "imagePullSecrets": [{"name": "registry"}],
                "automountServiceAccountToken": true
            })
        );
    }

    #[test]
    fn delete_options_background_dry_run() {
        let options = Msg::default().string(4, "Background").string(5, "All");
        for api_version in ["v1", "meta.k8s.io/v1", "apps/v1"] {
            let decoded = decode(&envelope(
                api_version,
                "DeleteOptions",
                options_copy(&options),
            ))
            .unwrap();
            assert_eq!(
                decoded,
                json!({
                    "apiVersion": api_version,
                    "kind": "DeleteOptions",
                    "propagationPolicy": "Background",
                    "dryRun": ["All"]
                })
            );
        }
    }

    fn options_copy(msg: &Msg) -> Msg {
        Msg(msg.0.clone())
    }

    #[test]
    fn delete_options_zero_grace_period_and_preconditions_are_kept() {
        let options = Msg::default()
            .int(1, 0)
            .msg(2, Msg::default().string(1, "uid-1").string(2, "42"))
            .uint(3, 0);
        let decoded = decode(&envelope("v1", "DeleteOptions", options)).unwrap();
        assert_eq!(
            decoded,
            json!({
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "uid-1", "resourceVersion": "42"},
                "orphanDependents": false
            })
        );
    }

    #[test]
    fn timestamps_render_as_rfc3339_utc() {
        let metadata = Msg::default()
            .string(1, "t")
            .int(7, 3)
            .msg(8, Msg::default().int(1, 1_735_689_600).int(2, 999_999_999))
            .msg(9, Msg::default().int(1, 951_827_696))
            .int(10, 30);
        let decoded = decode(&envelope(
            "v1",
            "ConfigMap",
            Msg::default().msg(1, metadata),
        ))
        .unwrap();
        assert_eq!(
            decoded["metadata"],
            json!({
                "name": "t",
                "generation": 3,
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "deletionTimestamp": "2000-02-29T12:34:56Z",
                "deletionGracePeriodSeconds": 30
            })
        );
    }

    #[test]
    fn time_formatting_edges() {
        assert_eq!(format_rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(-1).unwrap(), "1969-12-31T23:59:59Z");
        assert_eq!(
            format_rfc3339(MAX_RFC3339_SECONDS).unwrap(),
            "9999-12-31T23:59:59Z"
        );
        assert_eq!(
            format_rfc3339(MIN_RFC3339_SECONDS).unwrap(),
            "0000-01-01T00:00:00Z"
        );
        assert!(format_rfc3339(MAX_RFC3339_SECONDS + 1).is_err());
        assert!(format_rfc3339(i64::MIN).is_err());
        // Go's zero time sent explicitly is still the zero time.
        let zero = Msg::default().int(1, GO_ZERO_TIME_SECONDS);
        assert_eq!(decode_time(&zero.0).unwrap(), None);
    }

    #[test]
    fn owner_references_and_managed_fields() {
        let managed = Msg::default()
            .string(1, "helm")
            .string(2, "Update")
            .string(3, "v1")
            .msg(4, Msg::default().int(1, 1_735_689_600))
            .string(6, "FieldsV1")
            .msg(
                7,
                Msg::default().bytes(1, br#"{"f:data":{".":{},"f:release":{}}}"#),
            )
            .string(8, "");
        let owner = Msg::default()
            .string(1, "Deployment")
            .string(3, "web")
            .string(4, "uid-9")
            .string(5, "apps/v1")
            .uint(6, 1)
            .uint(7, 0);
        let metadata = Msg::default()
            .string(1, "m")
            .msg(13, owner)
            .string(14, "example.com/cleanup")
            .msg(17, managed);
        let decoded = decode(&envelope("v1", "Secret", Msg::default().msg(1, metadata))).unwrap();
        assert_eq!(
            decoded["metadata"],
            json!({
                "name": "m",
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-9",
                    "controller": true, "blockOwnerDeletion": false
                }],
                "finalizers": ["example.com/cleanup"],
                "managedFields": [{
                    "manager": "helm", "operation": "Update", "apiVersion": "v1",
                    "time": "2025-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {".": {}, "f:release": {}}}
                }]
            })
        );
    }

    #[test]
    fn fields_v1_that_is_not_json_is_rejected() {
        let managed = Msg::default().msg(7, Msg::default().bytes(1, b"{not json"));
        let metadata = Msg::default().msg(17, managed);
        let error = decode(&envelope("v1", "Secret", Msg::default().msg(1, metadata))).unwrap_err();
        assert!(matches!(error, ProtobufError::Malformed { .. }), "{error}");
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        let mut group = Msg::default();
        tag(&mut group.0, 40, WIRE_START_GROUP);
        tag(&mut group.0, 41, WIRE_START_GROUP);
        group = group.uint(1, 5).string(2, "inside");
        tag(&mut group.0, 41, WIRE_END_GROUP);
        tag(&mut group.0, 40, WIRE_END_GROUP);
        let metadata = Msg::default()
            .string(1, "n")
            .uint(99, 7)
            .fixed32(98, 1)
            .fixed64(97, 2)
            .string(15, "old-clusterName");
        let mut secret = Msg::default()
            .msg(1, metadata)
            .string(3, "Opaque")
            .uint(1000, 1)
            .msg(1001, Msg::default().string(1, "x"));
        secret.0.extend_from_slice(&group.0);
        let decoded = decode(&envelope("v1", "Secret", secret)).unwrap();
        assert_eq!(
            decoded,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "n"}, "type": "Opaque"})
        );
        // Unknown fields in the envelope and in TypeMeta too.
        let mut body = MAGIC.to_vec();
        body.extend(
            Msg::default()
                .uint(9, 1)
                .msg(
                    1,
                    Msg::default()
                        .string(1, "v1")
                        .fixed32(3, 0)
                        .string(2, "Secret"),
                )
                .bytes(2, &[])
                .0,
        );
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret"})
        );
    }

    #[test]
    fn unsupported_kind_names_api_version_and_kind() {
        let error = decode(&envelope("apps/v1", "Deployment", Msg::default())).unwrap_err();
        match &error {
            ProtobufError::UnsupportedKind { api_version, kind } => {
                assert_eq!(api_version, "apps/v1");
                assert_eq!(kind, "Deployment");
            }
            other => panic!("unexpected error {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("apps/v1") && message.contains("Deployment"),
            "{message}"
        );
        // A core kind under another group version is not the core kind.
        let error = decode(&envelope("example.com/v1", "Secret", Msg::default())).unwrap_err();
        assert!(matches!(error, ProtobufError::UnsupportedKind { .. }));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            decode(b"{\"kind\":\"Secret\"}"),
            Err(ProtobufError::NotKubernetesProtobuf)
        ));
        assert!(matches!(
            decode(b""),
            Err(ProtobufError::NotKubernetesProtobuf)
        ));
        assert!(matches!(
            decode(b"k8s"),
            Err(ProtobufError::NotKubernetesProtobuf)
        ));
        // Magic followed by a length that runs past the end.
        assert!(matches!(
            decode(b"k8s\0\x0a\xff\x01abc"),
            Err(ProtobufError::Truncated { .. })
        ));
        // Field number zero.
        assert!(matches!(
            decode(b"k8s\0\x00\x00"),
            Err(ProtobufError::Malformed { .. })
        ));
        // Wire types 6 and 7 do not exist.
        assert!(matches!(
            decode(b"k8s\0\x0e"),
            Err(ProtobufError::Malformed { .. })
        ));
        // An overlong varint.
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ]);
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::Malformed { .. })
        ));
        // Magic with nothing after it names no kind.
        assert!(matches!(
            decode(&MAGIC),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
    }

    #[test]
    fn wrong_wire_type_for_a_known_field_is_malformed() {
        let secret = Msg::default().uint(3, 1);
        let error = decode(&envelope("v1", "Secret", secret)).unwrap_err();
        assert!(error.to_string().contains("Secret.type"), "{error}");
        let secret = Msg::default().string(5, "yes");
        assert!(matches!(
            decode(&envelope("v1", "Secret", secret)),
            Err(ProtobufError::Malformed { .. })
        ));
    }

    #[test]
    fn content_encoding_and_foreign_content_type_are_refused() {
        let mut body = MAGIC.to_vec();
        body.extend(
            Msg::default()
                .msg(1, Msg::default().string(1, "v1").string(2, "Secret"))
                .string(3, "gzip")
                .0,
        );
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::Malformed { .. })
        ));
        let mut body = MAGIC.to_vec();
        body.extend(
            Msg::default()
                .msg(1, Msg::default().string(1, "v1").string(2, "Secret"))
                .string(4, "application/json")
                .0,
        );
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::Malformed { .. })
        ));
        let mut body = MAGIC.to_vec();
        body.extend(
            Msg::default()
                .msg(1, Msg::default().string(1, "v1").string(2, "Secret"))
                .string(4, CONTENT_TYPE)
                .0,
        );
        assert!(decode(&body).is_ok());
    }

    #[test]
    fn negative_and_large_integers() {
        let options = Msg::default().int(1, -5);
        let decoded = decode(&envelope("v1", "DeleteOptions", options)).unwrap();
        assert_eq!(decoded["gracePeriodSeconds"], json!(-5));
        let metadata = Msg::default().int(7, i64::MAX);
        let decoded = decode(&envelope("v1", "Secret", Msg::default().msg(1, metadata))).unwrap();
        assert_eq!(decoded["metadata"]["generation"], json!(i64::MAX));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let metadata = Msg::default().bytes(1, b"bad\xffname");
        let decoded = decode(&envelope("v1", "Secret", Msg::default().msg(1, metadata))).unwrap();
        assert_eq!(decoded["metadata"]["name"], json!("bad\u{fffd}name"));
    }

    /// Exercises the kinds today's tables do not use, and packed repeated scalars.
    static SAMPLE: Message = Message {
        name: "Sample",
        fields: &[
            one(1, "blob", Kind::Bytes),
            many(2, "blobs", Kind::Bytes),
            one(3, "count", Kind::Int32),
            many(4, "counts", Kind::Int32),
            one(5, "flag", Kind::Bool),
            one(6, "unset", Kind::Bool),
            one(7, "zero", Kind::Int32),
            one(8, "big", Kind::Int64),
        ],
    };

    #[test]
    fn bytes_int32_bool_and_packed_repeated() {
        let mut packed = Vec::new();
        for value in [1_i64, -2, 300] {
            varint(&mut packed, value as u64);
        }
        let sample = Msg::default()
            .bytes(1, b"hi")
            .bytes(2, b"")
            .bytes(2, b"\xff")
            .int(3, -7)
            .bytes(4, &packed)
            .int(4, 9)
            .uint(5, 1)
            .uint(6, 0)
            .uint(7, 0)
            .uint(8, 0);
        let decoded = decode_message(&SAMPLE, &sample.0).unwrap();
        assert_eq!(
            Value::Object(decoded),
            json!({
                "blob": "aGk=",
                "blobs": ["", "/w=="],
                "count": -7,
                "counts": [1, -2, 300, 9],
                "flag": true
            })
        );
    }

    /// A deterministic xorshift generator, so the fuzz loop needs no dependency.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn rich_body() -> Vec<u8> {
        let managed = Msg::default()
            .string(1, "kubectl")
            .msg(4, Msg::default().int(1, 1_735_689_600))
            .msg(7, Msg::default().bytes(1, br#"{"f:metadata":{}}"#));
        let metadata = Msg::default()
            .string(1, "rich")
            .msg(8, Msg::default().int(1, 1_735_689_600).int(2, 5))
            .int(10, 0)
            .entry(11, "a", b"b")
            .msg(13, Msg::default().string(1, "Kind").uint(6, 1))
            .string(14, "f")
            .msg(17, managed);
        let secret = Msg::default()
            .msg(1, metadata)
            .entry(2, "k", b"\x00\x01")
            .string(3, "Opaque")
            .entry(4, "s", b"t")
            .uint(5, 1);
        envelope("v1", "Secret", secret)
    }

    #[test]
    fn truncations_and_bit_flips_never_panic() {
        for body in [helm_release_secret(), rich_body()] {
            assert!(decode(&body).is_ok());
            for len in 0..body.len() {
                let _ = decode(&body[..len]);
            }
            for index in 0..body.len() {
                for bit in 0..8 {
                    let mut flipped = body.clone();
                    flipped[index] ^= 1 << bit;
                    let _ = decode(&flipped);
                }
            }
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let template = rich_body();
        for round in 0..20_000 {
            let mut body = template.clone();
            // Random overwrites, including within the magic now and then.
            let edits = 1 + (rng.next() % 6) as usize;
            for _ in 0..edits {
                let index = (rng.next() as usize) % body.len();
                body[index] = rng.next() as u8;
            }
            if round % 3 == 0 {
                let len = (rng.next() as usize) % (body.len() + 1);
                body.truncate(len);
            }
            let _ = decode(&body);
            // Pure noise after the magic.
            let mut noise = MAGIC.to_vec();
            let len = (rng.next() % 64) as usize;
            noise.extend((0..len).map(|_| rng.next() as u8));
            let _ = decode(&noise);
        }
    }

    #[test]
    fn skipping_deeply_nested_groups_is_bounded() {
        let mut secret = Msg::default();
        for _ in 0..10_000 {
            tag(&mut secret.0, 50, WIRE_START_GROUP);
        }
        assert!(matches!(
            decode(&envelope("v1", "Secret", secret)),
            Err(ProtobufError::Malformed { .. })
        ));
    }
}
