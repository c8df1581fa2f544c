import BGQCore
import BGQSystem
import CSQLite
import Foundation

/// bgq's store on one SQLite file. All of bgq's SQL lives in this folder; the rest of bgq talks
/// to it through `QueueStore`, so a second engine (PostgreSQL) can implement the same protocol.
public final class SQLiteStore {
    public let connection: Connection
    public let clock: Clock
    public var path: String { connection.path }

    /// Checkpoint timing and the file's identity, for `performMaintenance`.
    var maintenance = SQLiteMaintenanceState()

    public init(connection: Connection, clock: Clock = SystemClock()) {
        self.connection = connection
        self.clock = clock
        maintenance.fileIdentity = Self.fileIdentity(connection.path)
    }

    /// Opens (creating and migrating if needed) the database at `path`.
    public convenience init(path: String, clock: Clock = SystemClock(), create: Bool = true) throws {
        self.init(connection: try Database.open(path: path, create: create), clock: clock)
    }

    /// Runs a writing transaction and turns SQLite errors into one-line errors that name the file.
    /// Refused once any bgq process found the file corrupt (see `corruptionMarker`).
    @discardableResult
    func write<T>(_ body: () throws -> T) throws -> T {
        // One access(2) per write: the claim loop and every poll write, so no Foundation read (and the
        // error object a missing file makes) on that path; the marker is read only when it exists.
        if access(corruptionMarker, F_OK) == 0 {
            let found = (try? String(contentsOfFile: corruptionMarker, encoding: .utf8)) ?? "a corrupt page"
            throw BGQError.database(DatabaseError(.corrupt, Database.corruptionText(path: path, marker: corruptionMarker, found: found)))
        }
        let started = clock.monotonicMilliseconds()
        do {
            return try connection.transaction(.immediate, body)
        } catch let error as SQLiteError {
            throw describe(error, startedMonotonic: started)
        }
    }

    /// Runs a read-only transaction (one consistent snapshot).
    func read<T>(_ body: () throws -> T) throws -> T {
        let started = clock.monotonicMilliseconds()
        do {
            return try connection.transaction(.deferred, body)
        } catch let error as SQLiteError {
            throw describe(error, startedMonotonic: started)
        }
    }

    /// Written by the first bgq process that meets a corrupt page after opening the file: from then on
    /// every writer (commands and workers) refuses to write, so a damaged file is not made worse and
    /// the backup a person restores is not overtaken by new writes. Removing it lets writes resume.
    public var corruptionMarker: String { path + ".corrupt" }

    /// The one-line error for a SQLite error met after the file was opened: the time really waited for
    /// a lock (measured, all retries included), and a corrupt page marks the file for every writer.
    func describe(_ error: SQLiteError, startedMonotonic: Int64) -> BGQError {
        guard error.isCorrupt else {
            return Database.typed(error, path: path, waitedMilliseconds: clock.monotonicMilliseconds() - startedMonotonic)
        }
        let found = "\(clock.now().iso8601): \(error.message)"
        if (try? PrivateFiles.createFile(corruptionMarker)) == true {
            try? Data(found.utf8).write(to: URL(fileURLWithPath: corruptionMarker))
        }
        return .database(DatabaseError(.corrupt, Database.corruptionText(path: path, marker: corruptionMarker, found: found)))
    }

    /// A stored value of one of bgq's enums, or an error naming the column: the schema's CHECK
    /// constraints keep anything else out, so only a hand-edited or damaged file gets here.
    func stored<Value: RawRepresentable>(_ type: Value.Type, _ text: String, in column: String) throws -> Value where Value.RawValue == String {
        try Self.stored(type, text, in: column, path: path)
    }

    static func stored<Value: RawRepresentable>(_ type: Value.Type, _ text: String, in column: String, path: String = "the database") throws -> Value
    where Value.RawValue == String {
        guard let value = Value(rawValue: text) else {
            throw BGQError.database(.corrupt, "\(path): \(column) holds '\(text.prefix(40))', which this bgq does not know; restore a backup or fix the row with the sqlite3 shell")
        }
        return value
    }

    var now: Instant { clock.now() }
}

// MARK: - Row mapping

extension SQLiteStore {
    static let taskColumns = """
        seq, id, status, description, prompt, agent, model, model_key, parent_id, session_id, continues_session,
        priority, max_retries, attempt, run_after, on_complete, concurrency_key, worker_id, cancel_requested_at,
        created_at, started_at, finished_at, result, error, status_reason, message_count, tool_calls, last_tool,
        last_message, last_message_at, last_progress_at, todos, run_host, run_pid, run_pid_start, run_dir,
        run_log_offset, run_handle, run_ms
        """

    static func instant(_ row: Row, _ column: Int32) -> Instant? {
        row.optionalText(column).flatMap(Instant.init(iso8601:))
    }

    static func task(_ row: Row) throws -> TaskRecord {
        var progress = TaskRecord.Progress()
        progress.messageCount = row.int(25)
        progress.toolCalls = row.int(26)
        progress.lastTool = row.optionalText(27)
        progress.lastMessage = row.optionalText(28)
        progress.lastMessageAt = instant(row, 29)
        progress.lastProgressAt = instant(row, 30)
        progress.todos = row.optionalText(31)
        var run = TaskRecord.RunHandle()
        run.host = row.optionalText(32)
        run.pid = row.optionalInt(33).map { Int32(truncatingIfNeeded: $0) }
        run.pidStart = row.isNull(34) ? nil : row.int64(34)
        run.directory = row.optionalText(35)
        run.logOffset = row.int64(36)
        run.handle = row.optionalText(37)
        var record = TaskRecord(
            seq: row.int64(0), id: row.text(1), status: try stored(TaskStatus.self, row.text(2), in: "tasks.status"),
            description: row.text(3), prompt: row.text(4), agent: row.text(5), model: row.optionalText(6),
            modelKey: row.text(7), parentID: row.optionalText(8), sessionID: row.optionalText(9),
            continuesSession: row.int(10) != 0, priority: row.int(11), maxRetries: row.int(12), attempt: row.int(13),
            runAfter: instant(row, 14), onComplete: row.optionalText(15), concurrencyKey: row.optionalText(16),
            workerID: row.optionalText(17), cancelRequestedAt: instant(row, 18), createdAt: instant(row, 19) ?? Instant(milliseconds: 0),
            startedAt: instant(row, 20), finishedAt: instant(row, 21), result: row.optionalText(22), error: row.optionalText(23),
            statusReason: row.optionalText(24), progress: progress, run: run)
        record.runMs = row.isNull(38) ? nil : row.int64(38)
        return record
    }
}

// MARK: - Tasks

extension SQLiteStore {
    /// Inserts tasks in one transaction: all or nothing. An id collision is retried with a new id.
    public func enqueue(_ tasks: [NewTask]) throws -> [TaskRecord] {
        let ids = try enqueueReturningIDs(tasks)
        return try read { try ids.map { try taskOrThrow(id: $0) } }
    }

    /// The same, returning only the new ids (what a large batch needs).
    public func enqueueReturningIDs(_ tasks: [NewTask]) throws -> [String] {
        try write {
            let insert = try connection.cached("""
                INSERT INTO tasks (id, description, prompt, agent, model, model_key, parent_id, session_id, continues_session,
                                   priority, max_retries, on_complete, created_at, status_changed_at, status_reason, seq)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'enqueued', ?)
                """)
            let stamp = now.iso8601
            try insert.bind(13, stamp)
            try insert.bind(14, stamp)
            // A task's seq is also its creation's event id: the next ids of the sequence that events
            // and creations share (Migrations/0004_enqueue_speed.sql). This transaction holds the write
            // lock, so the ids read here stay the largest until it commits.
            var seq = try latestEventIDInTransaction()
            var stored: [String] = []
            stored.reserveCapacity(tasks.count)
            var random = BufferedRandom()
            for task in tasks {
                if let session = task.sessionID {
                    guard try connection.queryFirst("SELECT 1 FROM sessions WHERE id = ?", [.text(session)], { _ in true }) != nil else {
                        throw BGQError.notFound("no session \(session) in \(path): `bgq list` shows each task's session")
                    }
                }
                var attempts = 0
                while true {
                    let id = Identifier.newTaskID(using: &random)
                    do {
                        // Bound in place (no array of values per task); the time is bound once above.
                        try insert.bind(1, id)
                        try insert.bind(2, task.description)
                        try insert.bind(3, task.prompt)
                        try insert.bind(4, task.agent)
                        try insert.bind(5, task.model)
                        try insert.bind(6, task.modelKey)
                        try insert.bind(7, task.parentID)
                        try insert.bind(8, task.sessionID)
                        try insert.bind(9, task.sessionID == nil ? 0 : 1)
                        try insert.bind(10, task.priority)
                        try insert.bind(11, task.maxRetries)
                        try insert.bind(12, task.onComplete)
                        try insert.bind(15, Int(seq + 1))
                        try insert.runBound()
                        seq += 1
                        stored.append(id)
                        break
                    } catch let error as SQLiteError where error.isUniqueViolation && attempts < 20 {
                        attempts += 1  // a random id collided with an existing one: draw another
                    }
                }
            }
            return stored
        }
    }

    func taskOrThrow(id: String) throws -> TaskRecord {
        guard let task = try connection.queryFirst("SELECT \(Self.taskColumns) FROM tasks WHERE id = ?", [.text(id)], Self.task) else {
            throw BGQError.notFound("Task not found: \(id) (in \(path))")
        }
        return task
    }

    /// The task with exactly this id, if any.
    public func task(id: String) throws -> TaskRecord? {
        try read { try connection.queryFirst("SELECT \(Self.taskColumns) FROM tasks WHERE id = ?", [.text(id)], Self.task) }
    }

    /// Resolves what a person typed (a full id or any unique prefix, with or without `bg_`) to one task id.
    public func resolveTaskID(_ text: String) throws -> String {
        try resolveID(text, prefix: Identifier.taskPrefix(from: text), idPrefix: Identifier.taskPrefix, table: "tasks", kind: "Task",
                      example: "task ids look like bg_1a2b3c4d; `bgq list` shows them")
    }

    /// Resolves a session id or unique prefix.
    public func resolveSessionID(_ text: String) throws -> String {
        try resolveID(text, prefix: Identifier.sessionPrefix(from: text), idPrefix: Identifier.sessionPrefix, table: "sessions", kind: "Session",
                      example: "session ids look like ses_1a2b3c4d5e6f; `bgq show` prints a task's session")
    }

    /// One id for a unique prefix, as git resolves commits: none is "not found", several list the matches.
    /// The prefix is checked to be hex before it reaches SQL, and GLOB with a literal prefix uses the index.
    /// Text that cannot be an id says why: too short (nothing after `bg_`), too long, or not hex.
    func resolveID(_ text: String, prefix: String?, idPrefix: String, table: String, kind: String, example: String) throws -> String {
        guard let prefix else {
            let digits = text.lowercased().hasPrefix(idPrefix) ? text.dropFirst(idPrefix.count) : Substring(text)
            let why = digits.isEmpty ? "too short: type at least 1 hex digit after \(idPrefix)"
                : digits.count > 32 ? "too long: an id has at most 32 hex digits after \(idPrefix)"
                : "not an id prefix: only the hex digits 0-9 and a-f follow \(idPrefix)"
            throw BGQError.notFound("\(kind) not found: '\(text.prefix(80))' is \(why) (\(example))")  // says why: nothing to look up
        }
        let matches = try read {
            try connection.query("SELECT id FROM \(table) WHERE id GLOB ? ORDER BY id LIMIT 11", [.text(prefix + "*")]) { $0.text(0) }
        }
        switch matches.count {
        case 0:
            throw BGQError.notFound("\(kind) not found: \(prefix) (in \(path); \(example))")
        case 1:
            return matches[0]
        default:
            let more = matches.count > 10 ? " and more" : ""
            throw BGQError.usage("\(kind.lowercased()) id prefix '\(prefix)' is ambiguous: it matches \(matches.prefix(10).joined(separator: ", "))\(more); type more characters")
        }
    }

    public func session(id: String) throws -> SessionRecord? {
        try read {
            // The newest task's model, through the tasks_session index.
            try connection.queryFirst("""
                SELECT id, agent, backend, external_id, created_at,
                       (SELECT model FROM tasks WHERE session_id = sessions.id ORDER BY seq DESC LIMIT 1)
                FROM sessions WHERE id = ?
                """, [.text(id)]) { row in
                SessionRecord(id: row.text(0), agent: row.text(1), backend: row.text(2), externalID: row.optionalText(3),
                              createdAt: Self.instant(row, 4) ?? Instant(milliseconds: 0), model: row.optionalText(5))
            }
        }
    }

    /// Newest first.
    public func listTasks(_ filter: TaskFilter) throws -> [TaskRecord] {
        var conditions: [String] = []
        var arguments: [SQLValue] = []
        if !filter.statuses.isEmpty {
            conditions.append("status IN (\(filter.statuses.map { _ in "?" }.joined(separator: ", ")))")
            arguments += filter.statuses.map { .text($0.rawValue) }
        }
        if let agent = filter.agent { conditions.append("agent = ?"); arguments.append(.text(agent)) }
        if let model = filter.model {
            conditions.append("(model = ? OR model GLOB ?)")
            arguments += [.text(model), .text("*/" + model.replacingOccurrences(of: "[", with: "[[]").replacingOccurrences(of: "*", with: "[*]").replacingOccurrences(of: "?", with: "[?]"))]
        }
        if let parent = filter.parentID { conditions.append("parent_id = ?"); arguments.append(.text(parent)) }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        arguments.append(.int(filter.limit))
        return try read {
            try connection.query("SELECT \(Self.taskColumns) FROM tasks \(whereClause) ORDER BY seq DESC LIMIT ?", arguments, Self.task)
        }
    }

    /// Every event of a task, oldest first: its creation (the task row: `seq` is its event id), then
    /// its transitions (`task_events`).
    public func events(taskID: String) throws -> [TaskEvent] {
        try read {
            try connection.query("""
                SELECT seq, id, created_at, NULL, 'pending', NULL, 0, 'enqueued' FROM tasks WHERE id = ?1
                UNION ALL
                SELECT id, task_id, at, from_status, to_status, worker_id, attempt, reason FROM task_events WHERE task_id = ?1
                ORDER BY 1
                """, [.text(taskID)], Self.event)
        }
    }

    /// The largest event id so far, of a creation (`tasks.seq`) or a transition (`task_events.id`).
    func latestEventIDInTransaction() throws -> Int64 {
        try connection.queryFirst("""
            SELECT max(coalesce((SELECT max(seq) FROM tasks), 0), coalesce((SELECT max(id) FROM task_events), 0))
            """) { $0.int64(0) } ?? 0
    }

    static func event(_ row: Row) throws -> TaskEvent {
        TaskEvent(id: row.int64(0), taskID: row.text(1), at: instant(row, 2) ?? Instant(milliseconds: 0),
                  from: try row.optionalText(3).map { try stored(TaskStatus.self, $0, in: "task_events.from_status") },
                  to: try stored(TaskStatus.self, row.text(4), in: "task_events.to_status"),
                  workerID: row.optionalText(5), attempt: row.int(6), reason: row.optionalText(7))
    }

    /// The messages of a task's session that this task produced, oldest first.
    public func messages(taskID: String, limit: Int = 10_000) throws -> [SessionMessage] {
        try read {
            try connection.query("""
                SELECT role, kind, tool, content, at FROM session_messages WHERE task_id = ? ORDER BY id LIMIT ?
                """, [.text(taskID), .int(limit)]) { row in
                SessionMessage(role: try stored(SessionMessage.Role.self, row.text(0), in: "session_messages.role"),
                               kind: try stored(SessionMessage.Kind.self, row.text(1), in: "session_messages.kind"),
                               tool: row.optionalText(2), content: row.text(3), at: Self.instant(row, 4) ?? Instant(milliseconds: 0))
            }
        }
    }
}

// MARK: - Cancel

extension SQLiteStore {
    /// Cancels tasks: pending ones at once, running ones by asking their owner worker.
    public func cancel(taskIDs: [String], reason: String = "cancelled by user") throws -> [CancelOutcome] {
        try write {
            let stamp = now.iso8601
            return try taskIDs.map { id in
                let task = try taskOrThrow(id: id)
                switch task.status {
                case .pending:
                    let changed = try connection.run("""
                        UPDATE tasks SET status = 'cancelled', finished_at = ?, error = ?, status_changed_at = ?, status_reason = ?
                        WHERE id = ? AND status = 'pending'
                        """, [.text(stamp), .text(reason), .text(stamp), .text(reason), .text(id)])
                    guard changed == 1 else { throw BGQError.failure("task \(id) changed state while being cancelled; try again") }
                    return .cancelled(try taskOrThrow(id: id))
                case .running:
                    let changed = try connection.run("""
                        UPDATE tasks SET cancel_requested_at = coalesce(cancel_requested_at, ?) WHERE id = ? AND status = 'running'
                        """, [.text(stamp), .text(id)])
                    // Ended between the read and the write (an engine that does not serialize writers).
                    let now = try taskOrThrow(id: id)
                    return changed == 1 ? .requested(now) : .alreadyFinished(now)
                case .completed, .error, .cancelled:
                    return .alreadyFinished(task)
                }
            }
        }
    }

    /// Ids of the tasks that are pending or running, optionally under one parent.
    public func activeTaskIDs(parentID: String?) throws -> [String] {
        try read {
            if let parentID {
                return try connection.query("SELECT id FROM tasks WHERE status IN ('pending', 'running') AND parent_id = ? ORDER BY seq",
                                            [.text(parentID)]) { $0.text(0) }
            }
            return try connection.query("SELECT id FROM tasks WHERE status IN ('pending', 'running') ORDER BY seq") { $0.text(0) }
        }
    }
}
