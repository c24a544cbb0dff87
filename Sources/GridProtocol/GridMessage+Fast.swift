import GridCore
import NIOCore

/// The distributed-memory messages (and `OK`) on their hot path: written and read by hand with `WireJSON`, the same
/// JSON `Codable` gives (sorted snake_case keys), at a fraction of the cost. Every other message, and anything the
/// hand-written side does not accept, goes through `Codable` as before; the tests check that both sides agree.
extension GridMessage {
    /// Writes this message's line (without the newline) if it is one of the hot ones; false otherwise (nothing written
    /// that counts: the caller rewinds).
    func writeFastLine(id: Int, into out: inout ByteBuffer) -> Bool {
        func field(_ name: StaticString, first: Bool = false) {
            out.writeStaticString(first ? "{\"" : ",\"")
            out.writeStaticString(name)
            out.writeStaticString("\":")
        }
        func leadingId() {
            field("id", first: true)
            out.writeString(String(id))
        }
        func type() {
            field("type")
            out.writeInteger(UInt8(ascii: "\""))
            out.writeString(kind.rawValue)
            out.writeStaticString("\"")
        }
        func key(_ k: String) {
            field("key")
            WireJSON.writeString(k, into: &out)
        }
        func entries(_ list: [Msg.MemEntry]) -> Bool {
            field("entries", first: true)
            out.writeInteger(UInt8(ascii: "["))
            for (i, e) in list.enumerated() {
                if i > 0 { out.writeInteger(UInt8(ascii: ",")) }
                out.writeStaticString("{\"key\":")
                WireJSON.writeString(e.key, into: &out)
                out.writeStaticString(",\"origin\":")
                WireJSON.writeString(e.origin, into: &out)
                if let v = e.value {
                    out.writeStaticString(",\"value\":")
                    guard WireJSON.write(v, into: &out) else { return false }
                }
                out.writeStaticString(",\"version\":")
                out.writeString(String(e.version))
                out.writeInteger(UInt8(ascii: "}"))
            }
            out.writeInteger(UInt8(ascii: "]"))
            field("id")
            out.writeString(String(id))
            return true
        }
        switch self {
        case .getMem(let m), .delMem(let m):
            leadingId()
            key(m.key)
            type()
        case .setMem(let m):
            leadingId()
            key(m.key)
            if let p = m.isPublic {
                field("public")
                if p { out.writeStaticString("true") } else { out.writeStaticString("false") }
            }
            type()
            field("value")
            guard WireJSON.write(m.value, into: &out) else { return false }
        case .memResult(let m):
            leadingId()
            key(m.key)
            field("owners")
            out.writeInteger(UInt8(ascii: "["))
            for (i, o) in m.owners.enumerated() {
                if i > 0 { out.writeInteger(UInt8(ascii: ",")) }
                WireJSON.writeString(o, into: &out)
            }
            out.writeInteger(UInt8(ascii: "]"))
            type()
            if let v = m.value {
                field("value")
                guard WireJSON.write(v, into: &out) else { return false }
            }
        case .memSync(let m):
            guard entries(m.entries) else { return false }
            type()
        case .memEntries(let m):
            guard entries(m.entries) else { return false }
            type()
        case .ok(let m):
            if let detail = m.detail {
                field("detail", first: true)
                WireJSON.writeString(detail, into: &out)
                field("id")
            } else {
                field("id", first: true)
            }
            out.writeString(String(id))
            type()
        default:
            return false
        }
        out.writeInteger(UInt8(ascii: "}"))
        return true
    }

    /// The hot message of wire type `type` from its fields; nil when `type` is not a hot one or a field is missing or
    /// of the wrong type (`Codable` then decides, and words the error).
    static func fastMessage(type: String, _ fields: [String: JSONValue]) -> GridMessage? {
        func string(_ name: String) -> String? {
            if case .string(let s)? = fields[name] { return s }
            return nil
        }
        func optional(_ v: JSONValue?) -> JSONValue?? {
            guard let v else { return .some(nil) }
            return v == .null ? .some(nil) : .some(v)
        }
        switch MessageType(rawValue: type) {
        case .getMem?, .delMem?:
            guard let key = string("key") else { return nil }
            return type == MessageType.getMem.rawValue ? .getMem(Msg.MemKey(key: key)) : .delMem(Msg.MemKey(key: key))
        case .setMem?:
            guard let key = string("key"), let value = fields["value"] else { return nil }
            switch fields["public"] {
            case nil, .null?: return .setMem(Msg.SetMem(key: key, value: value))
            case .bool(let p)?: return .setMem(Msg.SetMem(key: key, value: value, isPublic: p))
            default: return nil
            }
        case .memResult?:
            guard let key = string("key"), case .array(let list)? = fields["owners"] else { return nil }
            var owners: [String] = []
            for o in list {
                guard case .string(let s) = o else { return nil }
                owners.append(s)
            }
            guard case .some(let value) = optional(fields["value"]) else { return nil }
            return .memResult(Msg.MemResult(key: key, value: value, owners: owners))
        case .memSync?, .memEntries?:
            guard case .array(let list)? = fields["entries"] else { return nil }
            var entries: [Msg.MemEntry] = []
            entries.reserveCapacity(list.count)
            for item in list {
                guard case .object(let e) = item, case .string(let key)? = e["key"], case .string(let origin)? = e["origin"],
                    case .number(let v)? = e["version"], let version = Int64(exactly: v), case .some(let value) = optional(e["value"])
                else { return nil }
                entries.append(Msg.MemEntry(key: key, value: value, version: version, origin: origin))
            }
            let m = Msg.MemEntries(entries: entries)
            return type == MessageType.memSync.rawValue ? .memSync(m) : .memEntries(m)
        case .ok?:
            switch fields["detail"] {
            case nil, .null?: return .ok(Msg.Ok())
            case .string(let d)?: return .ok(Msg.Ok(detail: d))
            default: return nil
            }
        default:
            return nil
        }
    }
}
