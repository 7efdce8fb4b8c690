package pmn.bench;

import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.logging.Level;
import java.util.logging.Logger;
import javax.net.SocketFactory;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;

import org.jivesoftware.smack.ConnectionConfiguration.SecurityMode;
import org.jivesoftware.smack.iqrequest.AbstractIqRequestHandler;
import org.jivesoftware.smack.iqrequest.IQRequestHandler;
import org.jivesoftware.smack.packet.IQ;
import org.jivesoftware.smack.tcp.XMPPTCPConnection;
import org.jivesoftware.smack.tcp.XMPPTCPConnectionConfiguration;
import org.jxmpp.jid.impl.JidCreate;

/**
 * One side of the Smack peer pair of benches/rpc.rs, driven over stdio.
 *
 * <p>{@code responder PORT CA USER PASSWORD RESOURCE ANSWER_FILE}: logs in, prints {@code JID
 * <full jid>}, answers every {@code <query xmlns='jabber:iq:rpc'/>} set with the payload of
 * ANSWER_FILE (pmn's {@code player.status} answer, byte for byte) until stdin closes.
 *
 * <p>{@code client PORT CA USER PASSWORD RESOURCE CALL_FILE TO}: logs in, prints {@code READY};
 * for each line {@code CALLS n} on stdin sends n iq sets with CALL_FILE's payload to TO one after
 * the other and prints {@code NS t1 t2 ...} (each round trip in ns). Stops when stdin closes.
 */
public final class SmackPeer {
    /** The children of a one-line element {@code <query ...>...</query>}, as raw XML. */
    static String inner(Path file) throws IOException {
        String s = Files.readString(file, StandardCharsets.UTF_8).trim();
        if (s.startsWith("<?")) { // minidom writes an XML declaration first
            s = s.substring(s.indexOf("?>") + 2).trim();
        }
        return s.substring(s.indexOf('>') + 1, s.lastIndexOf("</"));
    }

    /** An iq whose child is {@code <query xmlns='jabber:iq:rpc'>} with raw XML inside. */
    static final class RpcIq extends IQ {
        private final String inner;

        RpcIq(String inner) {
            super("query", "jabber:iq:rpc");
            this.inner = inner;
        }

        @Override
        protected IQChildElementXmlStringBuilder getIQChildElementBuilder(
                IQChildElementXmlStringBuilder xml) {
            xml.rightAngleBracket();
            xml.append(inner);
            return xml;
        }
    }

    /** Sockets with Nagle off, as pmn's and Prosody's. */
    static final class NoDelaySocketFactory extends SocketFactory {
        private static Socket noDelay(Socket s) throws IOException {
            s.setTcpNoDelay(true);
            return s;
        }

        @Override
        public Socket createSocket() throws IOException {
            return noDelay(new Socket());
        }

        @Override
        public Socket createSocket(String host, int port) throws IOException, UnknownHostException {
            return noDelay(new Socket(host, port));
        }

        @Override
        public Socket createSocket(String host, int port, InetAddress local, int localPort)
                throws IOException, UnknownHostException {
            return noDelay(new Socket(host, port, local, localPort));
        }

        @Override
        public Socket createSocket(InetAddress host, int port) throws IOException {
            return noDelay(new Socket(host, port));
        }

        @Override
        public Socket createSocket(InetAddress address, int port, InetAddress local, int localPort)
                throws IOException {
            return noDelay(new Socket(address, port, local, localPort));
        }
    }

    static X509TrustManager trusting(Path caPem) throws Exception {
        Certificate ca;
        try (InputStream in = new FileInputStream(caPem.toFile())) {
            ca = CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        KeyStore store = KeyStore.getInstance(KeyStore.getDefaultType());
        store.load(null, null);
        store.setCertificateEntry("test-ca", ca);
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(store);
        for (TrustManager tm : tmf.getTrustManagers()) {
            if (tm instanceof X509TrustManager) {
                return (X509TrustManager) tm;
            }
        }
        throw new IllegalStateException("no X509TrustManager");
    }

    static XMPPTCPConnection connect(String[] a) throws Exception {
        int port = Integer.parseInt(a[1]);
        String user = a[3];
        String domain = user.substring(user.indexOf('@') + 1);
        XMPPTCPConnectionConfiguration config =
                XMPPTCPConnectionConfiguration.builder()
                        .setXmppDomain(domain)
                        .setHostAddress(InetAddress.getByName("127.0.0.1"))
                        .setPort(port)
                        .setUsernameAndPassword(user.substring(0, user.indexOf('@')), a[4])
                        .setResource(a[5])
                        .setSecurityMode(SecurityMode.required)
                        .setCustomX509TrustManager(trusting(Path.of(a[2])))
                        .setSocketFactory(new NoDelaySocketFactory())
                        .setConnectTimeout(30_000)
                        .build();
        XMPPTCPConnection connection = new XMPPTCPConnection(config);
        connection.setReplyTimeout(10_000);
        connection.connect().login();
        return connection;
    }

    public static void main(String[] a) throws Exception {
        Logger.getLogger("org.jivesoftware").setLevel(Level.WARNING);
        BufferedReader stdin =
                new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        XMPPTCPConnection connection = connect(a);
        if (a[0].equals("responder")) {
            String answer = inner(Path.of(a[6]));
            connection.registerIQRequestHandler(
                    new AbstractIqRequestHandler(
                            "query", "jabber:iq:rpc", IQ.Type.set, IQRequestHandler.Mode.sync) {
                        @Override
                        public IQ handleIQRequest(IQ request) {
                            RpcIq response = new RpcIq(answer);
                            response.setType(IQ.Type.result);
                            response.setStanzaId(request.getStanzaId());
                            response.setTo(request.getFrom());
                            return response;
                        }
                    });
            System.out.println("JID " + connection.getUser());
            System.out.flush();
            while (stdin.readLine() != null) {}
        } else {
            String call = inner(Path.of(a[6]));
            var to = JidCreate.from(a[7]);
            System.out.println("READY");
            System.out.flush();
            String line;
            while ((line = stdin.readLine()) != null) {
                if (!line.startsWith("CALLS ")) {
                    continue;
                }
                int n = Integer.parseInt(line.substring(6).trim());
                StringBuilder out = new StringBuilder(n * 8 + 4).append("NS");
                for (int i = 0; i < n; i++) {
                    RpcIq iq = new RpcIq(call);
                    iq.setType(IQ.Type.set);
                    iq.setTo(to);
                    long t = System.nanoTime();
                    connection.createStanzaCollectorAndSend(iq).nextResultOrThrow();
                    out.append(' ').append(System.nanoTime() - t);
                }
                System.out.println(out);
                System.out.flush();
            }
        }
        connection.disconnect();
        System.exit(0);
    }
}
