// pmn as an Android library (AAR): libpmn.so for arm64-v8a, armeabi-v7a and x86_64 (cargo-ndk), the
// UniFFI-generated Kotlin (generated with `android = true`), the hand-written layer shared with the
// JVM tests (../bindings/kotlin/src/main/kotlin-handwritten: PmnPlatform, RemoteControl, PmnLog) and
// the Android-only part in src/main/kotlin (Pmn.initAndroid, LogcatSink).
//
//   ./gradlew :assembleRelease      (runs build-rust.sh first: needs cargo-ndk and ANDROID_NDK_HOME)
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.21"
}

android {
    namespace = "org.pmn"
    compileSdk = 35

    defaultConfig {
        // 23 (Android 6.0) is the floor set by what pmn uses: KeyGenParameterSpec for the device key
        // in the Android Keystore (API 23). Nothing else needs more (JNA, rustls-platform-verifier's
        // component and the NDK all go lower), and StrongBox (API 28) is chosen at run time.
        minSdk = 23
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets["main"].apply {
        kotlin.srcDirs(
            "src/main/kotlin",
            "../bindings/kotlin/src/main/kotlin-handwritten",
            layout.buildDirectory.dir("generated/uniffi/kotlin"),
        )
        jniLibs.srcDirs(layout.buildDirectory.dir("generated/jniLibs"))
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

// The Rust side: libpmn.so per ABI and the Kotlin bindings generated from it.
val buildRust by tasks.registering(Exec::class) {
    group = "build"
    description = "cargo ndk build of libpmn for arm64-v8a, armeabi-v7a, x86_64 + UniFFI Kotlin bindings"
    workingDir = projectDir
    commandLine("bash", "build-rust.sh", layout.buildDirectory.get().asFile.absolutePath)
    inputs.dir("../src")
    inputs.files("../Cargo.toml", "../Cargo.lock", "uniffi-android.toml", "build-rust.sh")
    outputs.dir(layout.buildDirectory.dir("generated"))
}
tasks.named("preBuild") { dependsOn(buildRust) }

// rustls-platform-verifier's Kotlin component must have the version of the
// rustls-platform-verifier-android crate in Cargo.lock (its README, "Gradle Setup").
abstract class RustlsVerifierVersion : ValueSource<String, RustlsVerifierVersion.Params> {
    interface Params : ValueSourceParameters {
        val lockFile: RegularFileProperty
    }

    override fun obtain(): String {
        val lines = parameters.lockFile.get().asFile.readLines()
        val at = lines.indexOfFirst { it.trim() == "name = \"rustls-platform-verifier-android\"" }
        return lines.drop(at + 1).firstOrNull { it.trimStart().startsWith("version = ") }
            ?.substringAfter('"')?.substringBefore('"')
            ?.takeIf { at >= 0 && it.isNotEmpty() }
            ?: error("rustls-platform-verifier-android not found in Cargo.lock")
    }
}

val rustlsVerifierVersion = providers.of(RustlsVerifierVersion::class.java) {
    parameters.lockFile.set(layout.projectDirectory.file("../Cargo.lock"))
}

configurations.configureEach {
    resolutionStrategy.eachDependency {
        if (requested.name == "rustls-platform-verifier" && requested.group in setOf("rustls", "org.rustls")) {
            useVersion(rustlsVerifierVersion.get())
            because("the Kotlin component must match the rustls-platform-verifier-android crate")
        }
    }
}

dependencies {
    // UniFFI calls Rust through JNA; the AAR carries JNA's own .so files.
    implementation("net.java.dev.jna:jna:5.18.1@aar")
    // The generated bindings use coroutines (suspend calls) and, with `android = true`, androidx
    // annotations for the SystemCleaner path.
    api("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
    implementation("androidx.annotation:annotation:1.9.1")
    implementation("rustls:rustls-platform-verifier")
}
