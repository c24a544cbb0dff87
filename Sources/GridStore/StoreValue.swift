public import Foundation

/// One value of a row or an argument, the same on every backend (issue 16): SQLite's storage classes, which
/// PostgreSQL's column types map onto (bigint and int → `int`, double precision and numeric → `int` or `double`,
/// text → `text`, bytea → `blob`, boolean → `int` 0/1).
public enum StoreValue: Hashable, Sendable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case blob(Data)
}

/// A Swift type that can be an argument of a statement and be read from a column.
public protocol StoreValueConvertible: Sendable {
    var storeValue: StoreValue { get }
    /// The value as this type, or nil when it is NULL or cannot be this type without loss.
    static func from(_ value: StoreValue) -> Self?
}

extension Int64: StoreValueConvertible {
    public var storeValue: StoreValue { .int(self) }
    public static func from(_ value: StoreValue) -> Int64? {
        switch value {
        case .int(let i): return i
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }
}

extension Int: StoreValueConvertible {
    public var storeValue: StoreValue { .int(Int64(self)) }
    public static func from(_ value: StoreValue) -> Int? { Int64.from(value).flatMap { Int(exactly: $0) } }
}

extension Int32: StoreValueConvertible {
    public var storeValue: StoreValue { .int(Int64(self)) }
    public static func from(_ value: StoreValue) -> Int32? { Int64.from(value).flatMap { Int32(exactly: $0) } }
}

extension Double: StoreValueConvertible {
    public var storeValue: StoreValue { .double(self) }
    public static func from(_ value: StoreValue) -> Double? {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
}

extension Bool: StoreValueConvertible {
    public var storeValue: StoreValue { .int(self ? 1 : 0) }
    public static func from(_ value: StoreValue) -> Bool? {
        switch value {
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        default: return nil
        }
    }
}

extension String: StoreValueConvertible {
    public var storeValue: StoreValue { .text(self) }
    public static func from(_ value: StoreValue) -> String? {
        if case .text(let s) = value { return s }
        return nil
    }
}

extension Data: StoreValueConvertible {
    public var storeValue: StoreValue { .blob(self) }
    public static func from(_ value: StoreValue) -> Data? {
        switch value {
        case .blob(let d): return d
        case .text(let s): return Data(s.utf8)
        default: return nil
        }
    }
}

/// The arguments of a statement, in the order of its `?` placeholders.
public typealias StoreArguments = [(any StoreValueConvertible)?]

extension Array where Element == (any StoreValueConvertible)? {
    var storeValues: [StoreValue] { map { $0?.storeValue ?? .null } }
}

/// A row as a query returned it, read by column name or position like GRDB's `Row`.
public struct StoreRow: Sendable {
    let columns: [String]
    let values: [StoreValue]

    init(columns: [String], values: [StoreValue]) {
        self.columns = columns
        self.values = values
    }

    func value(_ name: String) -> StoreValue {
        // A plain loop: rows have a few dozen columns, and this stays cheap even unoptimized (debug builds, the bench).
        var i = 0
        while i < columns.count {
            if columns[i] == name { return i < values.count ? values[i] : .null }
            i += 1
        }
        return .null
    }

    func value(at index: Int) -> StoreValue { values.indices.contains(index) ? values[index] : .null }

    /// The column's value; a NULL or a value of another type is a programming error (as with GRDB's `Row`).
    public subscript<T: StoreValueConvertible>(_ name: String) -> T {
        guard let v = T.from(value(name)) else { fatalError("column \(name) is \(value(name)), not \(T.self)") }
        return v
    }

    public subscript<T: StoreValueConvertible>(_ name: String) -> T? { T.from(value(name)) }

    public subscript<T: StoreValueConvertible>(_ index: Int) -> T {
        guard let v = T.from(value(at: index)) else { fatalError("column \(index) is \(value(at: index)), not \(T.self)") }
        return v
    }

    public subscript<T: StoreValueConvertible>(_ index: Int) -> T? { T.from(value(at: index)) }
}
