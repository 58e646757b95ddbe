/*
 * TLS context and sessions. TLS 1.2 is the floor; compression is off
 * (CRIME); buffers are released while a connection is idle, which is most
 * of an XMPP connection's life and most of its memory otherwise.
 *
 * What a handshake costs is most of what a TLS login costs, so the context
 * is set up to do no more per handshake than the full handshake itself:
 *   H1  no session resumption: no TLS 1.3 tickets (OpenSSL would encrypt
 *       and send two after every handshake, about 15 % of the server's
 *       handshake CPU plus a socket write), no TLS 1.2 tickets and no
 *       session cache (which would hold every TLS 1.2 session for 5
 *       minutes). Resumption would rarely work anyway: every gateway has
 *       its own ticket key and SO_REUSEPORT spreads a client's reconnects
 *       over all of them.
 *   H2  read-ahead: a record is read with one recv() instead of two (its
 *       5-byte header, then its body); conn.c asks SSL_has_pending(), not
 *       SSL_pending(), whether decrypted or undecrypted bytes remain.
 *   H3  no automatic chain building: the chain is what the certificate
 *       file holds. Otherwise OpenSSL runs X509_verify_cert() against our
 *       (empty) trust store on every handshake when the file holds only
 *       the leaf, and sends the same thing.
 *   H4  TLS 1.3 suites: OpenSSL's three, with TLS_AES_128_GCM_SHA256 (the
 *       one every TLS 1.3 peer has, RFC 8446 §9.1) first instead of
 *       AES-256/SHA-384: its SHA-256 key schedule makes a handshake about
 *       7 % cheaper, at the 128-bit strength X25519 and P-256 give anyway.
 *       A client that puts ChaCha20 first (no AES hardware) gets ChaCha20.
 * Key exchange groups and signature algorithms stay OpenSSL's defaults:
 * X25519 first, and for the ECDSA P-256 certificates deploy/parleylib.py
 * makes, the cheapest signature there is.
 */
#include "tls.h"
#include "log.h"

#include <openssl/err.h>

static void log_ssl_error(const char *what, const char *path)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    log_error("TLS %s %s: %s", what, path, e ? buf : "unknown error");
}

SSL_CTX *tls_ctx_new(const char *cert_path, const char *key_path)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        log_ssl_error("context", "");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_TICKET | SSL_OP_PRIORITIZE_CHACHA);                      /* H1, H4 */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);        /* H3 */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);                                        /* H1 */
    if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {                                                     /* H1 */
        log_ssl_error("session tickets", "");
        goto fail;
    }
    SSL_CTX_set_read_ahead(ctx, 1);                                                                 /* H2 */
    if (SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256") != 1) {                       /* H4 */
        log_ssl_error("TLS 1.3 cipher suites", "");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        log_ssl_error("certificate", cert_path);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1) {
        log_ssl_error("private key", key_path);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_ssl_error("key does not match certificate", key_path);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL *tls_new_session(SSL_CTX *ctx, int fd)
{
    SSL *ssl = SSL_new(ctx);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}
