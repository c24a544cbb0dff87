import GridCore
import NIOCore

/// The distributed-memory and function-task messages (and `OK`) on their hot path: written and read by hand with `WireJSON`, the same
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
        // Fields in order, each written only when present, the first without its comma.
        var opened = false
        func put(_ name: StaticString) {
            field(name, first: !opened)
            opened = true
        }
        func string(_ name: StaticString, _ s: String?) {
            guard let s else { return }
            put(name)
            WireJSON.writeString(s, into: &out)
        }
        func bool(_ name: StaticString, _ b: Bool?) {
            guard let b else { return }
            put(name)
            out.writeStaticString(b ? "true" : "false")
        }
        func integer(_ name: StaticString, _ n: Int?) {
            guard let n else { return }
            put(name)
            out.writeString(String(n))
        }
        func strings(_ name: StaticString, _ list: [String]?) {
            guard let list else { return }
            put(name)
            out.writeInteger(UInt8(ascii: "["))
            for (i, s) in list.enumerated() {
                if i > 0 { out.writeInteger(UInt8(ascii: ",")) }
                WireJSON.writeString(s, into: &out)
            }
            out.writeInteger(UInt8(ascii: "]"))
        }
        /// False: the value cannot be written as JSON (a number that is not finite).
        func value(_ name: StaticString, _ v: JSONValue?) -> Bool {
            guard let v else { return true }
            put(name)
            return WireJSON.write(v, into: &out)
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
                if let seal = e.seal {
                    out.writeStaticString(",\"seal\":")
                    WireJSON.writeString(seal, into: &out)
                }
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
            if let publisher = m.publishedBy {
                field("published_by")
                WireJSON.writeString(publisher, into: &out)
            }
            type()
            if let v = m.value {
                field("value")
                guard WireJSON.write(v, into: &out) else { return false }
            }
        case .memFetch(let m):
            // A mandate itself goes the general way (once per peer and person: then its reference does).
            guard m.mandate == nil else { return false }
            integer("id", id)
            strings("keys", m.keys)
            string("mandate_ref", m.mandateRef)
            type()
        case .memSync(let m):
            guard m.refused == nil, entries(m.entries) else { return false }
            type()
        case .memEntries(let m):
            // Refusals (rare) go the general way.
            guard m.refused == nil, entries(m.entries) else { return false }
            type()
        case .cpuTask(let t):
            // A forwarded task (ticket, signature) goes the general way.
            guard t.ticket == nil, t.signature == nil, value("args", t.args) else { return false }
            string("args_literal", t.argsLiteral)
            bool("confidential", t.confidential)
            string("function", t.function)
            integer("id", id)
            integer("priority", t.priority)
            string("program", t.program)
            strings("requirements", t.requirements)
            string("task_id", t.taskId)
            guard value("timeout", t.timeout.map(JSONValue.number)) else { return false }
            type()
            string("user", t.user)
        case .cpuResult(let r):
            string("error", r.error)
            integer("id", id)
            string("message", r.message)
            bool("ok", r.ok)
            string("output", r.output)
            string("peer", r.peer)
            guard value("result", r.result) else { return false }
            integer("runtime_ms", Int(exactly: r.runtimeMs))
            integer("start_order", r.startOrder)
            string("task_id", r.taskId)
            string("traceback", r.traceback)
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
        // `field` and each `optional…` below: .some(nil) when absent or null, .some(x) when `read` takes it, nil (not
        // fast) otherwise.
        func field<T>(_ v: JSONValue?, _ read: (JSONValue) -> T?) -> T?? {
            guard let v, v != .null else { return .some(nil) }
            return read(v).map { .some($0) }
        }
        func optional(_ v: JSONValue?) -> JSONValue?? { field(v) { $0 } }
        func optionalString(_ v: JSONValue?) -> String?? {
            field(v) { if case .string(let s) = $0 { s } else { nil } }
        }
        func optionalBool(_ v: JSONValue?) -> Bool?? {
            field(v) { if case .bool(let b) = $0 { b } else { nil } }
        }
        func optionalNumber(_ v: JSONValue?) -> Double?? {
            field(v) { if case .number(let d) = $0 { d } else { nil } }
        }
        /// Whole numbers only, and only those a double holds exactly (Codable reads larger ones from the text).
        func optionalInt(_ v: JSONValue?) -> Int?? {
            field(v) { if case .number(let d) = $0, abs(d) <= 9_007_199_254_740_992 { Int(exactly: d) } else { nil } }
        }
        func optionalStrings(_ v: JSONValue?) -> [String]?? {
            field(v) { value -> [String]? in
                guard case .array(let list) = value else { return nil }
                var out: [String] = []
                for item in list {
                    guard case .string(let s) = item else { return nil }
                    out.append(s)
                }
                return out
            }
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
            guard case .some(let value) = optional(fields["value"]), case .some(let publisher) = optionalString(fields["published_by"]) else { return nil }
            return .memResult(Msg.MemResult(key: key, value: value, owners: owners, publishedBy: publisher))
        case .memFetch?:
            guard fields["mandate"] == nil || fields["mandate"] == .null, case .some(let keys) = optionalStrings(fields["keys"]), let keys,
                case .some(let ref) = optionalString(fields["mandate_ref"])
            else { return nil }
            return .memFetch(Msg.MemFetch(keys: keys, mandateRef: ref))
        case .memSync?, .memEntries?:
            guard case .array(let list)? = fields["entries"], fields["refused"] == nil else { return nil }
            var entries: [Msg.MemEntry] = []
            entries.reserveCapacity(list.count)
            for item in list {
                guard case .object(let e) = item, case .string(let key)? = e["key"], case .string(let origin)? = e["origin"],
                    case .number(let v)? = e["version"], let version = Int64(exactly: v), case .some(let value) = optional(e["value"]),
                    case .some(let seal) = optionalString(e["seal"])
                else { return nil }
                entries.append(Msg.MemEntry(key: key, value: value, version: version, origin: origin, seal: seal))
            }
            let m = Msg.MemEntries(entries: entries)
            return type == MessageType.memSync.rawValue ? .memSync(m) : .memEntries(m)
        case .cpuTask?:
            // A forwarded task (ticket, signature) goes the general way.
            guard fields["ticket"] == nil, fields["signature"] == nil, let taskId = string("task_id"), let program = string("program"),
                case .some(let function) = optionalString(fields["function"]), case .some(let args) = optional(fields["args"]),
                case .some(let literal) = optionalString(fields["args_literal"]), case .some(let confidential) = optionalBool(fields["confidential"]),
                case .some(let timeout) = optionalNumber(fields["timeout"]), case .some(let priority) = optionalInt(fields["priority"]),
                case .some(let user) = optionalString(fields["user"]), case .some(let requirements) = optionalStrings(fields["requirements"])
            else { return nil }
            return .cpuTask(
                Msg.CPUTask(
                    taskId: taskId, program: program, function: function, args: args, argsLiteral: literal, confidential: confidential,
                    timeout: timeout, priority: priority, user: user, requirements: requirements))
        case .cpuResult?:
            guard case .bool(let ok)? = fields["ok"], let taskId = string("task_id"), let peer = string("peer"),
                case .some(.some(let runtime)) = optionalInt(fields["runtime_ms"]), case .some(let order) = optionalInt(fields["start_order"]),
                case .some(let result) = optional(fields["result"]), case .some(let error) = optionalString(fields["error"]),
                case .some(let message) = optionalString(fields["message"]), case .some(let traceback) = optionalString(fields["traceback"]),
                case .some(let output) = optionalString(fields["output"])
            else { return nil }
            return .cpuResult(
                Msg.CPUResult(
                    taskId: taskId, ok: ok, result: result, error: error, message: message, traceback: traceback, output: output, peer: peer,
                    runtimeMs: Int64(runtime), startOrder: order))
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
