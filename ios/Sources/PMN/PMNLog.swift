// pmn's logs in the unified logging system (Console.app, `log stream`): `PMNLog.toOSLog(level: .info)`.

import Foundation
import os

/// Where pmn's logs go on Apple platforms.
public enum PMNLog {
    /// Sends pmn's logs at `level` and above to os_log (subsystem `org.pmn`), replacing any
    /// previous sink. Delivery never blocks pmn: a sink that falls behind loses records (`logStats()`).
    public static func toOSLog(level: LogLevel = .info, subsystem: String = "org.pmn") throws {
        try setLogSink(sink: OSLogSink(subsystem: subsystem), level: level)
    }
}

/// A `LogSink` writing to os_log, one category per Rust module target.
public final class OSLogSink: LogSink {
    private let subsystem: String

    /// A sink for `subsystem` (e.g. your app's bundle id, or "org.pmn").
    public init(subsystem: String) {
        self.subsystem = subsystem
    }

    public func log(level: LogLevel, target: String, message: String) throws {
        let logger = Logger(subsystem: subsystem, category: target)
        switch level {
        case .error: logger.error("\(message, privacy: .public)")
        case .warn: logger.warning("\(message, privacy: .public)")
        case .info: logger.info("\(message, privacy: .public)")
        case .debug: logger.debug("\(message, privacy: .public)")
        case .trace: logger.trace("\(message, privacy: .public)")
        }
    }
}
