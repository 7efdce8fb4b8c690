// The Android build of pmn: the library module (this directory, published as an AAR) and a
// minimal sample app (sample/). Not built on the project's CI machine (no Android SDK/NDK there);
// see README.md.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositories {
        google()
        mavenCentral()
        // rustls-platform-verifier's Kotlin component (its README, "Gradle Setup").
        maven {
            url = uri("https://github.com/rustls/rustls-platform-verifier/raw/maven-archive/android-release-support/maven/")
        }
    }
}

rootProject.name = "pmn-android"
include(":sample")
