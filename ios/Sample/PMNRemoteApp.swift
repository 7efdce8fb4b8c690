// A minimal SwiftUI remote: lists the household's players and toggles play/pause. Add the package in
// ios/ to an Xcode app target (File ▸ Add Package Dependencies ▸ Add Local…) and these two files.
// Not built on the project's CI machine (no Xcode there).

import PMN
import SwiftUI

@main
struct PMNRemoteApp: App {
    init() {
        try? PMNLog.toOSLog(level: .info)
    }

    var body: some Scene {
        WindowGroup {
            ContentView()
        }
    }
}
