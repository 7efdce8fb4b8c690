// A minimal remote control app over the pmn AAR: lists the household's players and toggles
// play/pause. Not built on the project's CI machine (no Android SDK there).
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.pmn.sample"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.pmn.sample"
        minSdk = 23
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
    }

    buildTypes {
        release {
            isMinifyEnabled = true // exercises the AAR's consumer ProGuard rules
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"))
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // Nothing beyond the library (which brings kotlinx-coroutines-android): the activity is a
    // framework Activity with its own MainScope, compiled in the suite against the real framework.
    implementation(project(":"))
}
