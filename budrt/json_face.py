"""The JSON face of protobuf messages, driven by the descriptors and `bud.api.v1` options.

Unlike protobuf's canonical JSON mapping this writes what the OpenAI API writes: proto field names
(snake_case), int64 as numbers, every non-presence field (so `index: 0` stays), `null` where a
field says `null_if_unset`, raw JSON for `raw` string fields, one key for an `inline` oneof
(string | list | object chosen by the JSON value's type), bare arrays/objects for `unwrap`
messages. Parsing accepts the same and reports the offending field as a dotted `param`.
proto/README.md states the rules. Plans are built once per message type.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor, OneofDescriptor
from google.protobuf.message import Message

from bud.api.v1 import json_pb2

_FD = FieldDescriptor
_INT_TYPES = {
    _FD.TYPE_INT32,
    _FD.TYPE_SINT32,
    _FD.TYPE_SFIXED32,
    _FD.TYPE_UINT32,
    _FD.TYPE_FIXED32,
    _FD.TYPE_INT64,
    _FD.TYPE_SINT64,
    _FD.TYPE_SFIXED64,
    _FD.TYPE_UINT64,
    _FD.TYPE_FIXED64,
}
_FLOAT_TYPES = {_FD.TYPE_FLOAT, _FD.TYPE_DOUBLE}
# How deep a free-form JSON value (a `raw` field: tool parameters, JSON schemas) may nest, in
# arrays and objects. Typed fields nest only as deep as their messages do; a raw value is kept as
# JSON text, and orjson refuses to write one nested past 255 levels (a 500 once).
MAX_RAW_JSON_DEPTH = 64
_WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}


class JsonFaceError(ValueError):
    """A JSON value that does not fit the message; `param` is the dotted path of the field."""

    def __init__(self, message: str, param: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(fd: FieldDescriptor) -> str:
    """The JSON kind a single value of this field takes: string, number, bool, list or object."""
    if fd.type == _FD.TYPE_MESSAGE:
        codec = codec_for(fd.message_type)
        return codec.unwrapped_kind() if codec.unwrap else "object"
    if fd.type in _INT_TYPES or fd.type in _FLOAT_TYPES:
        return "number"
    if fd.type == _FD.TYPE_BOOL:
        return "bool"
    return "string"  # string, bytes, enum


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else "null"


class _Field:
    __slots__ = (
        "fd",
        "name",
        "repeated",
        "is_map",
        "presence",
        "null_if_unset",
        "omit_empty",
        "raw",
        "enc",
        "dec",
    )

    def __init__(self, fd: FieldDescriptor) -> None:
        opts = fd.GetOptions().Extensions[json_pb2.field_json]
        self.fd = fd
        self.name = fd.name
        self.is_map = fd.type == _FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry
        self.repeated = fd.is_repeated and not self.is_map
        self.presence = fd.has_presence
        self.null_if_unset = opts.null_if_unset
        self.omit_empty = opts.omit_empty
        self.raw = opts.raw
        self.enc: Callable[[Any], Any] | None = None  # set lazily: recursive types
        self.dec: Callable[[Any, str], Any] | None = None


class _Inline:
    __slots__ = ("name", "members", "null_if_unset")

    def __init__(self, oneof: OneofDescriptor) -> None:
        opts = oneof.GetOptions().Extensions[json_pb2.oneof_json]
        self.name = oneof.name
        self.members = [_Field(fd) for fd in oneof.fields]
        self.null_if_unset = opts.null_if_unset


class MessageCodec:
    """Encodes one message type to JSON-ready Python values and parses them back."""

    def __init__(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self.full_name = descriptor.full_name
        self.unwrap = descriptor.GetOptions().Extensions[json_pb2.message_json].unwrap
        self.fields: list[_Field] = []
        self.inlines: list[_Inline] = []
        self.by_key: dict[str, _Field | _Inline] = {}
        for oneof in descriptor.oneofs:
            if oneof.GetOptions().Extensions[json_pb2.oneof_json].inline:
                inline = _Inline(oneof)
                self.inlines.append(inline)
                self.by_key[inline.name] = inline
        inline_names = {m.name for i in self.inlines for m in i.members}
        for fd in descriptor.fields:
            if fd.name in inline_names:
                continue
            field = _Field(fd)
            self.fields.append(field)
            self.by_key[fd.name] = field
            if fd.json_name != fd.name:
                self.by_key.setdefault(fd.json_name, field)  # accept lowerCamelCase too
        members = len(self.fields) + len(self.inlines)
        if self.unwrap and members != 1:
            raise TypeError(f"{self.full_name}: unwrap needs exactly one field or inline oneof")

    # ---- encoding -------------------------------------------------------------------------
    def unwrapped_kind(self) -> str:
        """JSON kind of an unwrap message's value."""
        if self.inlines:
            return "any"
        field = self.fields[0]
        return "list" if field.repeated else "object" if field.is_map else _kind(field.fd)

    def encode(self, msg: Message) -> Any:
        """The message as Python values ready for orjson."""
        if self.unwrap:
            if self.inlines:
                return self._encode_inline(msg, self.inlines[0])
            return self._encode_field(msg, self.fields[0])
        out: dict[str, Any] = {}
        for field in self.fields:
            if field.presence and not msg.HasField(field.name):
                if field.null_if_unset:
                    out[field.name] = None
                continue
            value = self._encode_field(msg, field)
            if field.omit_empty and not value:
                continue
            out[field.name] = value
        for inline in self.inlines:
            which = msg.WhichOneof(inline.name)
            if which is None:
                if inline.null_if_unset:
                    out[inline.name] = None
                continue
            out[inline.name] = self._encode_inline(msg, inline)
        return out

    def _encode_inline(self, msg: Message, inline: _Inline) -> Any:
        which = msg.WhichOneof(inline.name)
        if which is None:
            return None
        for member in inline.members:
            if member.name == which:
                return self._encode_field(msg, member)
        raise AssertionError(which)

    def _encode_field(self, msg: Message, field: _Field) -> Any:
        enc = field.enc or _bind_encoder(field)
        value = getattr(msg, field.name)
        if field.repeated:
            if enc is _identity:
                return list(value)  # one C call for strings, integers, booleans
            if enc is _float_out:
                floats = list(value)
                if all(map(math.isfinite, floats)):  # embeddings: millions of floats
                    return floats
            return [enc(v) for v in value]
        if field.is_map:
            return {str(k): enc(v) for k, v in value.items()}
        return enc(value)

    # ---- decoding -------------------------------------------------------------------------
    def decode(self, obj: Any, msg: Message, path: str = "", lenient: bool = False) -> None:
        """Fills `msg` from parsed JSON `obj`; unknown keys are ignored when `lenient`."""
        if self.unwrap:
            target = self.inlines[0] if self.inlines else self.fields[0]
            self._decode_member(target, obj, msg, path, lenient)
            return
        if not isinstance(obj, dict):
            raise JsonFaceError(f"'{path or 'body'}' must be a JSON object", path)
        for key, value in obj.items():
            member = self.by_key.get(key)
            if member is None:
                if lenient:
                    continue
                raise JsonFaceError(f"unknown field '{_join(path, key)}'", _join(path, key))
            self._decode_member(member, value, msg, _join(path, key), lenient)

    def _decode_member(
        self, member: _Field | _Inline, value: Any, msg: Message, path: str, lenient: bool
    ) -> None:
        if value is None:
            return  # JSON null: leave unset
        if isinstance(member, _Inline):
            member = self._pick_inline(member, value, path)
        self._decode_field(member, value, msg, path, lenient)

    @staticmethod
    def _pick_inline(inline: _Inline, value: Any, path: str) -> _Field:
        kind = _json_kind(value)
        candidates = [m for m in inline.members if _kind(m.fd) in (kind, "any")]
        if kind == "list" and len(candidates) > 1 and value:
            first = _json_kind(value[0])
            narrowed = [m for m in candidates if _list_item_kind(m) == first]
            candidates = narrowed or candidates
        if kind == "number" and len(candidates) > 1:
            want_int = isinstance(value, int) or float(value).is_integer()
            narrowed = [m for m in candidates if (m.fd.type in _INT_TYPES) == want_int]
            candidates = narrowed or candidates
        if not candidates:
            kinds = " or ".join(sorted({_describe(m) for m in inline.members}))
            raise JsonFaceError(f"'{path}' must be {kinds}", path)
        return candidates[0]

    def _decode_field(self, field: _Field, value: Any, msg: Message, path: str, lenient: bool) -> None:
        dec = field.dec or _bind_decoder(field, lenient)
        fd = field.fd
        if field.repeated:
            if not isinstance(value, list):
                raise JsonFaceError(f"'{path}' must be an array", path)
            container = getattr(msg, field.name)
            if fd.type == _FD.TYPE_MESSAGE and fd.message_type.full_name not in _SPECIAL_DECODERS:
                codec = codec_for(fd.message_type)
                for i, item in enumerate(value):
                    codec.decode(item, container.add(), f"{path}[{i}]", lenient)
            elif not (fd.type in _FAST_LIST_TYPES and not field.raw and _extend_fast(container, value)):
                container.extend(dec(item, f"{path}[{i}]") for i, item in enumerate(value))
            return
        if field.is_map:
            if not isinstance(value, dict):
                raise JsonFaceError(f"'{path}' must be an object", path)
            container = getattr(msg, field.name)
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            for k, v in value.items():
                key = _decode_scalar(key_fd, k if key_fd.type == _FD.TYPE_STRING else _int_key(k, path), path)
                if value_fd.type == _FD.TYPE_MESSAGE:
                    codec_for(value_fd.message_type).decode(v, container[key], _join(path, k), lenient)
                else:
                    container[key] = dec(v, _join(path, k))
            return
        if fd.type == _FD.TYPE_MESSAGE and fd.message_type.full_name not in _SPECIAL_DECODERS:
            sub = getattr(msg, field.name)
            sub.SetInParent()
            codec_for(fd.message_type).decode(value, sub, path, lenient)
            return
        if fd.type == _FD.TYPE_MESSAGE:
            getattr(msg, field.name).CopyFrom(dec(value, path))
            return
        setattr(msg, field.name, dec(value, path))


# Repeated fields whose JSON items protobuf itself checks exactly as `_decode_scalar` would
# accept them (str for strings; int, not bool, in range for integers): filled in one C call.
_FAST_LIST_TYPES = {_FD.TYPE_STRING, *_INT_TYPES}


def _extend_fast(container: Any, value: list[Any]) -> bool:
    """Appends `value` to a repeated string or integer field at C speed (a token-id list of
    millions costs milliseconds, not seconds); False, leaving the field as it was, when an item
    needs the item-by-item path (an integral float, a digit string, an error to name)."""
    size = len(container)
    try:
        container.extend(value)
    except (TypeError, ValueError):
        del container[size:]
        return False
    return True


def _int_key(key: str, path: str) -> int:
    try:
        return int(key)
    except ValueError:
        raise JsonFaceError(f"'{path}' keys must be integers", path) from None


def _list_item_kind(field: _Field) -> str:
    codec = codec_for(field.fd.message_type)
    inner = codec.fields[0] if codec.fields else None
    return _kind(inner.fd) if inner is not None else "any"


def _describe(field: _Field) -> str:
    kind = _kind(field.fd)
    if kind == "list":
        return f"an array of {_list_item_kind(field)}s"
    return {"object": "an object", "string": "a string", "number": "a number", "bool": "a boolean"}.get(
        kind, kind
    )


# ---- scalar and well-known-type conversions ----------------------------------------------------
def _timestamp_to_json(ts: Message) -> str:
    dt = datetime.fromtimestamp(ts.seconds, tz=UTC)
    frac = f".{ts.nanos:09d}".rstrip("0") if ts.nanos else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def _timestamp_from_json(value: Any, path: str) -> Message:
    from google.protobuf.timestamp_pb2 import Timestamp

    if not isinstance(value, str):
        raise JsonFaceError(f"'{path}' must be an RFC 3339 timestamp string", path)
    ts = Timestamp()
    try:
        ts.FromJsonString(value)
    except ValueError as err:
        raise JsonFaceError(f"'{path}': {err}", path) from None
    return ts


def _duration_from_json(value: Any, path: str) -> Message:
    from google.protobuf.duration_pb2 import Duration

    d = Duration()
    try:
        d.FromJsonString(value)
    except (ValueError, AttributeError) as err:
        raise JsonFaceError(f"'{path}' must be a duration like \"1.5s\": {err}", path) from None
    return d


def _field_mask_from_json(value: Any, path: str) -> Message:
    from google.protobuf.field_mask_pb2 import FieldMask

    if isinstance(value, str):
        return FieldMask(paths=[p for p in value.split(",") if p])
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return FieldMask(paths=value)
    raise JsonFaceError(f"'{path}' must be a comma-separated string of field paths", path)


def _struct_from_json(full_name: str) -> Callable[[Any, str], Message]:
    def convert(value: Any, path: str) -> Message:
        from google.protobuf import json_format, struct_pb2

        msg = {
            "google.protobuf.Struct": struct_pb2.Struct,
            "google.protobuf.Value": struct_pb2.Value,
            "google.protobuf.ListValue": struct_pb2.ListValue,
        }[full_name]()
        try:
            json_format.ParseDict(value, msg)
        except json_format.ParseError as err:
            raise JsonFaceError(f"'{path}': {err}", path) from None
        return msg

    return convert


def _wrapper_from_json(descriptor: Descriptor) -> Callable[[Any, str], Message]:
    value_fd = descriptor.fields_by_name["value"]

    def convert(value: Any, path: str) -> Message:
        from google.protobuf import symbol_database

        cls = symbol_database.Default().GetSymbol(descriptor.full_name)
        return cls(value=_decode_scalar(value_fd, value, path))

    return convert


_SPECIAL_DECODERS: dict[str, Callable[[Descriptor], Callable[[Any, str], Message]]] = {
    "google.protobuf.Timestamp": lambda d: _timestamp_from_json,
    "google.protobuf.Duration": lambda d: _duration_from_json,
    "google.protobuf.FieldMask": lambda d: _field_mask_from_json,
    "google.protobuf.Struct": lambda d: _struct_from_json(d.full_name),
    "google.protobuf.Value": lambda d: _struct_from_json(d.full_name),
    "google.protobuf.ListValue": lambda d: _struct_from_json(d.full_name),
    **{name: _wrapper_from_json for name in _WRAPPERS},
}


# Well-known types whose JSON form is one string, so a URL can carry them (query parameters).
STRING_FORM_TYPES = frozenset(
    {"google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.FieldMask"}
)


def well_known_from_text(descriptor: Descriptor, text: str, path: str) -> Message:
    """A Timestamp, Duration or FieldMask (see STRING_FORM_TYPES) from its JSON string form;
    raises JsonFaceError."""
    return _SPECIAL_DECODERS[descriptor.full_name](descriptor)(text, path)


def _special_encoder(descriptor: Descriptor) -> Callable[[Any], Any] | None:
    name = descriptor.full_name
    if name == "google.protobuf.Timestamp":
        return _timestamp_to_json
    if name == "google.protobuf.Duration":
        return lambda d: d.ToJsonString()
    if name == "google.protobuf.FieldMask":
        return lambda m: ",".join(m.paths)
    if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):
        from google.protobuf import json_format

        return lambda m: json_format.MessageToDict(m)
    if name in _WRAPPERS:
        return lambda m: base64.b64encode(m.value).decode() if isinstance(m.value, bytes) else m.value
    return None


def _bind_encoder(field: _Field) -> Callable[[Any], Any]:
    fd = field.fd
    if field.is_map:
        fd = fd.message_type.fields_by_name["value"]
    enc: Callable[[Any], Any]
    if field.raw:
        enc = orjson.Fragment  # the stored JSON text goes out as is
    elif fd.type == _FD.TYPE_MESSAGE:
        enc = _special_encoder(fd.message_type) or codec_for(fd.message_type).encode
    elif fd.type == _FD.TYPE_ENUM:
        values = fd.enum_type.values_by_number
        enc = lambda v: values[v].name if v in values else v  # noqa: E731
    elif fd.type == _FD.TYPE_BYTES:
        enc = lambda v: base64.b64encode(v).decode()  # noqa: E731
    elif fd.type in _FLOAT_TYPES:
        enc = _float_out
    else:
        enc = _identity
    field.enc = enc
    return enc


def _identity(v: Any) -> Any:
    return v


def _float_out(v: float) -> Any:
    # JSON has no NaN/Infinity; write them as protobuf's canonical JSON does.
    if math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _bind_decoder(field: _Field, lenient: bool) -> Callable[[Any, str], Any]:
    fd = field.fd
    if field.is_map:
        fd = fd.message_type.fields_by_name["value"]
    if field.raw:
        dec: Callable[[Any, str], Any] = _raw_json
    elif fd.type == _FD.TYPE_MESSAGE and fd.message_type.full_name in _SPECIAL_DECODERS:
        dec = _SPECIAL_DECODERS[fd.message_type.full_name](fd.message_type)
    else:
        target = fd
        dec = lambda v, p: _decode_scalar(target, v, p)  # noqa: E731
    field.dec = dec
    return dec


def _raw_json(value: Any, path: str) -> str:
    """A free-form JSON value as JSON text; refused when it nests deeper than
    `MAX_RAW_JSON_DEPTH` (checked without recursion, so any depth is refused cleanly)."""
    level: list[Any] = [value]
    depth = 0
    while level:
        containers = [v for v in level if isinstance(v, (dict, list))]
        if not containers:
            break
        depth += 1
        if depth > MAX_RAW_JSON_DEPTH:
            raise JsonFaceError(f"'{path}' is nested deeper than {MAX_RAW_JSON_DEPTH} levels", path)
        level = [item for c in containers for item in (c.values() if isinstance(c, dict) else c)]
    return orjson.dumps(value).decode()


def _decode_scalar(fd: FieldDescriptor, value: Any, path: str) -> Any:
    t = fd.type
    if t == _FD.TYPE_STRING:
        if isinstance(value, str):
            return value
        raise JsonFaceError(f"'{path}' must be a string", path)
    if t == _FD.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        raise JsonFaceError(f"'{path}' must be a boolean", path)
    if t in _INT_TYPES:
        if isinstance(value, bool):
            raise JsonFaceError(f"'{path}' must be an integer", path)
        if isinstance(value, int):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and value.lstrip("-").isdigit():
            number = int(value)  # protobuf JSON writes 64-bit integers as strings
        else:
            raise JsonFaceError(f"'{path}' must be an integer", path)
        bits = (
            32
            if t in (_FD.TYPE_INT32, _FD.TYPE_SINT32, _FD.TYPE_SFIXED32, _FD.TYPE_UINT32, _FD.TYPE_FIXED32)
            else 64
        )
        unsigned = t in (_FD.TYPE_UINT32, _FD.TYPE_FIXED32, _FD.TYPE_UINT64, _FD.TYPE_FIXED64)
        low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if not low <= number <= high:
            raise JsonFaceError(f"'{path}' is out of range", path)
        return number
    if t in _FLOAT_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if value in ("NaN", "Infinity", "-Infinity"):
            return float(value.replace("Infinity", "inf"))
        raise JsonFaceError(f"'{path}' must be a number", path)
    if t == _FD.TYPE_ENUM:
        if isinstance(value, str) and value in fd.enum_type.values_by_name:
            return fd.enum_type.values_by_name[value].number
        if isinstance(value, int) and not isinstance(value, bool) and value in fd.enum_type.values_by_number:
            return value
        names = ", ".join(v.name for v in fd.enum_type.values)
        raise JsonFaceError(f"'{path}' must be one of {names}", path)
    if t == _FD.TYPE_BYTES:
        if isinstance(value, str):
            try:
                return base64.b64decode(
                    value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value else None
                )
            except ValueError:
                pass
        raise JsonFaceError(f"'{path}' must be base64", path)
    raise JsonFaceError(f"'{path}' has an unsupported type", path)


_CODECS: dict[str, MessageCodec] = {}


def codec_for(descriptor: Descriptor) -> MessageCodec:
    """The (cached) codec of a message type."""
    codec = _CODECS.get(descriptor.full_name)
    if codec is None:
        codec = _CODECS[descriptor.full_name] = MessageCodec(descriptor)
    return codec


def to_json(msg: Message) -> bytes:
    """A message as JSON bytes."""
    codec = _CODECS.get(msg.DESCRIPTOR.full_name) or codec_for(msg.DESCRIPTOR)
    return orjson.dumps(codec.encode(msg))


def to_python(msg: Message) -> Any:
    """A message as JSON-ready Python values (raw fields stay orjson fragments)."""
    return codec_for(msg.DESCRIPTOR).encode(msg)


def from_python(obj: Any, msg: Message, lenient: bool = False) -> Message:
    """Fills and returns `msg` from parsed JSON; raises JsonFaceError."""
    codec_for(msg.DESCRIPTOR).decode(obj, msg, "", lenient)
    return msg


def from_json(data: bytes | str, msg: Message, lenient: bool = False) -> Message:
    """Fills and returns `msg` from JSON text; raises JsonFaceError (malformed JSON included)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise JsonFaceError(f"request body is not valid JSON: {err}") from None
    return from_python(obj, msg, lenient)
