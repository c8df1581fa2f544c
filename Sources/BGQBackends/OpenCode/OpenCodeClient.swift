import BGQCore
import Foundation

/// Why a call to an OpenCode server did not give what was asked; the text is what the task's error says.
public enum OpenCodeError: Error, Equatable, CustomStringConvertible {
    case unreachable(url: String)
    case unauthorized(url: String, passwordVariable: String)
    case notFound(endpoint: String, message: String)
    case malformed(url: String, endpoint: String, detail: String)
    case http(url: String, endpoint: String, status: Int, message: String)
    case timedOut(url: String, endpoint: String)
    /// The call failed for good: a broken or oversized reply, an untrusted certificate.
    case failed(url: String, endpoint: String, detail: String)

    public var description: String {
        switch self {
        case .unreachable(let url):
            "opencode server unreachable at \(url)"
        case .unauthorized(let url, let variable):
            "opencode server at \(url) refused the credentials (401): set \(variable) (and OPENCODE_SERVER_USERNAME unless the user is `opencode`) in the worker's environment to the server's password"
        case .notFound(let endpoint, let message):
            "\(endpoint): not found (\(message))"
        case .malformed(let url, let endpoint, let detail):
            "opencode server at \(url) answered \(endpoint) with an unexpected body (\(detail))"
        case .http(let url, let endpoint, let status, let message):
            "opencode server at \(url) answered \(endpoint) with HTTP \(status): \(message)"
        case .timedOut(let url, let endpoint):
            "opencode server at \(url) did not answer \(endpoint) in time"
        case .failed(let url, let endpoint, let detail):
            "\(endpoint) to the opencode server at \(url) failed: \(detail)"
        }
    }

    /// Transient: worth trying again at the next poll (the stale timeout ends the wait).
    package var isTransient: Bool {
        switch self {
        case .unreachable, .timedOut: true
        case .http(_, _, let status, _): status >= 500
        default: false
        }
    }
}

/// The calls bgq makes to an OpenCode server.
public struct OpenCodeClient {
    let http: HTTPClient
    let environment: [String: String]
    /// The variable that holds the server's password (the agent's --api-key-env, else OPENCODE_SERVER_PASSWORD).
    var passwordVariable = "OPENCODE_SERVER_PASSWORD"
    var timeoutSeconds: Double = 10

    func headers(_ server: OpenCodeServer) -> [String: String] {
        var headers = ["accept": "application/json", "content-type": "application/json"]
        if let password = environment[passwordVariable], !password.isEmpty {
            let user = environment["OPENCODE_SERVER_USERNAME"].flatMap { $0.isEmpty ? nil : $0 } ?? "opencode"
            headers["authorization"] = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        }
        if let directory = server.directory { headers["x-opencode-directory"] = directory }
        return headers
    }

    /// One call; the body of a 2xx answer as JSON (nil for 204 or an empty body).
    func call(_ server: OpenCodeServer, _ method: String, _ path: String, body: JSONValue? = nil, timeout: Double? = nil) -> Result<JSONValue?, OpenCodeError> {
        guard let url = URL(string: server.url + path) else {
            return .failure(.malformed(url: server.url, endpoint: "\(method) \(path)", detail: "not a valid URL"))
        }
        let request = HTTPRequest(method: method, url: url, headers: headers(server), body: body?.data,
                                  timeoutSeconds: timeout ?? timeoutSeconds)
        let endpoint = "\(method) \(path.split(separator: "?").first.map(String.init) ?? path)"
        switch http.send(request) {
        case .failure(.timedOut):
            return .failure(.timedOut(url: server.url, endpoint: endpoint))
        case .failure(let failure) where !failure.isTransient && failure != .cancelled:
            return .failure(.failed(url: server.url, endpoint: endpoint, detail: failure.description))
        case .failure:
            return .failure(.unreachable(url: server.url))
        case .success(let response):
            switch response.status {
            case 200..<300:
                guard !response.body.isEmpty, response.status != 204 else { return .success(nil) }
                guard String(validating: response.body, as: UTF8.self) != nil else {
                    return .failure(.malformed(url: server.url, endpoint: endpoint, detail: "not UTF-8"))
                }
                guard let value = JSONValue.parse(data: response.body) else {
                    return .failure(.malformed(url: server.url, endpoint: endpoint, detail: "not JSON: \(response.bodyText.prefix(80))"))
                }
                return .success(value)
            case 401, 403:
                return .failure(.unauthorized(url: server.url, passwordVariable: passwordVariable))
            case 404:
                let message = JSONValue.parse(data: response.body)?["data"]?["message"]?.string ?? response.bodyText.prefix(200).description
                return .failure(.notFound(endpoint: endpoint, message: message))
            default:
                let message = JSONValue.parse(data: response.body).flatMap { $0["data"]?["message"]?.string ?? $0["message"]?.string }
                    ?? response.bodyText.prefix(200).description
                return .failure(.http(url: server.url, endpoint: endpoint, status: response.status, message: message))
            }
        }
    }

    /// POST /session: a new session; returns its id.
    func createSession(_ server: OpenCodeServer, title: String, parentID: String?) -> Result<String, OpenCodeError> {
        var body: [String: JSONValue] = ["title": .string(title)]
        if let parentID { body["parentID"] = .string(parentID) }
        return call(server, "POST", "/session", body: .object(body)).flatMap { value in
            guard let id = value?["id"]?.string, !id.isEmpty else {
                return .failure(.malformed(url: server.url, endpoint: "POST /session", detail: "no session id"))
            }
            return .success(id)
        }
    }

    /// POST /session/:id/prompt_async: returns at once; the session works in the background.
    func prompt(_ server: OpenCodeServer, session: String, text: String, agent: String? = nil, model: ModelRef? = nil,
                noReply: Bool = false) -> Result<Void, OpenCodeError> {
        var body: [String: JSONValue] = ["parts": [["type": "text", "text": .string(text)]]]
        if let agent { body["agent"] = .string(agent) }
        if let model { body["model"] = ["providerID": .string(model.provider), "modelID": .string(model.modelID)] }
        if noReply { body["noReply"] = true }
        return call(server, "POST", "/session/\(Self.escape(session))/prompt_async", body: .object(body)).map { _ in () }
    }

    /// GET /session/status: busy and retrying sessions of the server's directory (idle ones are absent).
    func statuses(_ server: OpenCodeServer) -> Result<[String: JSONValue], OpenCodeError> {
        call(server, "GET", "/session/status").flatMap { value in
            guard let map = value?.object else {
                return .failure(.malformed(url: server.url, endpoint: "GET /session/status", detail: "expected an object of session statuses"))
            }
            return .success(map)
        }
    }

    /// GET of an endpoint that answers a JSON array.
    func array(_ server: OpenCodeServer, _ path: String, of what: String) -> Result<[JSONValue], OpenCodeError> {
        call(server, "GET", path).flatMap { value in
            guard let list = value?.array else {
                return .failure(.malformed(url: server.url, endpoint: "GET \(path)", detail: "expected an array of \(what)"))
            }
            return .success(list)
        }
    }

    func messages(_ server: OpenCodeServer, session: String) -> Result<[JSONValue], OpenCodeError> {
        array(server, "/session/\(Self.escape(session))/message", of: "messages")
    }

    func todos(_ server: OpenCodeServer, session: String) -> Result<[Todo], OpenCodeError> {
        array(server, "/session/\(Self.escape(session))/todo", of: "todos").map { list in
            list.compactMap { item in
                guard let content = item["content"]?.string, let status = item["status"]?.string else { return nil }
                return Todo(content: content, status: status)
            }
        }
    }

    func abort(_ server: OpenCodeServer, session: String) -> Result<Void, OpenCodeError> {
        call(server, "POST", "/session/\(Self.escape(session))/abort", timeout: 3).map { _ in () }
    }

    static func escape(_ id: String) -> String {
        id.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "_-"))) ?? id
    }
}
