// Stand-in for android.os.Bundle (test classpath only).
@file:Suppress("unused")

package android.os

/** Stub of android.os.Bundle. */
class Bundle
