import BGQCore

/// Checks a tool's arguments against the JSON Schema that `tools/list` publishes for it, so the schema a
/// client sees is the one enforced. It knows the part of JSON Schema bgq's tools use: an object of typed
/// properties (`string`, `boolean`, `number`, `integer`), `required`, `additionalProperties: false`,
/// `minLength`, `minimum` and `maximum`. Anything else in a schema is a programming error caught by the tests.
struct ToolSchema {
    let schema: JSONValue

    /// Every problem with `arguments`, each a short sentence naming the argument and what it should be;
    /// empty when they fit.
    func problems(in arguments: [String: JSONValue]) -> [String] {
        let properties = schema["properties"]?.object ?? [:]
        var problems: [String] = []
        for name in schema["required"]?.array?.compactMap(\.string) ?? [] where arguments[name] == nil {
            problems.append("'\(name)' is required (\(Self.typeName(properties[name]?["type"]?.string)))")
        }
        if schema["additionalProperties"] == .bool(false) {
            for name in arguments.keys.sorted() where properties[name] == nil {
                problems.append("unknown argument '\(name)' (the arguments are \(properties.keys.sorted().joined(separator: ", ")))")
            }
        }
        for name in arguments.keys.sorted() {
            guard let value = arguments[name], let property = properties[name] else { continue }
            problems += Self.check(value, named: name, against: property)
        }
        return problems
    }

    private static func check(_ value: JSONValue, named name: String, against property: JSONValue) -> [String] {
        let type = property["type"]?.string
        let fits: Bool
        switch (type, value) {
        case ("string", .string), ("boolean", .bool), ("integer", .int), ("number", .int), ("number", .double): fits = true
        case ("integer", .double(let number)): fits = number.isFinite && number == number.rounded()
        default: fits = type == nil
        }
        guard fits else { return ["'\(name)' must be \(typeName(type)), not \(value.kindName)"] }
        var problems: [String] = []
        if case .string(let text) = value, let least = property["minLength"]?.wholeNumber, text.count < least {
            problems.append("'\(name)' must not be empty")
        }
        if let number = value.number {
            if let least = property["minimum"]?.number, number < least { problems.append("'\(name)' must be at least \(display(least))") }
            if let most = property["maximum"]?.number, number > most { problems.append("'\(name)' must be at most \(display(most))") }
        }
        return problems
    }

    private static func typeName(_ type: String?) -> String {
        switch type {
        case "string": "a string"
        case "boolean": "true or false"
        case "integer": "an integer"
        case "number": "a number"
        default: "a value"
        }
    }

    private static func display(_ number: Double) -> String {
        number == number.rounded() && abs(number) < 1e15 ? String(Int(number)) : String(number)
    }
}
