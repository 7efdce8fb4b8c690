package org.pmn.sample

import android.app.Activity
import android.os.Bundle
import android.widget.Button
import android.widget.LinearLayout
import android.widget.TextView
import kotlinx.coroutines.MainScope
import kotlinx.coroutines.cancel
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.collectLatest
import kotlinx.coroutines.launch
import org.pmn.ConnectionConfig
import org.pmn.DeviceKeyStore
import org.pmn.E2eOptions
import org.pmn.PlaybackState
import org.pmn.PmnException
import org.pmn.ProviderInfo
import org.pmn.RemoteControl
import org.pmn.ServiceEvent

/**
 * One screen: the household's media players, one button each that toggles play/pause, and the last
 * event. The same calls as the JVM command-line remote (bindings/kotlin/sample).
 *
 * A plain framework [Activity] with its own main-thread scope rather than androidx's
 * `ComponentActivity.lifecycleScope`: the sample then needs nothing beyond the framework and
 * kotlinx-coroutines-android, so the suite compiles it against the real framework jar
 * (android/robolectric) — androidx.activity is not on Maven Central.
 */
class MainActivity : Activity() {
    /** Coroutines on the main thread (Dispatchers.Main), cancelled in [onDestroy]. */
    private val lifecycleScope = MainScope()

    // A real app reads these from its onboarding/pairing screen; placeholders here. The device's
    // TLS key lives in the Android Keystore; pinned peers in the app's private files. Built in
    // onCreate because the keystore needs Pmn.initAndroid first.
    private fun config() = ConnectionConfig(
        network = "home@example.org",
        password = "change-me",
        device = "android-sample",
        e2e = E2eOptions(
            keyStore = DeviceKeyStore.platform(),
            trustFile = filesDir.resolve("trust.json").path,
        ),
    )

    private lateinit var remote: RemoteControl
    private lateinit var list: LinearLayout
    private lateinit var status: TextView

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        status = TextView(this).apply { text = "connecting…" }
        list = LinearLayout(this).apply { orientation = LinearLayout.VERTICAL }
        setContentView(LinearLayout(this).apply {
            orientation = LinearLayout.VERTICAL
            addView(status)
            addView(list)
        })

        remote = RemoteControl(config())
        lifecycleScope.launch {
            try {
                remote.connect()
            } catch (e: PmnException) {
                status.text = "cannot connect: ${e.message}"
                return@launch
            }
            status.text = "online"
            // collectLatest cancels the previous block when the list changes, and with it the
            // event subscriptions launched inside: structured cancellation down to Rust.
            remote.providersOffering(RemoteControl.PLAYER_FEATURE).collectLatest { players ->
                list.removeAllViews()
                coroutineScope {
                    for (player in players) {
                        list.addView(playerButton(player))
                        launch {
                            remote.events(player.jid, "player").collect { event ->
                                if (event is ServiceEvent.PlayerStateChanged) {
                                    status.text = "${player.name}: ${event.status.state.name.lowercase()}"
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private fun playerButton(player: ProviderInfo) = Button(this).apply {
        text = player.name
        setOnClickListener {
            lifecycleScope.launch {
                try {
                    val now = remote.player(player.jid).status()
                    if (now.state == PlaybackState.PLAYING) remote.player(player.jid).pause() else remote.player(player.jid).resume()
                } catch (e: PmnException) {
                    status.text = "${player.name}: ${e.message}"
                }
            }
        }
    }

    override fun onDestroy() {
        lifecycleScope.cancel() // ends the collectors before the remote goes
        remote.close() // frees the Rust side and ends every subscription
        super.onDestroy()
    }
}
